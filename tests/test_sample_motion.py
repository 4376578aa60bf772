"""The sample subject's head tracks (data_scripts/sample_subject_motion.py): the default sway, and the fast
motion that measures pose tracking on quickly moving heads against the truth."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from etlib.config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "data_scripts"))
from sample_subject_motion import head_track  # noqa: E402


def _speed_deg_s(angles: np.ndarray, fps: float = 25.0) -> np.ndarray:
    return np.rad2deg(np.abs(np.diff(angles, axis=0))).max(axis=1) * fps


def test_fast_head_motion_adds_quick_moves_to_the_same_sways():
    sway = head_track(250, 25, np.random.default_rng(0))
    fast = head_track(250, 25, np.random.default_rng(0), "fast")
    np.testing.assert_array_equal(sway, head_track(250, 25, np.random.default_rng(0), "sway"))  # default unchanged
    assert _speed_deg_s(sway).max() < 15  # slow sways only
    quick = _speed_deg_s(fast) > 40
    assert quick.sum() >= 10 and _speed_deg_s(fast).max() > 60  # several quick moves, of tens of degrees a second
    assert np.rad2deg(np.abs(fast)).max() < 35  # still a face a frontal detector finds
    np.testing.assert_array_equal(fast[:, 2], sway[:, 2])  # roll keeps its sway
    with pytest.raises(ValueError, match="head motion"):
        head_track(10, 25, np.random.default_rng(0), "wild")


def test_default_parameters_keep_existing_sample_subjects_up_to_date():
    import argparse

    from make_sample_subject import _params

    args = dict(seconds=48.0, emotion_seconds=16.0, size=512, seed=0)
    assert "head_motion" not in _params(argparse.Namespace(**args, head_motion="sway"))
    assert _params(argparse.Namespace(**args)) == _params(argparse.Namespace(**args, head_motion="sway"))
    assert _params(argparse.Namespace(**args, head_motion="fast"))["head_motion"] == "fast"

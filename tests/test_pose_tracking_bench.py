"""benchmarks/pose_tracking.py on synthetic landmarks of known poses: what it reports, and that it tells a slow sway
(smoothing helps) from a quick turn (smoothing costs the fast frames)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from etlib.preprocess import pose, template


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("benchmarks/pose_tracking.py")


def _clip(euler_deg: np.ndarray, noise: float = 0.5, size: int = 128, focal: float = 300.0):
    n = len(euler_deg)
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[:, :3, :3] = Rotation.from_euler("xyz", euler_deg, degrees=True).as_matrix()
    w2c[:, :3, 3] = [0.0, 0.01, 0.55]
    truth = pose.HeadPose(pose.intrinsics(focal, size, size), w2c, np.zeros(n), np.zeros(n))
    lm = truth.project(template.mean_face_68()) + np.random.default_rng(0).normal(0, noise, (n, 68, 2))
    return lm, truth.K, w2c, np.deg2rad(euler_deg)


def test_fast_frames_are_where_the_head_turns_quickly(bench):
    euler = np.zeros((20, 3))
    euler[10:, 0] = np.deg2rad(5.0)  # a 5 degree step between frames 9 and 10: 125 deg/s
    fast = bench.fast_frames(euler)
    assert fast.tolist() == [i in (9, 10) for i in range(20)]


def test_tracking_errors_tell_a_sway_from_a_shake(bench):
    t = np.arange(75) / 25.0
    sway = np.stack([8 * np.sin(0.5 * np.pi * t), 0 * t, 0 * t], 1)
    lm, K, w2c, euler = _clip(sway)
    out = bench.tracking_errors(lm, K, 128, w2c, euler, stored_w2c=w2c, outlier_mads=(8,))
    rows = out["errors_deg"]
    assert set(rows) == {"stored", "per_frame_pnp", "smoothed", "smoothed_outlier_mads_8", "smoothed_never_relaxed"}
    assert rows["stored"]["mean"] == 0 and out["fast_frames"] == 0 and rows["smoothed"]["fast_frames_mean"] is None
    assert rows["smoothed"]["mean"] < 0.7 * rows["per_frame_pnp"]["mean"]  # smoothing helps a slow head
    shake = np.stack([0 * t, 6 * np.sin(4 * np.pi * t), 0 * t], 1)  # +-6 degrees at 2 Hz: up to 75 deg/s
    lm, K, w2c, euler = _clip(shake)
    rows = bench.tracking_errors(lm, K, 128, w2c, euler)["errors_deg"]
    assert rows["smoothed"]["fast_frames_mean"] > rows["per_frame_pnp"]["fast_frames_mean"]  # and costs a fast one

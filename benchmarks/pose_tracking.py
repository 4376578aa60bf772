"""Head-pose tracking against the truth (issue 25): the pose preprocessing stored, per-frame PnP, and the smoothed fit.

    python data_scripts/make_sample_subject.py --out FAST --seconds 12 --emotion-seconds 2 --head-motion fast
    python -m etlib.preprocess FAST/talking.mp4 SUBJECT
    python benchmarks/pose_tracking.py SUBJECT FAST/ground_truth/talking.npz [--outlier-mads 3 8]

Rotation error (degrees, :func:`etlib.preprocess.report.rotation_error_deg`) of each frame against the sample
subject's true pose: mean, 95th percentile, maximum, and the mean over the frames whose true head turns faster than
``--fast`` degrees a second (a quick nod, turn or shake), with the pose jitter of each. The poses are solved again from
the subject's landmarks at its focal length, so only the smoothing differs between the rows. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from etlib.base import add_debug_flag, run_main


def fast_frames(euler_rad: np.ndarray, fps: float = 25.0, threshold_deg_s: float = 40.0) -> np.ndarray:
    """(T,) bool: frames next to a step in which the true head turns faster than ``threshold_deg_s``."""
    speed = np.linalg.norm(np.diff(np.rad2deg(euler_rad), axis=0), axis=1) * fps
    fast = np.zeros(len(euler_rad), bool)
    fast[1:] |= speed > threshold_deg_s
    fast[:-1] |= speed > threshold_deg_s
    return fast


def error_summary(w2c: np.ndarray, true_w2c: np.ndarray, fast: np.ndarray) -> dict:
    """Mean, p95 and max rotation error, the mean over ``fast`` frames, and the pose jitter (degrees)."""
    from etlib.preprocess.pose import pose_jitter_degrees
    from etlib.preprocess.report import rotation_error_deg

    e = rotation_error_deg(w2c, true_w2c)
    return {
        "mean": round(float(e.mean()), 3),
        "p95": round(float(np.percentile(e, 95)), 3),
        "max": round(float(e.max()), 3),
        "fast_frames_mean": round(float(e[fast].mean()), 3) if fast.any() else None,
        "jitter": round(float(pose_jitter_degrees(w2c)), 3),
    }


def tracking_errors(
    landmarks: np.ndarray,
    K: np.ndarray,
    size: int,
    true_w2c: np.ndarray,
    true_euler: np.ndarray,
    stored_w2c: np.ndarray | None = None,
    outlier_mads: tuple[float, ...] = (),
    fast_deg_s: float = 40.0,
) -> dict:
    """Rotation errors of the poses solved from ``landmarks`` (T, 68, 2) at focal ``K[0, 0]``: per-frame PnP, the
    default smoothed fit, the smoothed fit at each ``outlier_mads`` (:func:`~etlib.preprocess.pose.solve_head_pose`), the
    plain smoothing spline, and ``stored_w2c`` when given."""
    from etlib.preprocess.pose import solve_head_pose

    fast = fast_frames(true_euler, threshold_deg_s=fast_deg_s)
    rows = {} if stored_w2c is None else {"stored": error_summary(stored_w2c, true_w2c, fast)}
    focal = float(K[0, 0])
    rows["per_frame_pnp"] = error_summary(
        solve_head_pose(landmarks, size, size, focal, smoothness=0).w2c, true_w2c, fast
    )
    rows["smoothed"] = error_summary(solve_head_pose(landmarks, size, size, focal).w2c, true_w2c, fast)
    for x in (*outlier_mads, np.inf):
        relax = {"max_excess_iod": np.inf} if x == np.inf else {}
        w2c = solve_head_pose(landmarks, size, size, focal, outlier_mads=x, **relax).w2c
        rows["smoothed_never_relaxed" if x == np.inf else f"smoothed_outlier_mads_{x:g}"] = error_summary(
            w2c, true_w2c, fast
        )
    return {"frames": len(landmarks), "fast_frames": int(fast.sum()), "fast_deg_s": fast_deg_s, "errors_deg": rows}


def main(argv: list[str] | None = None) -> int:
    from etlib.preprocess.subject import SubjectDir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("subject", help="a preprocessed sample subject")
    parser.add_argument("ground_truth", help="its ground_truth/<clip>.npz")
    parser.add_argument(
        "--outlier-mads", type=float, nargs="*", default=[], help="other relaxation thresholds (robust SDs)"
    )
    parser.add_argument("--fast", type=float, default=40.0, help="a fast frame turns faster than this (deg/s)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if not Path(args.ground_truth).is_file():
        parser.error(
            f"no ground truth at {args.ground_truth}: make_sample_subject.py writes OUT/ground_truth/talking.npz"
        )
    subject = SubjectDir(args.subject)
    if not subject.landmarks.is_file():
        parser.error(
            f"{args.subject} is no preprocessed subject: run `python -m etlib.preprocess VIDEO {args.subject}`"
        )
    gt = np.load(Path(args.ground_truth))
    landmarks = np.load(subject.landmarks)
    n = len(landmarks)
    K, w2c = subject.cameras()
    result = tracking_errors(
        landmarks, K, subject.meta()["resolution"], gt["poses"][:n], gt["euler_yaw_pitch_roll"][:n], w2c,
        tuple(args.outlier_mads), args.fast,
    )  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

"""Mouth landmark distance, LMD [10] (Sec. 4.1, Tables 1-2).

Chen et al. (2018, "Lip movements generation at a glance") define LMD as the Euclidean distance between
corresponding mouth landmarks of the generated and the real frame, averaged over the landmarks and the
frames: ``LMD = 1 / (T P) sum_t sum_p ||L^pred_{t,p} - L^gt_{t,p}||_2``. As in the talking-head
evaluations the paper follows (ER-NeRF, TalkingGaussian), landmarks are the 68-point iBUG layout found by
the same detector on both videos, in pixels at the evaluation resolution, with no further normalisation;
``scale`` converts to another resolution (e.g. ``512 / resolution`` to state it at 512 px).
"""

from __future__ import annotations

import numpy as np

from etlib.base import LIP_POINTS


def _as_frames(landmarks: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must be [T, N, 2] or [N, 2] (x, y) pixels, got shape {arr.shape}")
    return arr


def lmd(pred_landmarks: np.ndarray, gt_landmarks: np.ndarray, mouth_only: bool = True, scale: float = 1.0) -> float:
    """Landmark distance [10]: mean Euclidean distance over mouth points 48-67 (or all points) and frames.

    Args:
        pred_landmarks, gt_landmarks: ``[T, 68, 2]`` (or ``[68, 2]``) pixel coordinates.
        mouth_only: average over the 20 mouth points (LMD); ``False`` averages over all points.
        scale: multiplies the distances (resolution conversion); 1 keeps pixels at the given resolution.
    """
    pred, gt = _as_frames(pred_landmarks, "pred_landmarks"), _as_frames(gt_landmarks, "gt_landmarks")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} landmarks differ in shape")
    if mouth_only:
        if pred.shape[1] != 68:
            raise ValueError(f"mouth_only needs the 68-point layout, got {pred.shape[1]} points")
        pred, gt = pred[:, LIP_POINTS], gt[:, LIP_POINTS]
    return float(np.linalg.norm(pred - gt, axis=-1).mean() * scale)

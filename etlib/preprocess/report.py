"""``report.json`` of a processed subject: self-checks, and errors against ground truth when it exists.

Self-checks work on any footage (issue: real clips have no ground truth):

* ``face_share``: frames with a face;
* ``reprojection_iod``: mean distance between the 68 landmarks and the posed mean face, in inter-ocular
  distances (it rises if pose smoothing erased real head motion);
* ``reprojection_iod_pct_per_frame_pnp``: the same for unsmoothed per-frame PnP, the floor: the gap
  between the two is what temporal smoothing cost;
* ``pose_jitter_deg``: RMS rotation left after removing a 0.5 s moving average;
* ``mouth_sound_corr`` / ``mouth_sound_lag_s``: correlation of the mouth opening with the loudness
  envelope at the best lag within ±0.2 s (weak on real clips: speech moves lips before sound);
* ``seconds`` and ``peak_memory_mb``.

With ground truth (the sample subject's ``.npz``): landmark NME (% of inter-ocular distance), head
rotation error (degrees, after removing the constant rotation between the two head templates),
inside-mouth mask IoU against the true inner-lip polygon on open-mouth frames, and the correlation of
AU45 with the true blinks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from etlib.base import FPS
from etlib.preprocess.subject import SubjectDir
from etlib.preprocess.template import INNER_LIPS, inter_ocular_distance


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(T,) inner-lip gap (61-67, 62-66, 63-65) over the inter-ocular distance."""
    lm = np.asarray(landmarks)
    gap = sum(np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) for a, b in ((61, 67), (62, 66), (63, 65))) / 3
    return gap / np.maximum(inter_ocular_distance(lm), 1e-6)


def loudness_envelope(wave: np.ndarray, n_frames: int, sr: int = 16000, fps: float = FPS) -> np.ndarray:
    """(T,) RMS loudness a video frame, in dB."""
    hop = int(round(sr / fps))
    wave = np.pad(wave, (0, max(0, n_frames * hop - len(wave))))[: n_frames * hop]
    rms = np.sqrt((wave.reshape(n_frames, hop) ** 2).mean(axis=1) + 1e-10)
    return 20 * np.log10(rms)


def best_lag_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Pearson r of ``a[t]`` with ``b[t + lag]`` at the lag in ±max_lag that maximises it."""
    best = (-2.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        x = a[max(0, -lag) : len(a) - max(0, lag)]
        y = b[max(0, lag) : len(b) - max(0, -lag)]
        if len(x) > 2 and x.std() > 0 and y.std() > 0:
            r = float(np.corrcoef(x, y)[0, 1])
            best = max(best, (r, lag))
    return best


def rotation_error_deg(w2c_est: np.ndarray, w2c_true: np.ndarray) -> np.ndarray:
    """Per-frame angle between estimated and true head rotations, after the best constant offset.

    The two heads are different templates whose axes may differ by a fixed rotation; that offset is the
    SO(3) projection of sum_t R_true_t^T R_est_t (least squares in the chordal metric).
    """
    r_est, r_true = w2c_est[:, :3, :3], w2c_true[:, :3, :3]
    m = np.einsum("tji,tjk->ik", r_true, r_est)
    u, _, vt = np.linalg.svd(m)
    offset = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
    delta = Rotation.from_matrix(np.einsum("tij,jk->tik", r_true, offset)).inv() * Rotation.from_matrix(r_est)
    return np.degrees(delta.magnitude())


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * float(fraction)


def build_report(subject: SubjectDir, ground_truth: Path | None = None) -> dict:
    from etlib.io import read_audio
    from etlib.preprocess.crop import CropWindow
    from etlib.preprocess.pose import HeadPose, pose_jitter_degrees
    from etlib.preprocess.template import mean_face_68

    meta = subject.meta()
    steps = meta.get("steps", {})
    landmarks = np.load(subject.landmarks)
    n = len(landmarks)
    K, w2c = subject.cameras()
    pose = HeadPose(K, w2c, np.zeros(n), np.zeros(n))
    reproj = np.linalg.norm(pose.project(mean_face_68()) - landmarks, axis=-1).mean(1)
    mouth = mouth_opening(landmarks)
    loud = loudness_envelope(read_audio(subject.audio, sr=16000), n)
    corr, lag = best_lag_correlation(mouth, loud, max_lag=int(round(0.2 * FPS)))
    report: dict = {
        "frames": n,
        "resolution": meta.get("resolution"),
        "source": meta.get("source"),
        "retimed_to_25fps": meta.get("retimed_to_25fps"),
        "backends": {k: v.get("backend") for k, v in steps.items()},
        "self_checks": {
            "face_share": steps.get("landmarks", {}).get("face_share"),
            "detected_share": steps.get("landmarks", {}).get("detected_share"),
            "reprojection_iod_pct": float(100 * (reproj / inter_ocular_distance(landmarks)).mean()),
            "reprojection_iod_pct_per_frame_pnp": _pct(steps.get("pose", {}).get("reprojection_iod_per_frame_pnp")),
            "pose_jitter_deg": pose_jitter_degrees(w2c, FPS),
            "mouth_sound_corr": corr,
            "mouth_sound_lag_s": lag / FPS,
            "seconds": round(sum(v.get("seconds", 0) for v in steps.values()), 1),
            "peak_memory_mb": meta.get("peak_memory_mb"),
        },
    }
    if ground_truth is not None:
        report["ground_truth"] = compare_to_ground_truth(subject, Path(ground_truth), CropWindow(**meta["crop"]))
    return report


def compare_to_ground_truth(subject: SubjectDir, path: Path, window) -> dict:
    """Errors of the subject's landmarks, poses, mouth masks and AU45 against the sample subject's truth."""
    from etlib.preprocess.masks import _poly_mask, mask_iou

    gt = np.load(path)
    res = subject.meta()["resolution"]
    landmarks = np.load(subject.landmarks)
    n = len(landmarks)
    true_lm = window.to_crop_pixels(gt["landmarks_2d"][:n], res)
    nme = np.linalg.norm(landmarks - true_lm, axis=-1).mean(1) / inter_ocular_distance(true_lm)
    _, w2c = subject.cameras()
    rot_err = rotation_error_deg(w2c, gt["poses"][:n])
    open_frames = np.nonzero(mouth_opening(true_lm) > 0.08)[0]
    ious = [
        mask_iou(subject.read_mask("mouth", i), _poly_mask(true_lm[i, INNER_LIPS], res))
        for i in open_frames[:: max(1, len(open_frames) // 200)]
    ]
    names, aus = subject.read_au()
    au45 = aus[:, names.index("AU45_r")] if "AU45_r" in names else None
    blink = gt["blink"][:n]
    blink_corr = (
        float(np.corrcoef(au45, blink)[0, 1]) if au45 is not None and au45.std() > 0 and blink.std() > 0 else None
    )
    return {
        "file": str(path),
        "landmark_nme_pct": float(100 * nme.mean()),
        "rotation_error_deg": float(rot_err.mean()),
        "rotation_error_p95_deg": float(np.percentile(rot_err, 95)),
        "mouth_iou": float(np.mean(ious)) if ious else None,
        "mouth_iou_frames": len(ious),
        "au45_blink_corr": blink_corr,
    }

"""Head pose and intrinsics from 68 landmarks: PnP against the mean 3-D face, a focal search, smoothing.

The head is the world: it stays fixed and the camera moves around it, as in ER-NeRF/TalkingGaussian, so
the Gaussians live in a head-fixed frame. Poses are world-to-camera matrices in the OpenCV convention
(x right, y down, z forward); ``transforms.json`` stores camera-to-world matrices in the OpenGL axes that
ER-NeRF and TalkingGaussian read (their loaders flip y and z back).

Jitter is a top complaint of talking-head users. Per-frame PnP on a rigid subset of landmarks (eyes, nose,
the jaw points by the ears) leaves 1-2 degrees of frame-to-frame noise on real clips, because a small
near-frontal face barely constrains rotation against translation: a pitch error is undone by a vertical
shift. :func:`smooth_poses` therefore refits all frames jointly, reprojection error plus a penalty on the
rotation's acceleration (a smoothing spline): where the landmarks do not pin the rotation, translation
absorbs the difference and the rotation stays smooth. A spline also flattens quick real nods; those show
as frames whose rigid landmarks the smoothed pose misses by much more than their own PnP fit did, and
:func:`solve_head_pose` relaxes the penalty there until it fits them (iteratively reweighted).
Measured: on the sample subject the rotation error against the truth drops from 0.81° (per-frame PnP) to
0.57°; on five real clips the jitter drops from 0.8-2.4° to 0.17-0.23° on three, and to 1.1° and 1.6° on
two whose heads nod quickly (keeping those nods; forcing 0.5° there misplaces the rigid landmarks by 5 %
of the inter-ocular distance on the nod frames).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from etlib.preprocess.template import RIGID, forehead_points, inter_ocular_distance, mean_face_68

#: Unit (metres) of the translation's acceleration penalty in :func:`smooth_poses`. Much larger than a
#: head's radius (0.1 m), so translation is nearly free to absorb what the landmarks cannot tell apart from
#: a rotation; 0.1 would keep fast nods better but leaves ~1° of jitter on real clips (measured on the real test clips).
TRANSLATION_UNIT_M = 0.5

#: OpenCV camera axes <-> OpenGL camera axes.
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class HeadPose:
    """Intrinsics and per-frame world-to-camera poses, plus the fit's reprojection error."""

    K: np.ndarray  # (3, 3)
    w2c: np.ndarray  # (T, 4, 4) OpenCV convention
    reprojection_px: np.ndarray  # (T,) mean error of all 68 landmarks, pixels
    reprojection_iod: np.ndarray  # (T,) the same in fractions of the inter-ocular distance
    per_frame_pnp_reprojection_iod: np.ndarray | None = None  # (T,) before smoothing: the floor it is judged by

    @property
    def rotations(self) -> np.ndarray:
        return self.w2c[:, :3, :3]

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project (P, 3) world points into every frame: (T, P, 2) pixels."""
        cam = np.einsum("tij,pj->tpi", self.w2c[:, :3, :3], points) + self.w2c[:, None, :3, 3]
        uv = np.einsum("ij,tpj->tpi", self.K, cam)
        return uv[..., :2] / uv[..., 2:3]


def intrinsics(focal: float, width: int, height: int) -> np.ndarray:
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)


def _pnp(points3d: np.ndarray, points2d: np.ndarray, K: np.ndarray, guess=None) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    if guess is None:
        ok, rvec, tvec = cv2.solvePnP(points3d, points2d, K, None, flags=cv2.SOLVEPNP_EPNP)
        if not ok:
            raise RuntimeError("PnP failed")
    else:
        rvec, tvec = guess
    ok, rvec, tvec = cv2.solvePnP(
        points3d, points2d, K, None, rvec.copy(), tvec.copy(), useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE
    )
    return rvec.reshape(3), tvec.reshape(3)


def _reprojection(points3d, points2d, K, rvec, tvec) -> float:
    import cv2

    proj, _ = cv2.projectPoints(points3d, rvec, tvec, K, None)
    return float(np.linalg.norm(proj.reshape(-1, 2) - points2d, axis=1).mean())


def search_focal(landmarks: np.ndarray, width: int, height: int, n_frames: int = 40) -> float:
    """The focal length (pixels) that lets the rigid template fit the landmarks best.

    A coarse log-spaced scan from 0.7 to 6 image widths on a sample of frames, refined by a parabola
    through the best three. Weakly constrained for near-frontal faces (focal trades off against distance),
    which is why the scan favours the sharper minimum over frames with head motion.
    """
    pts3d = mean_face_68()[RIGID]
    idx = np.linspace(0, len(landmarks) - 1, min(n_frames, len(landmarks))).round().astype(int)
    scales = np.exp(np.linspace(np.log(0.7), np.log(6.0), 15))
    errors = []
    for s in scales:
        K = intrinsics(s * width, width, height)
        err = 0.0
        for i in idx:
            pts2d = landmarks[i, RIGID].astype(np.float64)
            rvec, tvec = _pnp(pts3d, pts2d, K)
            err += _reprojection(pts3d, pts2d, K, rvec, tvec)
        errors.append(err / len(idx))
    k = int(np.clip(np.argmin(errors), 1, len(scales) - 2))
    x = np.log(scales[k - 1 : k + 2])
    y = np.array(errors[k - 1 : k + 2])
    a, b, _ = np.polyfit(x, y, 2)
    best = np.exp(-b / (2 * a)) if a > 0 else scales[k]
    return float(np.clip(best, scales[0], scales[-1]) * width)


def solve_head_pose(
    landmarks: np.ndarray,
    width: int,
    height: int,
    focal: float | None = None,
    smoothness: float = 3000.0,
    max_excess_iod: float = 0.01,
    outlier_mads: float = 5.0,
    min_excess_iod: float = 0.002,
) -> HeadPose:
    """Per-frame head pose from (T, 68, 2) landmarks.

    Args:
        landmarks: pixels of frames ``width`` x ``height``.
        focal: focal length in pixels; searched when None.
        smoothness: weight of the rotation-acceleration penalty of :func:`smooth_poses`; 0 keeps the
            per-frame PnP solutions.
        max_excess_iod, outlier_mads, min_excess_iod: where smoothing erased motion the landmarks show (a quick
            real nod). A frame's *excess* is how much worse (in inter-ocular distances) its rigid landmarks fit
            after smoothing than its own PnP solution. The penalty is relaxed and the clip refitted at frames whose
            excess is above ``max_excess_iod``, or is an outlier of the clip (:func:`excess_outliers`, more than
            ``outlier_mads`` robust standard deviations above the clip's median and above ``min_excess_iod``).
            The second test finds quick turns in clean footage that the first missed: there translation absorbs
            much of a turn the spline flattens, so the excess stays small while the rotation errs by degrees (a
            fast synthetic shake: 1.37 deg mean error with the first test alone, 1.02 with both; real clips'
            poses unchanged). ``max_excess_iod=outlier_mads=inf`` never relaxes (a plain smoothing spline).
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (T, 68, 2), got {landmarks.shape}")
    if not np.isfinite(landmarks).all():
        raise ValueError("landmarks contain NaN/inf: fill frames without a face first (preprocess does)")
    focal = focal or search_focal(landmarks, width, height)
    K = intrinsics(focal, width, height)
    pts3d = mean_face_68()[RIGID]
    w2c = np.tile(np.eye(4), (len(landmarks), 1, 1))
    guess = None
    for i, lm in enumerate(landmarks):
        rvec, tvec = _pnp(pts3d, lm[RIGID].astype(np.float64), K, guess)
        w2c[i, :3, :3] = Rotation.from_rotvec(rvec).as_matrix()
        w2c[i, :3, 3] = tvec
        guess = (rvec, tvec)  # warm start: continuity between frames
    per_frame_error = reprojection_iod(K, w2c, landmarks)
    if smoothness > 0 and len(landmarks) > 2:
        floor = reprojection_iod(K, w2c, landmarks, RIGID)
        stiffness, smoothed = np.ones(len(landmarks)), w2c
        for _ in range(8):  # reweighting rounds: a clip without quick nods needs one
            smoothed = smooth_poses(landmarks, K, smoothed, smoothness, stiffness=stiffness)
            excess = reprojection_iod(K, smoothed, landmarks, RIGID) - floor
            excess = (excess > max_excess_iod) | excess_outliers(excess, outlier_mads, min_excess_iod)
            if not excess.any():
                break
            # Let the pose bend at those frames and their neighbours.
            bend = excess.copy()
            bend[1:] |= excess[:-1]
            bend[:-1] |= excess[1:]
            stiffness[bend] /= 10.0
        w2c = smoothed
    error = reprojection_iod(K, w2c, landmarks)
    iod = np.maximum(inter_ocular_distance(landmarks), 1e-6)
    return HeadPose(K, w2c, error * iod, error, per_frame_error)


def excess_outliers(excess: np.ndarray, outlier_mads: float = 5.0, min_excess_iod: float = 0.002) -> np.ndarray:
    """(T,) bool: the frames where smoothing fits the landmarks much worse than elsewhere in the clip.

    ``excess`` (T,) is each frame's fit after smoothing less its PnP fit (IOD). Averaged over three frames (a real
    nod spans several, a landmark glitch one), it is an outlier above ``median + outlier_mads * 1.4826 * MAD`` and
    above ``min_excess_iod``: the clip's own noise sets the bar, so a noisy clip is not bent at its noise and a
    clean one is bent at a quick turn."""
    run = np.convolve(np.pad(excess, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    median = np.median(run)
    spread = 1.4826 * np.median(np.abs(run - median))
    return run > max(min_excess_iod, median + outlier_mads * spread)


def reprojection_iod(K: np.ndarray, w2c: np.ndarray, landmarks: np.ndarray, points=slice(None)) -> np.ndarray:
    """(T,) mean distance between the ``points`` of the 68 landmarks (default all; :data:`RIGID` for the rigid
    ones) and the posed template's, in inter-ocular distances."""
    pose = HeadPose(K, w2c, np.zeros(len(w2c)), np.zeros(len(w2c)))
    err = np.linalg.norm(pose.project(mean_face_68()[points]) - landmarks[:, points], axis=-1).mean(axis=1)
    return err / np.maximum(inter_ocular_distance(landmarks), 1e-6)


def smooth_poses(
    landmarks: np.ndarray,
    K: np.ndarray,
    w2c: np.ndarray,
    smoothness: float = 3000.0,
    max_iter: int = 500,
    stiffness: np.ndarray | None = None,
) -> np.ndarray:
    """Joint temporal refit of (T, 4, 4) world-to-camera poses: a smoothing spline on the rotation.

    Minimises, over per-frame rotation vectors ``r_t`` (relative to the mean rotation) and translations
    ``t_t``::

        sum_t sum_p |proj(R_t X_p + t_t) - x_tp|^2 / iod_t^2  +  smoothness * sum_t |r_{t+1} - 2 r_t + r_{t-1}|^2

    over the rigid landmarks ``p``, with L-BFGS from the per-frame solutions. The data term is in
    inter-ocular distances, so ``smoothness`` does not depend on the resolution. Translation carries a much
    weaker penalty (in units of :data:`TRANSLATION_UNIT_M`, plus the same acceleration term on ``t / unit``):
    it absorbs what the landmarks cannot tell apart from a rotation. ``stiffness`` (T,) scales the penalty
    at each frame (:func:`solve_head_pose` lowers it where smoothing would erase a real nod).
    """
    import torch

    rot = Rotation.from_matrix(w2c[:, :3, :3])
    mean = rot.mean()
    dtype = torch.float64
    points = torch.tensor(mean_face_68()[RIGID], dtype=dtype)
    observed = torch.tensor(landmarks[:, RIGID], dtype=dtype)
    iod = torch.tensor(np.maximum(inter_ocular_distance(landmarks), 1e-6), dtype=dtype)[:, None, None]
    stiff = torch.ones(len(landmarks), dtype=dtype) if stiffness is None else torch.tensor(stiffness, dtype=dtype)
    stiff = stiff[1:-1, None]  # one per second difference, centred on frames 1 .. T-2
    Kt = torch.tensor(K, dtype=dtype)
    base = torch.tensor(mean.as_matrix(), dtype=dtype)
    rel = torch.tensor((mean.inv() * rot).as_rotvec(), dtype=dtype, requires_grad=True)
    trans = torch.tensor(w2c[:, :3, 3], dtype=dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [rel, trans], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-10, tolerance_change=1e-14
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        cam = torch.einsum("tij,pj->tpi", base @ _rotvec_to_matrix(rel), points) + trans[:, None]
        uv = torch.einsum("ij,tpj->tpi", Kt, cam)
        data = (((uv[..., :2] / uv[..., 2:3] - observed) / iod) ** 2).sum()
        accel = (stiff * torch.diff(rel, n=2, dim=0) ** 2).sum()
        accel = accel + (stiff * torch.diff(trans / TRANSLATION_UNIT_M, n=2, dim=0) ** 2).sum()
        loss = data + smoothness * accel
        loss.backward()
        return loss

    optimizer.step(objective)
    out = w2c.copy()
    with torch.no_grad():
        out[:, :3, :3] = (base @ _rotvec_to_matrix(rel)).numpy()
        out[:, :3, 3] = trans.numpy()
    return out


def _rotvec_to_matrix(rotvec):
    """Rodrigues' formula for (T, 3) torch rotation vectors (differentiable)."""
    import torch

    angle = rotvec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = rotvec / angle
    zero = torch.zeros_like(k[:, 0])
    cross = torch.stack([zero, -k[:, 2], k[:, 1], k[:, 2], zero, -k[:, 0], -k[:, 1], k[:, 0], zero], dim=-1).view(
        -1, 3, 3
    )
    sin, cos = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=rotvec.dtype)
    return eye + sin * cross + (1 - cos) * cross @ cross


def project_forehead(pose: HeadPose) -> np.ndarray:
    """(T, 7, 2) image positions of the template's forehead points."""
    return pose.project(forehead_points())


def pose_jitter_degrees(w2c: np.ndarray, fps: float = 25.0, window_s: float = 0.5) -> float:
    """RMS angle (degrees) between each rotation and its 0.5 s moving average: high-frequency jitter."""
    rot = Rotation.from_matrix(w2c[:, :3, :3])
    mean = rot.mean()
    rel = (mean.inv() * rot).as_rotvec()
    k = max(1, int(round(window_s * fps)))
    kernel = np.ones(k) / k
    pad = np.pad(rel, ((k // 2, k - 1 - k // 2), (0, 0)), mode="edge")
    avg = np.stack([np.convolve(pad[:, d], kernel, mode="valid") for d in range(3)], axis=1)
    diff = (Rotation.from_rotvec(avg).inv() * Rotation.from_rotvec(rel)).magnitude()
    return float(np.degrees(np.sqrt(np.mean(diff**2))))


def write_transforms(path: Path, pose: HeadPose, width: int, height: int) -> None:
    """ER-NeRF / TalkingGaussian ``transforms.json``: camera-to-world in OpenGL axes."""
    from etlib.base import atomic_write_text

    frames = []
    for i, w2c in enumerate(pose.w2c):
        c2w_gl = np.linalg.inv(w2c) @ CV_TO_GL
        frames.append({"img_id": i, "aud_id": i, "transform_matrix": c2w_gl.tolist()})
    doc = {
        "focal_len": float(pose.K[0, 0]),
        "cx": float(pose.K[0, 2]),
        "cy": float(pose.K[1, 2]),
        "w": int(width),
        "h": int(height),
        "camera_convention": "transform_matrix is camera-to-world, OpenGL axes (x right, y up, z back)",
        "world": "head-fixed frame of the mean 68-landmark face: x right, y down, z away from a frontal camera, metres",
        "frames": frames,
    }
    atomic_write_text(path, json.dumps(doc, indent=1))


def read_transforms(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(K, world-to-camera (T, 4, 4)) in the OpenCV convention."""
    doc = json.loads(Path(path).read_text())
    K = intrinsics(doc["focal_len"], 0, 0)
    K[0, 2], K[1, 2] = doc["cx"], doc["cy"]
    c2w_gl = np.array([f["transform_matrix"] for f in doc["frames"]], dtype=np.float64)
    w2c = np.linalg.inv(c2w_gl @ CV_TO_GL)
    return K, w2c

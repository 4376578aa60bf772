"""Head pose and intrinsics from 68 landmarks: PnP against the mean 3-D face, a focal search, smoothing.

The head is the world: it stays fixed and the camera moves around it, as in ER-NeRF/TalkingGaussian, so
the Gaussians live in a head-fixed frame. Poses are world-to-camera matrices in the OpenCV convention
(x right, y down, z forward); ``transforms.json`` stores camera-to-world matrices in the OpenGL axes that
ER-NeRF and TalkingGaussian read (their loaders flip y and z back).

Jitter is a top complaint of talking-head users: PnP on a rigid subset of landmarks (eyes, nose, the jaw
points by the ears) followed by a light temporal filter keeps it well under a degree, and the
reprojection error of all 68 points keeps the filter honest (over-smoothing real motion raises it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from etlib.preprocess.template import RIGID, forehead_points, inter_ocular_distance, mean_face_68

#: OpenCV camera axes <-> OpenGL camera axes.
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class HeadPose:
    """Intrinsics and per-frame world-to-camera poses, plus the fit's reprojection error."""

    K: np.ndarray  # (3, 3)
    w2c: np.ndarray  # (T, 4, 4) OpenCV convention
    reprojection_px: np.ndarray  # (T,) mean error of all 68 landmarks, pixels
    reprojection_iod: np.ndarray  # (T,) the same in fractions of the inter-ocular distance

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
    smoothing_sigma: float = 1.0,
) -> HeadPose:
    """Per-frame head pose from (T, 68, 2) landmarks.

    Args:
        landmarks: pixels of frames ``width`` x ``height``.
        focal: focal length in pixels; searched when None.
        smoothing_sigma: temporal Gaussian on rotation vectors and translations, in frames.
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (T, 68, 2), got {landmarks.shape}")
    focal = focal or search_focal(landmarks, width, height)
    K = intrinsics(focal, width, height)
    pts3d = mean_face_68()[RIGID]
    rvecs, tvecs = [], []
    guess = None
    for lm in landmarks:
        rvec, tvec = _pnp(pts3d, lm[RIGID].astype(np.float64), K, guess)
        rvecs.append(rvec)
        tvecs.append(tvec)
        guess = (rvec, tvec)  # warm start: continuity between frames
    rot = Rotation.from_rotvec(np.array(rvecs))
    if smoothing_sigma > 0 and len(landmarks) > 2:
        # Smooth relative to the mean rotation, where rotation vectors are small and additive.
        mean = rot.mean()
        rel = (mean.inv() * rot).as_rotvec()
        rel = gaussian_filter1d(rel, smoothing_sigma, axis=0, mode="nearest")
        rot = mean * Rotation.from_rotvec(rel)
        tvecs = gaussian_filter1d(np.array(tvecs), smoothing_sigma, axis=0, mode="nearest")
    w2c = np.tile(np.eye(4), (len(landmarks), 1, 1))
    w2c[:, :3, :3] = rot.as_matrix()
    w2c[:, :3, 3] = np.array(tvecs)
    pose = HeadPose(K, w2c, np.zeros(len(landmarks)), np.zeros(len(landmarks)))
    proj = pose.project(mean_face_68())
    err = np.linalg.norm(proj - landmarks, axis=-1).mean(axis=1)
    pose.reprojection_px = err
    pose.reprojection_iod = err / np.maximum(inter_ocular_distance(landmarks), 1e-6)
    return pose


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
    from etlib.preprocess.subject import atomic_write_text

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

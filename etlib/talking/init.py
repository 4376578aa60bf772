"""Initial canonical Gaussians from a processed subject.

TalkingGaussian starts its fields from random points in the head's box. On a CPU, with a few hundred
iterations, a good start matters more: we lift one frame's 68 landmarks to 3-D (the mean face's depth
under that frame's head pose), sample the face Gaussians on that subject-shaped mesh (forehead included)
and the inside-mouth Gaussians in a shallow volume behind the inner lips of the frame whose mouth is the
most open, coloured from the frames.
"""

from __future__ import annotations

import numpy as np
import torch

from etlib.gaussians.model import GaussianSet
from etlib.preprocess.subject import SubjectDir
from etlib.preprocess.template import INNER_LIPS, forehead_points, mean_face_68, template_triangles


def lift_landmarks(landmarks: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """(68, 2) pixels -> (68, 3) world points: each ray cut at the posed mean face's depth."""
    cam = mean_face_68() @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2:3]
    rays = np.concatenate([landmarks, np.ones((68, 1))], 1) @ np.linalg.inv(K).T
    cam_pts = rays * z
    return (cam_pts - w2c[:3, 3]) @ w2c[:3, :3]  # R^T (x - t)


def _sample_mesh(vertices: np.ndarray, triangles: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    tri = rng.choice(len(triangles), size=n, p=area / area.sum())
    u, v = rng.random((2, n))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    return a[tri] + u[:, None] * (b[tri] - a[tri]) + v[:, None] * (c[tri] - a[tri])


def _colours_from_frame(points: np.ndarray, frame: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    uv = cam @ K.T
    uv = uv[:, :2] / uv[:, 2:3]
    h, w = frame.shape[:2]
    x = np.clip(uv[:, 0].astype(int), 0, w - 1)
    y = np.clip(uv[:, 1].astype(int), 0, h - 1)
    return frame[y, x].astype(np.float32) / 255.0


def mouth_opening_2d(landmarks: np.ndarray) -> np.ndarray:
    return np.linalg.norm(landmarks[:, 66] - landmarks[:, 62], axis=-1)


def initial_gaussians(
    subject: SubjectDir,
    n_face: int,
    n_mouth: int,
    frames: list[int] | None = None,
    sh_degree: int = 1,
    seed: int = 0,
) -> tuple[GaussianSet, GaussianSet]:
    """(mouth, face) canonical Gaussian sets for ``subject`` (drawn from its training ``frames``)."""
    rng = np.random.default_rng(seed)
    landmarks = np.load(subject.landmarks)
    K, w2c = subject.cameras()
    frames = list(range(len(landmarks))) if frames is None else list(frames)
    # Face: the frame whose mouth is most closed looks most like the canonical (mean) face.
    opening = mouth_opening_2d(landmarks[frames])
    ref = frames[int(np.argmin(opening))]
    lifted = lift_landmarks(landmarks[ref], K, w2c[ref])
    verts = np.concatenate([lifted, forehead_points() + (lifted[27] - mean_face_68()[27])], 0)
    face_pts = _sample_mesh(verts, np.asarray(template_triangles()), n_face, rng)
    face_pts += rng.normal(0, 0.0015, face_pts.shape)  # a little depth spread around the surface
    face_rgb = _colours_from_frame(face_pts, subject.read_frame(ref), K, w2c[ref])
    face = GaussianSet.from_points(face_pts, face_rgb, sh_degree=sh_degree, init_opacity=0.5, seed=seed)

    # Inside the mouth: behind the inner lips of the most open frame, 2-15 mm deep.
    wide = frames[int(np.argmax(opening))]
    lips = lift_landmarks(landmarks[wide], K, w2c[wide])[INNER_LIPS]
    lo, hi = lips.min(0), lips.max(0)
    pad = 0.25 * (hi - lo)
    pts = rng.uniform(lo - pad, hi + pad, size=(n_mouth, 3))
    pts[:, 2] = rng.uniform(lips[:, 2].mean() + 0.002, lips[:, 2].mean() + 0.015, n_mouth)
    mouth_rgb = _colours_from_frame(pts, subject.read_frame(wide), K, w2c[wide])
    mouth = GaussianSet.from_points(pts, mouth_rgb, sh_degree=sh_degree, init_opacity=0.5, seed=seed + 1)
    return mouth, face


def head_box(subject: SubjectDir) -> tuple[torch.Tensor, float]:
    """Centre and half-size (metres) of the box the lifted landmarks fill: the scene extent."""
    landmarks = np.load(subject.landmarks)
    K, w2c = subject.cameras()
    pts = lift_landmarks(landmarks[0], K, w2c[0])
    centre = (pts.min(0) + pts.max(0)) / 2
    return torch.as_tensor(centre, dtype=torch.float32), float((pts.max(0) - pts.min(0)).max() / 2)

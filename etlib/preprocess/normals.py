"""Normal maps from the 3-D face template fitted to the landmarks: the offline counterpart of the normal
estimator [3] whose maps supervise the face (Eqs. 11, 14) and emotion (Eq. 17) branches.

The template mesh's vertices are placed at the frame's 68 landmarks (plus the projected forehead), so the
map follows the real face outline and expression; its vertex normals are rotated by the head pose into
camera space (OpenCV axes: a surface facing the camera has a negative z) and interpolated
barycentrically over each triangle.
"""

from __future__ import annotations

import numpy as np

from etlib.preprocess.template import template_triangles, template_vertex_normals


def render_normal_map(vertices2d: np.ndarray, rotation: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) float32 camera-space unit normals, zero outside the face.

    Args:
        vertices2d: (75, 2) pixel positions of the template vertices (68 landmarks, 7 forehead points).
        rotation: (3, 3) world-to-camera rotation of the head.
    """
    import cv2

    tris = template_triangles()
    normals = template_vertex_normals() @ rotation.T
    ids = np.full((size, size), -1, np.int32)
    for k, tri in enumerate(tris):
        pts = np.round(vertices2d[tri] * 16).astype(np.int32)
        cv2.fillConvexPoly(ids, pts, int(k), lineType=cv2.LINE_8, shift=4)
    ys, xs = np.nonzero(ids >= 0)
    out = np.zeros((size, size, 3), np.float32)
    if len(xs) == 0:
        return out
    tri = tris[ids[ys, xs]]
    a, b, c = (vertices2d[tri[:, k]] for k in range(3))
    p = np.stack([xs + 0.5, ys + 0.5], axis=1)  # pixel centres
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-9, 1e-9, den)
    w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    w = np.clip(np.stack([1 - w1 - w2, w1, w2], axis=1), 0, 1)
    n = (w[:, :, None] * normals[tri]).sum(axis=1)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    out[ys, xs] = n
    return out


def encode_normals(normals: np.ndarray) -> np.ndarray:
    """Unit normals -> uint8 RGB, ``(n + 1) / 2 * 255``; pixels without a normal stay black."""
    enc = np.clip((normals + 1.0) * 127.5, 1, 255).astype(np.uint8)
    enc[np.abs(normals).sum(-1) == 0] = 0
    return enc

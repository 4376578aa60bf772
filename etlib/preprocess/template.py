"""A generic 3-D face: the mean 68-landmark shape, a forehead, and a triangle mesh over them.

Head pose (PnP), the face mask's forehead and the template normal maps all use it. No Basel Face Model
and no pytorch3d: the course must run offline on a CPU.

The 68 points are the mean "in the wild" 3-D face of OpenFace (Baltrusaitis et al.), in millimetres, as
widely published with the 68-point iBUG convention. We store it in the head frame used everywhere in
etlib: x to the image right, y down, z away from a frontal camera (OpenCV camera axes), in metres,
origin between the eyes, so a camera with identity rotation sees the face from the front.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.spatial import Delaunay

from etlib import base

# (x, y, z) in mm, x right, y down, z towards the viewer (the published convention): etlib.base.
_MEAN_FACE_68_MM = np.asarray(base.MEAN_FACE_68_MM)

# 68-point index groups as arrays for fancy indexing (the groups themselves: etlib.base).
JAW = np.array(base.JAW_POINTS)
BROWS = np.array(base.BROW_RIGHT_POINTS + base.BROW_LEFT_POINTS)
NOSE = np.array(base.NOSE_POINTS)
RIGHT_EYE = np.array(base.EYE_RIGHT_POINTS)  # the subject's right eye, on the image left
LEFT_EYE = np.array(base.EYE_LEFT_POINTS)
EYES = np.concatenate([RIGHT_EYE, LEFT_EYE])
OUTER_LIPS = np.array(base.OUTER_LIP_POINTS)
INNER_LIPS = np.array(base.INNER_LIP_POINTS)
LIPS = np.array(base.LIP_POINTS)
#: Points that move little with speech, blinks and expression: the rigid set used for head pose (the nose,
#: the eye corners, the jaw by the ears; not the eyelids, brows, lips or chin).
RIGID = np.array(base.RIGID_POINTS)

N_FOREHEAD = 7


def _to_head_frame(points_mm: np.ndarray) -> np.ndarray:
    """mm, z towards the viewer -> metres, z away from the camera, origin between the eyes."""
    p = points_mm * np.array([1.0, 1.0, -1.0]) / 1000.0
    eye_centre = p[[39, 42]].mean(axis=0)
    return p - eye_centre


@functools.lru_cache(maxsize=1)
def mean_face_68() -> np.ndarray:
    """(68, 3) mean landmarks in the head frame, metres."""
    out = _to_head_frame(_MEAN_FACE_68_MM)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=1)
def forehead_points() -> np.ndarray:
    """(7, 3) points on the forehead above the brows, curving back like a skull (metres).

    The 68 landmarks stop at the brows; the face region of the paper (BiSeNet's skin class) goes up to
    the hairline, so masks and normal maps extend the template with an arc of forehead points.
    """
    lm = mean_face_68()
    brow_y = lm[BROWS, 1].min()
    face_height = lm[8, 1] - brow_y
    xs = np.linspace(lm[17, 0], lm[26, 0], N_FOREHEAD)
    half_width = (lm[26, 0] - lm[17, 0]) / 2
    t = xs / half_width  # -1..1 across the forehead
    ys = brow_y - 0.32 * face_height * np.sqrt(np.clip(1 - 0.55 * t**2, 0, 1))
    zs = lm[27, 2] + 0.012 + 0.045 * t**2  # the forehead recedes towards the temples
    out = np.stack([xs, ys, zs], axis=1)
    out.setflags(write=False)
    return out


def template_vertices() -> np.ndarray:
    """(68 + 7, 3): the mean landmarks followed by the forehead points."""
    return np.concatenate([mean_face_68(), forehead_points()], axis=0)


@functools.lru_cache(maxsize=1)
def template_triangles() -> np.ndarray:
    """(T, 3) triangles over :func:`template_vertices`, without the inside of the mouth and eyes."""
    verts = template_vertices()
    tri = Delaunay(verts[:, :2]).simplices
    holes = [INNER_LIPS, RIGHT_EYE, LEFT_EYE]
    keep = []
    for t in tri:
        inside_hole = any(set(t) <= set(h.tolist()) for h in holes)
        if not inside_hole:
            keep.append(t)
    out = np.array(keep, dtype=np.int32)
    # Orient every triangle counter-clockwise as seen from the camera (image coordinates, y down).
    a, b, c = verts[out[:, 0], :2], verts[out[:, 1], :2], verts[out[:, 2], :2]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flip = cross < 0
    out[flip] = out[flip][:, [0, 2, 1]]
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=1)
def template_vertex_normals() -> np.ndarray:
    """(68 + 7, 3) unit vertex normals of the template mesh, pointing towards a frontal camera (-z)."""
    verts = template_vertices()
    tris = template_triangles()
    e1 = verts[tris[:, 1]] - verts[tris[:, 0]]
    e2 = verts[tris[:, 2]] - verts[tris[:, 0]]
    face_n = np.cross(e1, e2)  # area-weighted
    normals = np.zeros_like(verts)
    for k in range(3):
        np.add.at(normals, tris[:, k], face_n)
    normals[normals[:, 2] > 0] *= -1  # towards the camera
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    normals.setflags(write=False)
    return normals


def inter_ocular_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners (36, 45): the normaliser of landmark errors (NME)."""
    lm = np.asarray(landmarks)
    return np.linalg.norm(lm[..., 36, :] - lm[..., 45, :], axis=-1)

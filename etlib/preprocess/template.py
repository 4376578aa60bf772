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

# (x, y, z) in mm, x right, y down, z towards the viewer (the published convention).
_MEAN_FACE_68_MM = np.array(
    [
        [-73.393523, -29.801432, -47.667532], [-72.775014, -10.949766, -45.909403],
        [-70.533638, 7.929818, -44.84258], [-66.850058, 26.07428, -43.141114],
        [-59.790187, 42.56439, -38.635298], [-48.368973, 56.48108, -30.750622],
        [-34.121101, 67.246992, -18.456453], [-17.875411, 75.056892, -3.609035],
        [0.098749, 77.061286, 0.881698], [17.477031, 74.758448, -5.181201],
        [32.648966, 66.929021, -19.176563], [46.372358, 56.311389, -30.77057],
        [57.34348, 42.419126, -37.628629], [64.388482, 25.45588, -40.886309],
        [68.212038, 6.990805, -42.281449], [70.486405, -11.666193, -44.142567],
        [71.375822, -30.365191, -47.140426], [-61.119406, -49.361602, -14.254422],
        [-51.287588, -58.769795, -7.268147], [-37.8048, -61.996155, -0.442051],
        [-24.022754, -61.033399, 6.606501], [-11.635713, -56.686759, 11.967398],
        [12.056636, -57.391033, 12.051204], [25.106256, -61.902186, 7.315098],
        [38.338588, -62.777713, 1.022953], [51.191007, -59.302347, -5.349435],
        [60.053851, -50.190255, -11.615746], [0.65394, -42.19379, 13.380835],
        [0.804809, -30.993721, 21.150853], [0.992204, -19.944596, 29.284036],
        [1.226783, -8.414541, 36.94806], [-14.772472, 2.598255, 20.132003],
        [-7.180239, 4.751589, 23.536684], [0.55592, 6.5629, 25.944448],
        [8.272499, 4.661005, 23.695741], [15.214351, 2.643046, 20.858157],
        [-46.04729, -37.471411, -7.037989], [-37.674688, -42.73051, -3.021217],
        [-27.883856, -42.711517, -1.353629], [-19.648268, -36.754742, 0.111088],
        [-28.272965, -35.134493, 0.147273], [-38.082418, -34.919043, -1.476612],
        [19.265868, -37.032306, 0.665746], [27.894191, -43.342445, -0.24766],
        [37.437529, -43.110822, -1.696435], [45.170805, -38.086515, -4.894163],
        [38.196454, -35.532024, -0.282961], [28.764989, -35.484289, 1.172675],
        [-28.916267, 28.612716, 2.24031], [-17.533194, 22.172187, 15.934335],
        [-6.68459, 19.029051, 22.611355], [0.381001, 20.721118, 23.748437],
        [8.375443, 19.03546, 22.721995], [18.876618, 22.394109, 15.610679],
        [28.794412, 28.079924, 3.217393], [19.057574, 36.298248, 14.987997],
        [8.956375, 39.634575, 22.554245], [0.381549, 40.395647, 23.591626],
        [-7.428895, 39.836405, 22.406106], [-18.160634, 36.677899, 15.121907],
        [-24.37749, 28.677771, 4.785684], [-6.897633, 25.475976, 20.893742],
        [0.340663, 26.014269, 22.220479], [8.444722, 25.326198, 21.02552],
        [24.474473, 28.323008, 5.712776], [8.449166, 30.596216, 20.671489],
        [0.205322, 31.408738, 21.90367], [-7.198266, 30.844876, 20.328022],
    ]
)  # fmt: skip

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
RIGID = np.array([27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45, 0, 16])

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

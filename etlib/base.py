"""What every layer of etlib shares: the course's frame and sample rates, the 68-point landmark index sets,
crash-safe file writes and JSON conversion. It imports nothing from etlib (the bottom of the dependency graph).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: Frames per second of every processed subject and rendered video (the paper's data are 25 fps, Sec. 4.1).
FPS = 25.0
#: Audio sample rate of every processed subject, feature extractor and TTS clip (HuBERT's and DeepSpeech's 16 kHz).
SAMPLE_RATE = 16_000

# ----------------------------------------------------------------------------------------------
# The iBUG 68-point landmark scheme (0-based; "right" is the subject's right, the image's left)
# ----------------------------------------------------------------------------------------------

JAW_POINTS: tuple[int, ...] = tuple(range(0, 17))
BROW_RIGHT_POINTS: tuple[int, ...] = tuple(range(17, 22))
BROW_LEFT_POINTS: tuple[int, ...] = tuple(range(22, 27))
NOSE_POINTS: tuple[int, ...] = tuple(range(27, 36))
EYE_RIGHT_POINTS: tuple[int, ...] = tuple(range(36, 42))
EYE_LEFT_POINTS: tuple[int, ...] = tuple(range(42, 48))
#: Outer (48-59) and inner (60-67) lip contours together: what L_ll of Eq. 8 and the LMD of Table 1 compare.
LIP_POINTS: tuple[int, ...] = tuple(range(48, 68))
OUTER_LIP_POINTS: tuple[int, ...] = tuple(range(48, 60))
INNER_LIP_POINTS: tuple[int, ...] = tuple(range(60, 68))
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "jaw": JAW_POINTS,
    "brow_right": BROW_RIGHT_POINTS,
    "brow_left": BROW_LEFT_POINTS,
    "nose": NOSE_POINTS,
    "eye_right": EYE_RIGHT_POINTS,
    "eye_left": EYE_LEFT_POINTS,
    "mouth": LIP_POINTS,
}


def face_box(
    landmarks: np.ndarray | None = None, bbox: tuple[float, float, float, float] | None = None, margin: float = 0.2
) -> tuple[float, float, float, float] | np.ndarray:
    """A square box ``(x0, y0, x1, y1)`` around a face, ``margin`` of its size added on every side.

    Give either landmarks ``[..., N, 2]`` (x, y; leading axes give one box each, ``[..., 4]``) or a box
    ``(x0, y0, x1, y1)``. The square's side is ``(1 + 2 * margin) * max(width, height)``, centred on the extent.
    68 landmarks span jaw to brows, so the margin is also what brings in the forehead.
    """
    if (landmarks is None) == (bbox is None):
        raise ValueError("give exactly one of landmarks [68, 2] or bbox (x0, y0, x1, y1)")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if landmarks is not None:
        pts = np.asarray(landmarks, dtype=np.float64)
        if pts.ndim < 2 or pts.shape[-1] != 2 or pts.shape[-2] == 0:
            raise ValueError(f"landmarks must be [..., N, 2] (x, y), got {pts.shape}")
        lo, hi = pts.min(axis=-2), pts.max(axis=-2)
    else:
        lo, hi = np.array(bbox[:2], np.float64), np.array(bbox[2:], np.float64)
    if np.any(hi <= lo):
        raise ValueError(f"empty face box {np.concatenate([lo, hi], axis=-1).tolist()}")
    half = 0.5 * (1 + 2 * margin) * (hi - lo).max(axis=-1, keepdims=True)
    centre = 0.5 * (lo + hi)
    box = np.concatenate([centre - half, centre + half], axis=-1)
    return tuple(float(v) for v in box) if box.ndim == 1 else box


# ----------------------------------------------------------------------------------------------
# Crash-safe writes: a file is complete or absent, never half written (runs resume from what is on disk)
# ----------------------------------------------------------------------------------------------


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary sibling of ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` through a temporary sibling, renamed over ``path`` when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npy")
    os.close(fd)
    np.save(tmp, array)
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary sibling, renamed over ``path`` when complete (checkpoints)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a temporary sibling folder, then swap it in: a folder of frames is complete or absent."""
    import shutil

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (any shape) as uint8, rounded; values outside [0, 1] are clipped."""
    return (np.clip(np.asarray(images), 0.0, 1.0) * 255).round().astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------------


def json_default(obj: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays, tuples and paths as plain JSON."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any, indent: int = 1) -> None:
    """``obj`` as JSON (numpy values converted, :func:`json_default`), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, default=json_default))

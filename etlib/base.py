"""What every layer of etlib shares: the course's frame and sample rates, the 68-point landmark index sets,
the valence/arousal range, crash-safe file writes, JSON conversion, and how a command-line tool reports an
error. It imports nothing from etlib (the bottom of the dependency graph).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
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


#: The mean 68-point "in the wild" 3-D face of OpenFace (Baltrusaitis et al.), in mm, iBUG order: the template of
#: head pose (etlib.preprocess.template) and of the landmark alignment of the action units (etlib.metrics.landmark_aus).
#: (x, y, z) in mm, x right, y down, z towards the viewer (the published convention).
MEAN_FACE_68_MM: tuple[tuple[float, float, float], ...] = (
    (-73.393523, -29.801432, -47.667532), (-72.775014, -10.949766, -45.909403),
    (-70.533638, 7.929818, -44.84258), (-66.850058, 26.07428, -43.141114),
    (-59.790187, 42.56439, -38.635298), (-48.368973, 56.48108, -30.750622),
    (-34.121101, 67.246992, -18.456453), (-17.875411, 75.056892, -3.609035),
    (0.098749, 77.061286, 0.881698), (17.477031, 74.758448, -5.181201),
    (32.648966, 66.929021, -19.176563), (46.372358, 56.311389, -30.77057),
    (57.34348, 42.419126, -37.628629), (64.388482, 25.45588, -40.886309),
    (68.212038, 6.990805, -42.281449), (70.486405, -11.666193, -44.142567),
    (71.375822, -30.365191, -47.140426), (-61.119406, -49.361602, -14.254422),
    (-51.287588, -58.769795, -7.268147), (-37.8048, -61.996155, -0.442051),
    (-24.022754, -61.033399, 6.606501), (-11.635713, -56.686759, 11.967398),
    (12.056636, -57.391033, 12.051204), (25.106256, -61.902186, 7.315098),
    (38.338588, -62.777713, 1.022953), (51.191007, -59.302347, -5.349435),
    (60.053851, -50.190255, -11.615746), (0.65394, -42.19379, 13.380835),
    (0.804809, -30.993721, 21.150853), (0.992204, -19.944596, 29.284036),
    (1.226783, -8.414541, 36.94806), (-14.772472, 2.598255, 20.132003),
    (-7.180239, 4.751589, 23.536684), (0.55592, 6.5629, 25.944448),
    (8.272499, 4.661005, 23.695741), (15.214351, 2.643046, 20.858157),
    (-46.04729, -37.471411, -7.037989), (-37.674688, -42.73051, -3.021217),
    (-27.883856, -42.711517, -1.353629), (-19.648268, -36.754742, 0.111088),
    (-28.272965, -35.134493, 0.147273), (-38.082418, -34.919043, -1.476612),
    (19.265868, -37.032306, 0.665746), (27.894191, -43.342445, -0.24766),
    (37.437529, -43.110822, -1.696435), (45.170805, -38.086515, -4.894163),
    (38.196454, -35.532024, -0.282961), (28.764989, -35.484289, 1.172675),
    (-28.916267, 28.612716, 2.24031), (-17.533194, 22.172187, 15.934335),
    (-6.68459, 19.029051, 22.611355), (0.381001, 20.721118, 23.748437),
    (8.375443, 19.03546, 22.721995), (18.876618, 22.394109, 15.610679),
    (28.794412, 28.079924, 3.217393), (19.057574, 36.298248, 14.987997),
    (8.956375, 39.634575, 22.554245), (0.381549, 40.395647, 23.591626),
    (-7.428895, 39.836405, 22.406106), (-18.160634, 36.677899, 15.121907),
    (-24.37749, 28.677771, 4.785684), (-6.897633, 25.475976, 20.893742),
    (0.340663, 26.014269, 22.220479), (8.444722, 25.326198, 21.02552),
    (24.474473, 28.323008, 5.712776), (8.449166, 30.596216, 20.671489),
    (0.205322, 31.408738, 21.90367), (-7.198266, 30.844876, 20.328022),
)  # fmt: skip
#: Points that move little with speech, blinks and expression: the rigid set used for head pose and landmark
#: alignment (the nose, the eye corners, the jaw by the ears; not the eyelids, brows, lips or chin).
RIGID_POINTS: tuple[int, ...] = (27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45, 0, 16)


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
# Valence and arousal (Sec. 3.2): the emotion condition e = (v, a) lives in the square [-1, 1]^2
# ----------------------------------------------------------------------------------------------

#: The range of valence and of arousal, as the emotion judges (EmoNet, the FER circumplex) report them.
VA_RANGE: tuple[float, float] = (-1.0, 1.0)


def _va_message(what: str, value: Any) -> str:
    lo, hi = VA_RANGE
    return f"{what} must be a finite number in [{lo:g}, {hi:g}] (the valence/arousal range of Sec. 3.2), got {value!r}"


def check_va(valence: Any, arousal: Any) -> tuple[float, float]:
    """``(valence, arousal)`` as floats, or a ValueError naming the allowed range [-1, 1] (Sec. 3.2).

    Every place a person or a file gives valence/arousal (the render command, keyframes, widgets, the API)
    goes through here: a value outside the range, NaN or infinity would drive the emotion branch where it
    was never trained and render without complaint.
    """
    out = []
    for what, value in (("valence", valence), ("arousal", arousal)):
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(_va_message(what, value)) from None
        if not (math.isfinite(x) and VA_RANGE[0] <= x <= VA_RANGE[1]):
            raise ValueError(_va_message(what, value))
        out.append(x)
    return out[0], out[1]


def check_va_array(va: Any) -> np.ndarray:
    """A ``(..., 2)`` array of (valence, arousal) rows as float32, checked like :func:`check_va` (the first
    offending row is named)."""
    arr = np.asarray(va, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != 2:
        raise ValueError(f"valence/arousal must be pairs (..., 2), got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < VA_RANGE[0]) | (arr > VA_RANGE[1])
    if bad.any():
        index = np.argwhere(bad)[0]
        row = tuple(int(i) for i in index[:-1])
        what = ("valence", "arousal")[int(index[-1])]
        where = f" (row {row[0] if len(row) == 1 else row})" if row else ""
        raise ValueError(_va_message(what + where, float(arr[tuple(index)])))
    return arr.astype(np.float32)


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
    """``torch.save`` through a temporary sibling, flushed to disk and renamed over ``path`` when complete
    (checkpoints): a crash, even a power cut, leaves the previous file or the new one, never half of one."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
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


class LazyFrames(Sequence):
    """A clip's frames read one at a time: ``frames[i]`` calls ``read(i)``, ``frames[a:b]`` stacks only that slice.

    Whole-clip passes (SyncNet's crops, the evaluation's metrics) take frames in small batches, so a 5-minute
    512 px clip (7,500 frames, 5.9 GB as uint8) never sits in memory at once; only the batch in hand does.
    """

    def __init__(self, read: Callable[[int], np.ndarray], n: int) -> None:
        self._read, self._n = read, int(n)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return np.stack([self._read(i) for i in range(*index.indices(self._n))])
        i = int(index) + (self._n if int(index) < 0 else 0)
        if not 0 <= i < self._n:
            raise IndexError(f"frame {index} is outside the {self._n} frames")
        return self._read(i)


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


# ----------------------------------------------------------------------------------------------
# Command-line tools: a refusal is one line on stderr and exit status 2, a traceback only on request
# ----------------------------------------------------------------------------------------------

#: Set to 1 (or pass ``--debug``) to see the full traceback of an error a command-line tool reports.
DEBUG_ENV = "ETLIB_DEBUG"
#: The exit status of a refused input (argparse uses the same for a bad flag).
USAGE_ERROR = 2


class EtlibError(Exception):
    """A problem with what the user gave (a file, a run, a flag) whose message says what is wrong and how to
    fix it. Command-line tools print it as one line; errors of other types may come from etlib itself."""


#: What a command-line tool reports as one line: etlib's own errors, and the ValueError / OSError family
#: (FileNotFoundError, IsADirectoryError, PermissionError) that every reader raises for a bad input.
USER_ERRORS: tuple[type[BaseException], ...] = (EtlibError, ValueError, OSError)


def add_debug_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--debug`` to a tool's parser (so ``--help`` lists it); :func:`run_main` acts on it."""
    parser.add_argument(
        "--debug", action="store_true", help=f"show the full traceback of an error (or set {DEBUG_ENV}=1)"
    )
    return parser


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """True when ``--debug`` is among the arguments or ``$ETLIB_DEBUG`` is set to anything but "", "0"."""
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def one_line(err: BaseException) -> str:
    """An error's message on one line: its lines joined with "; " (a KeyError's quotes dropped)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    parts = [" ".join(line.split()) for line in text.splitlines()]
    text = "; ".join(p for p in parts if p)
    return text or type(err).__name__


def run_main(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command-line tool's ``main(argv)`` and return its exit status.

    An expected refusal (:data:`USER_ERRORS`) becomes ``error: <message>`` on one line of stderr and status 2;
    Ctrl-C becomes ``interrupted`` and status 130. With ``--debug`` among the arguments or ``ETLIB_DEBUG=1``
    the full traceback is printed before that line (and Ctrl-C propagates). ``--debug`` is removed before
    ``main`` sees the arguments. Any other exception is a bug in etlib and keeps its traceback.
    Usage: ``sys.exit(run_main(main))``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(args)
    args = [a for a in args if a != "--debug"]
    try:
        status = main(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`... | head`): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except USER_ERRORS as err:
        if debug:
            traceback.print_exc()
        print(f"error: {one_line(err)}", file=sys.stderr)
        return USAGE_ERROR
    return int(status or 0)

"""Action units u (Sec. 3.2, [6, 19]): OpenFace's intensities when available, else from landmark geometry.

The landmark geometry lives one layer down, in :mod:`etlib.metrics.landmark_aus` (the emotion judge reads it too);
its names are re-exported here, so ``from etlib.preprocess.action_units import au_from_landmarks`` keeps working.

The face branch takes upper-face AUs (TalkingGaussian uses AU45, eye blink, and brow AUs); the evaluation
compares upper- and lower-face AUs (AUE-U / AUE-L, Table 1). OpenFace's ``FeatureExtraction`` writes them
as ``AU01_r ... AU45_r`` (0-5); without it, :func:`au_from_landmarks` measures the same muscle actions on the 68
landmarks (the table of cues is in :mod:`etlib.metrics.landmark_aus`).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from etlib.base import EtlibError
from etlib.metrics.landmark_aus import (  # noqa: F401  (re-exported: the geometry lives a layer down)
    AU_NAMES,
    LOWER_FACE_AUS,
    UPPER_FACE_AUS,
    align_to_template,
    au_from_landmarks,
    geometry_features,
    neutral_reference,
)


class OpenFaceError(EtlibError, RuntimeError):
    """OpenFace's FeatureExtraction failed or wrote nothing; the message carries its last words."""


def write_au_csv(path: Path, aus: np.ndarray, names=AU_NAMES, fps: float = 25.0) -> None:
    """OpenFace-style CSV: frame, timestamp, AUxx_r columns."""
    from etlib.base import atomic_write_text

    lines = [",".join(["frame", "timestamp"] + [f"{n}_r" for n in names])]
    for i, row in enumerate(aus):
        lines.append(",".join([str(i + 1), f"{i / fps:.3f}"] + [f"{v:.3f}" for v in row]))
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def read_openface_csv(path: Path, names=AU_NAMES) -> np.ndarray:
    """AU intensities from an OpenFace ``FeatureExtraction`` CSV (columns ``AU01_r`` ..., spaces allowed).

    AUs that OpenFace does not estimate are absent from its CSV; they come back as NaN.
    """
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path} is empty: expected OpenFace's CSV with AU01_r ... columns")
    header = [h.strip() for h in rows[0]]
    present = {h: k for k, h in enumerate(header)}
    if not any(f"{n}_r" in present for n in names):
        raise ValueError(f"{path} has no AUxx_r columns: is it OpenFace FeatureExtraction output?")
    out = np.full((len(rows) - 1, len(names)), np.nan, np.float32)
    for j, n in enumerate(names):
        k = present.get(f"{n}_r")
        if k is not None:
            out[:, j] = [float(r[k]) for r in rows[1:]]
    return out


def run_openface(video: Path, exe: str | None = None) -> np.ndarray:
    """Run OpenFace's ``FeatureExtraction`` on a video file (``-f``) or a folder of frames (``-fdir``, in
    file-name order, as the subject's ``frames/``) and read its AU intensities."""
    exe = exe or shutil.which("FeatureExtraction")
    if exe is None:
        raise FileNotFoundError("OpenFace's FeatureExtraction is not on PATH; install OpenFace or give --au-csv")
    video = Path(video)
    if not video.exists():
        raise FileNotFoundError(f"no video or folder of frames at {video} for OpenFace")
    source = ["-fdir" if video.is_dir() else "-f", str(video)]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([exe, *source, "-out_dir", tmp, "-aus"], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise OpenFaceError(
                f"OpenFace FeatureExtraction failed on {video} (exit {proc.returncode}): {tail}; "
                "fix OpenFace or give its CSV with --au-csv"
            )
        csvs = list(Path(tmp).glob("*.csv"))
        if not csvs:
            raise OpenFaceError(f"OpenFace wrote no CSV for {video}; give its CSV with --au-csv")
        return read_openface_csv(csvs[0])

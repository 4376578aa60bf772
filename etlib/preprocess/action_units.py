"""Action units u (Sec. 3.2, [6, 19]): OpenFace's intensities when available, else from landmark geometry.

The face branch takes upper-face AUs (TalkingGaussian uses AU45, eye blink, and brow AUs); the evaluation
compares upper- and lower-face AUs (AUE-U / AUE-L, Table 1). OpenFace's ``FeatureExtraction`` writes them
as ``AU01_r ... AU45_r`` (0-5). Without it, :func:`au_from_landmarks` measures the same muscle actions
on the 68 landmarks after aligning each frame to the mean face (removing head pose and scale):

==== ======================== =============================================================
AU   name                     geometric cue (change from the subject's neutral)
==== ======================== =============================================================
AU01 inner brow raiser        inner brows (21, 22) rise above the inner eye corners
AU02 outer brow raiser        outer brows (17, 26) rise above the outer eye corners
AU04 brow lowerer             brows drop towards the eyes and move together
AU05 upper lid raiser         eyes open wider (eye aspect ratio up)
AU06 cheek raiser             lower lids rise towards the eyes (lid-to-nose-wing gap shrinks)
AU07 lid tightener            eyes narrow without closing
AU09 nose wrinkler            nose wings (31, 35) rise towards the eyes
AU12 lip corner puller        mouth corners rise relative to the lip centre, mouth widens
AU15 lip corner depressor     mouth corners drop relative to the lip centre
AU20 lip stretcher            mouth widens with the corners level
AU23 lip tightener            red lips thin
AU25 lips part                inner lips separate
AU26 jaw drop                 chin moves away from the nose
AU45 blink                    eyes close (eye aspect ratio falls)
==== ======================== =============================================================

Intensities are on OpenFace's 0-5 scale: a gain maps the change (in inter-ocular distances, or relative
change for ratios) to it. The neutral is the subject's median frame unless given; a talking-head video is
mostly neutral, so the median is a fair reference.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from etlib.base import EtlibError
from etlib.preprocess.template import RIGID, mean_face_68


class OpenFaceError(EtlibError, RuntimeError):
    """OpenFace's FeatureExtraction failed or wrote nothing; the message carries its last words."""


AU_NAMES = (
    "AU01",
    "AU02",
    "AU04",
    "AU05",
    "AU06",
    "AU07",
    "AU09",
    "AU12",
    "AU15",
    "AU20",
    "AU23",
    "AU25",
    "AU26",
    "AU45",
)
UPPER_FACE_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU45")
LOWER_FACE_AUS = ("AU09", "AU12", "AU15", "AU20", "AU23", "AU25", "AU26")


def align_to_template(landmarks: np.ndarray) -> np.ndarray:
    """Similarity-align (T, 68, 2) landmarks to the frontal mean face, in units of inter-ocular distance."""
    ref = mean_face_68()[:, :2]
    ref = (ref - ref[RIGID].mean(0)) / np.linalg.norm(ref[36] - ref[45])
    out = np.empty_like(landmarks, dtype=np.float64)
    for t, lm in enumerate(landmarks):
        src = lm[RIGID] - lm[RIGID].mean(0)
        dst = ref[RIGID]
        # Umeyama: rotation + uniform scale mapping src onto dst.
        u, s, vt = np.linalg.svd(dst.T @ src)
        d = np.sign(np.linalg.det(u @ vt))
        rot = u @ np.diag([1, d]) @ vt
        scale = (s * [1, d]).sum() / (src**2).sum()
        out[t] = scale * (lm - lm[RIGID].mean(0)) @ rot.T
    return out


def _eye_aspect_ratio(lm: np.ndarray) -> np.ndarray:
    def ear(e):
        v = np.linalg.norm(lm[:, e[1]] - lm[:, e[5]], axis=-1) + np.linalg.norm(lm[:, e[2]] - lm[:, e[4]], axis=-1)
        return v / (2 * np.linalg.norm(lm[:, e[0]] - lm[:, e[3]], axis=-1) + 1e-9)

    return (ear(list(range(36, 42))) + ear(list(range(42, 48)))) / 2


def geometry_features(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame geometric measurements of aligned landmarks (y grows downwards)."""
    a = align_to_template(np.asarray(landmarks, dtype=np.float64))
    y, x = a[..., 1], a[..., 0]
    lip_centre = (y[:, 62] + y[:, 66]) / 2
    return {
        "inner_brow": (y[:, 39] + y[:, 42]) / 2 - (y[:, 21] + y[:, 22]) / 2,
        "outer_brow": (y[:, 36] + y[:, 45]) / 2 - (y[:, 17] + y[:, 26]) / 2,
        "brow_gap": x[:, 22] - x[:, 21],
        "eye_open": _eye_aspect_ratio(a),
        "lid_to_nose": (y[:, 31] + y[:, 35]) / 2 - (y[:, 40] + y[:, 41] + y[:, 46] + y[:, 47]) / 4,
        "nose_wing": (y[:, 31] + y[:, 35]) / 2 - (y[:, 39] + y[:, 42]) / 2,
        "mouth_width": np.linalg.norm(a[:, 54] - a[:, 48], axis=-1),
        "corner_lift": lip_centre - (y[:, 48] + y[:, 54]) / 2,
        "lip_thickness": np.abs(y[:, 62] - y[:, 51]) + np.abs(y[:, 57] - y[:, 66]),
        "lip_gap": np.abs(y[:, 66] - y[:, 62]),
        "jaw_open": y[:, 8] - y[:, 33],
    }


def au_from_landmarks(landmarks: np.ndarray, neutral: dict[str, float] | None = None) -> np.ndarray:
    """(T, 14) AU intensities (0-5, :data:`AU_NAMES` order) from (T, 68, 2) landmarks.

    Args:
        neutral: reference value of each geometric feature; default: the clip's median.
    """
    f = geometry_features(landmarks)
    n = neutral or {k: float(np.median(v)) for k, v in f.items()}
    d = {k: f[k] - n[k] for k in f}
    eye_rel = f["eye_open"] / max(n["eye_open"], 1e-6) - 1.0  # relative change of the eye opening
    corner = d["corner_lift"]
    widen = d["mouth_width"]
    columns = {
        "AU01": 40 * d["inner_brow"],
        "AU02": 40 * d["outer_brow"],
        "AU04": 40 * (-d["inner_brow"]) + 30 * (-d["brow_gap"]),
        "AU05": 12 * eye_rel,
        "AU06": 40 * (-d["lid_to_nose"]),
        "AU07": 10 * np.clip(-eye_rel, 0, 0.5),  # narrowing, saturating before a full closure
        "AU09": 40 * (-d["nose_wing"]),
        "AU12": 30 * corner + 15 * widen,
        "AU15": 30 * (-corner),
        "AU20": 25 * widen - 20 * np.abs(corner),
        "AU23": 30 * (-d["lip_thickness"]),
        "AU25": 25 * (f["lip_gap"] - 0.02),  # lips apart by more than a sliver
        "AU26": 12 * d["jaw_open"],
        "AU45": 6.5 * np.clip(-eye_rel, 0, None),  # a full blink (ratio down ~80%) reads about 5
    }
    return np.clip(np.stack([columns[name] for name in AU_NAMES], axis=1), 0, 5).astype(np.float32)


def neutral_reference(landmarks: np.ndarray) -> dict[str, float]:
    """The median geometric features of a clip: pass it to measure other images against this subject."""
    return {k: float(np.median(v)) for k, v in geometry_features(landmarks).items()}


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

"""Action units from 68-point landmark geometry, measured against a neutral reference of the same person.

Pure geometry (numpy only), so that both the preprocessing (the AUs u the face branch takes, Sec. 3.2, [6, 19]) and
the emotion judges (:class:`etlib.emoface.judge.FacsFERJudge`) can use it; :mod:`etlib.preprocess.action_units`
re-exports it next to OpenFace's reader.

The face branch takes upper-face AUs (TalkingGaussian uses AU45, eye blink, and brow AUs); the evaluation
compares upper- and lower-face AUs (AUE-U / AUE-L, Table 1). OpenFace's ``FeatureExtraction`` writes them
as ``AU01_r ... AU45_r`` (0-5). :func:`au_from_landmarks` measures the same muscle actions
on the 68 landmarks after aligning each frame to the mean face (removing head pose and scale):

==== ======================== =============================================================
AU   name                     geometric cue (change from the subject's neutral)
==== ======================== =============================================================
AU01 inner brow raiser        inner brows (21, 22) rise above the inner eye corners
AU02 outer brow raiser        outer brows (17, 26) rise above the outer eye corners
AU04 brow lowerer             brows drop towards the eyes and move together
AU05 upper lid raiser         eyes open wider (eye aspect ratio up)
AU06 cheek raiser             lower lids rise towards the eyes (lid-to-nose-wing gap shrinks)
AU07 lid tightener            lower lids rise towards the line of the eye corners (FACS: AU7 acts on the lower
                              lid; a drooping upper lid is AU41-43's and a blink AU45's, not AU7's)
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

import numpy as np

from etlib.base import MEAN_FACE_68_MM, RIGID_POINTS

#: The rigid points the alignment matches (nose, eye corners, jaw by the ears: :data:`etlib.base.RIGID_POINTS`).
RIGID = np.array(RIGID_POINTS)
#: The mean face's (x, y) (x to the image right, y down): the frontal template every frame is aligned to.
_MEAN_FACE_2D = np.asarray(MEAN_FACE_68_MM, np.float64)[:, :2]


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
    ref = _MEAN_FACE_2D
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
        "lower_lid": (y[:, 40] + y[:, 41] + y[:, 46] + y[:, 47]) / 4 - (y[:, 36] + y[:, 39] + y[:, 42] + y[:, 45]) / 4,
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
    lower_lid_rel = f["lower_lid"] / max(n["lower_lid"], 1e-6) - 1.0  # the lower lid's depth below the corners
    corner = d["corner_lift"]
    widen = d["mouth_width"]
    columns = {
        "AU01": 40 * d["inner_brow"],
        "AU02": 40 * d["outer_brow"],
        "AU04": 40 * (-d["inner_brow"]) + 30 * (-d["brow_gap"]),
        "AU05": 12 * eye_rel,
        "AU06": 40 * (-d["lid_to_nose"]),
        # The lower lid only: measured on the whole eye opening, AU7 also read drooping lids (AU43) and blinks, and
        # the judge took a relaxed smile's lowered lids for a tense, angry face.
        "AU07": 5 * np.clip(-lower_lid_rel, 0, 1),
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

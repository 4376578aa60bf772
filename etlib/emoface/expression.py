"""Valence/arousal -> expression -> facial action units (the first half of the offline g_LEF).

The paper's generator g_LEF (Sec. 3.3.1, Eqs. 6-8) turns a valence/arousal pair ``e`` into an emotional
face with EmoStyle. Its offline counterpart (:mod:`etlib.emoface.offline`) goes through explicit facial
action units (FACS) instead, and this module is that mapping:

1. **Circumplex.** ``e = (v, a)`` is read in polar form: angle ``theta = atan2(a, v)`` picks the
   expression, radius ``r = |e|`` its intensity ``min(r / 0.8, 1)``: full at the paper's outer ring of S6
   points (:data:`FULL_INTENSITY_RADIUS`), 0 at the origin, the neutral face.
2. **Prototype blend.** Seven prototype expressions sit at fixed angles (:data:`PROTOTYPES`); ``theta``
   falls between two neighbours and their AU profiles are blended linearly in angle.
3. **Action units.** ``AU = intensity * sum_k w_k * prototype_k``, intensities on OpenFace's 0-5 scale (FACS
   intensity letters A..E = 1..5), so the output can stand in for OpenFace AUs in the AU-baseline
   protocol of Sec. S6 (AUs of emotional images drive the AU-conditioned baselines).

Where the numbers come from
---------------------------
*Angles.* The paper's own labels of its S6 evaluation points (``etlib.config.S6_POINTS``) put happy at
22.5, surprise at 67.5, angry at 112.5 and disgust at 157.5 degrees; it labels both 202.5 and 247.5
degrees "Sad" (we take the bisector 225) and both 292.5 and 337.5 "Contempt" (bisector 315), and its inner
points at 45 and 135 degrees "Happy" and "Angry". Fear, which the paper does not label, sits at 90 degrees:
Russell (1980, "A circumplex model of affect") places "alarmed" and "afraid" in the high-arousal,
slightly unpleasant arc between arousal (90) and distress (135), and 90 keeps every paper label intact
(:func:`dominant_expression` returns the paper's label at all 12 S6 points, ties going to the lower
angle). The offline judge's class table (:data:`etlib.emoface.judge.FER_CIRCUMPLEX`) puts fear at 135
instead; the two tables serve different purposes (reading vs. producing an expression).

*AU profiles.* The EMFACS emotion prototypes of Friesen & Ekman (1983, "EMFACS-7: Emotional Facial
Action Coding System", unpublished manual, UCSF), as tabulated in Ekman, Friesen & Hager (2002, FACS
Investigator's Guide, Table 10-1) and Matsumoto & Ekman (2008, Scholarpedia "Facial expression analysis"):

=========  ==============================  =========================================
expression EMFACS prototype                 used here (0-5 intensity)
=========  ==============================  =========================================
happy      6 + 12                           AU6 4, AU12 5
surprise   1 + 2 + 5B + 26                  AU1 4, AU2 4, AU5 1 (B), AU26 3
angry      4 + 5 + 7 + 23                   AU4 4, AU5 1, AU7 3, AU23 4
fear       1 + 2 + 4 + 5 + 7 + 20 + 26      AU1 3, AU2 3, AU4 2, AU5 3, AU7 2, AU20 3, AU26 2
disgust    9 + 15 + 16                      AU9 4, AU15 3, AU4 2 (AU16 not modelled; AU9 D, see below)
sad        1 + 4 + 15 (variants +11, +64)   AU1 5, AU4 2, AU15 5, AU43 1.5 (lowered lids, see below)
contempt   R12A + R14A (unilateral)         AU12 3, AU6 1, AU43 1.5 (see below)
=========  ==============================  =========================================

Two additions, ours and not EMFACS': (i) the low-arousal half of the circle needs a visible arousal cue in the eyes,
so "sad" and "contempt" droop the upper lids a little with AU43 (eyes closure) at low intensity, standing in for
EMFACS sadness' "eyes down" (AU64) and for Russell's relaxed/sleepy quadrant (315 / 270 degrees); (ii) the
positive-valence, low-arousal anchor ("contempt" in the paper's labels, where Russell places "relaxed/content")
keeps a faint AU6 so its valence stays positive. The unilateral contempt smile (R12A + R14A) is a symmetric AU12 C
here: at B, the S6 point between contempt and sad (292.5 degrees, valence +0.31) blended a quarter of sadness' AU15
E against three quarters of the smile and showed no smile at all (the FER + AU judge read it negative). Disgust's
nose wrinkle is at D, not E: at E it took the face descriptor of one real clip's frame 0.46 from its source's (the
issue's bound for "still the person" is 0.45); at D 0.42, still read as disgust. The defining units of each
prototype are at or near full intensity (E = 5), as a posed expression at the outer ring should be; the offline
generator turns the lip units into lip-corner motion that keeps the mouth's opening (the lips belong to the audio).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: The action units this module produces (OpenFace names), and what each one does (FACS names).
AU_DESCRIPTIONS: dict[str, str] = {
    "AU01": "inner brow raiser",
    "AU02": "outer brow raiser",
    "AU04": "brow lowerer",
    "AU05": "upper lid raiser",
    "AU06": "cheek raiser",
    "AU07": "lid tightener",
    "AU09": "nose wrinkler",
    "AU12": "lip corner puller",
    "AU15": "lip corner depressor",
    "AU20": "lip stretcher",
    "AU23": "lip tightener",
    "AU26": "jaw drop",
    "AU43": "eyes closure",
}
AU_NAMES: tuple[str, ...] = tuple(AU_DESCRIPTIONS)
#: FACS' upper-face units (brows, lids, cheeks) and lower-face units (nose, lips, jaw): the AUE-U / AUE-L split.
UPPER_FACE_AUS: tuple[str, ...] = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU43")
LOWER_FACE_AUS: tuple[str, ...] = ("AU09", "AU12", "AU15", "AU20", "AU23", "AU26")
#: The highest FACS intensity (E) on OpenFace's scale.
AU_MAX = 5.0
#: Radius of the valence/arousal circle at which a prototype reaches its full EMFACS intensity: the paper's outer
#: ring of S6 points (|e| = 0.8). Closer to the origin the intensity falls linearly to 0 (neutral).
FULL_INTENSITY_RADIUS = 0.8


@dataclass(frozen=True)
class Prototype:
    """A prototype expression: its angle on the valence/arousal circle and its AU profile (0-5)."""

    name: str
    angle_deg: float
    aus: Mapping[str, float] = field(default_factory=dict)
    facs: str = ""

    def vector(self) -> np.ndarray:
        return au_vector(self.aus)


#: The prototypes in increasing angle (degrees counter-clockwise from +valence); see the module docstring.
PROTOTYPES: tuple[Prototype, ...] = (
    Prototype("happy", 22.5, {"AU06": 4, "AU12": 5}, "6+12"),
    Prototype("surprise", 67.5, {"AU01": 4, "AU02": 4, "AU05": 1, "AU26": 3}, "1+2+5B+26"),
    Prototype(
        "fear",
        90.0,
        {"AU01": 3, "AU02": 3, "AU04": 2, "AU05": 3, "AU07": 2, "AU20": 3, "AU26": 2},
        "1+2+4+5+7+20+26",
    ),
    Prototype("angry", 112.5, {"AU04": 4, "AU05": 1, "AU07": 3, "AU23": 4}, "4+5+7+23"),
    Prototype("disgust", 157.5, {"AU09": 4, "AU15": 3, "AU04": 2}, "9+15+16"),
    Prototype("sad", 225.0, {"AU01": 5, "AU04": 2, "AU15": 5, "AU43": 1.5}, "1+4+15"),
    Prototype("contempt", 315.0, {"AU06": 1, "AU12": 3, "AU43": 1.5}, "R12A+R14A"),
)


def au_vector(aus: Mapping[str, float], names: Sequence[str] = AU_NAMES) -> np.ndarray:
    """AU intensities as a float vector in ``names`` order (absent units are 0)."""
    unknown = set(aus) - set(AU_DESCRIPTIONS)
    if unknown:
        raise ValueError(f"unknown action units {sorted(unknown)}; known: {', '.join(AU_NAMES)}")
    return np.array([float(aus.get(name, 0.0)) for name in names], dtype=np.float64)


def _check_va(valence: float, arousal: float) -> tuple[float, float]:
    v, a = float(valence), float(arousal)
    if not (math.isfinite(v) and math.isfinite(a)):
        raise ValueError(f"valence and arousal must be finite numbers, got ({valence}, {arousal})")
    return v, a


def circumplex_polar(valence: float, arousal: float) -> tuple[float, float]:
    """``(theta, r)``: angle in degrees in [0, 360) counter-clockwise from +valence, and radius clipped to 1."""
    v, a = _check_va(valence, arousal)
    theta = math.degrees(math.atan2(a, v)) % 360.0
    return theta, min(math.hypot(v, a), 1.0)


def expression_weights(valence: float, arousal: float) -> dict[str, float]:
    """Blend weights of the prototypes for ``e = (valence, arousal)``, already scaled by intensity ``r``.

    ``theta`` lies between two neighbouring prototypes (the circle wraps from contempt at 315 to happy at
    22.5 degrees); their weights are ``r * (1 - t)`` and ``r * t`` with ``t`` the fraction of the way.
    All weights are 0 at the origin (neutral).
    """
    theta, radius = circumplex_polar(valence, arousal)
    radius = min(radius / FULL_INTENSITY_RADIUS, 1.0)
    weights = {p.name: 0.0 for p in PROTOTYPES}
    if radius == 0.0:
        return weights
    angles = [p.angle_deg for p in PROTOTYPES]
    for i, lo in enumerate(PROTOTYPES):
        hi = PROTOTYPES[(i + 1) % len(PROTOTYPES)]
        span = (hi.angle_deg - lo.angle_deg) % 360.0
        offset = (theta - lo.angle_deg) % 360.0
        if offset <= span:
            t = offset / span
            weights[lo.name] += radius * (1.0 - t)
            weights[hi.name] += radius * t
            return weights
    raise AssertionError(f"angle {theta} not bracketed by {angles}")  # unreachable: the spans cover 360 degrees


def va_to_aus(valence: float, arousal: float) -> dict[str, float]:
    """Action-unit intensities (0-5) of the expression at ``(valence, arousal)``: the prototype blend of
    :func:`expression_weights` applied to the EMFACS profiles of :data:`PROTOTYPES`."""
    weights = expression_weights(valence, arousal)
    total = np.zeros(len(AU_NAMES))
    for proto in PROTOTYPES:
        total += weights[proto.name] * proto.vector()
    return {name: float(np.clip(value, 0.0, AU_MAX)) for name, value in zip(AU_NAMES, total, strict=True)}


def dominant_expression(valence: float, arousal: float) -> str:
    """The prototype with the largest blend weight (``"neutral"`` at the origin)."""
    weights = expression_weights(valence, arousal)
    name, weight = max(weights.items(), key=lambda kv: kv[1])  # ties: the first (lower-angle) prototype
    return name if weight > 0 else "neutral"

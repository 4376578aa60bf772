"""Valence/arousal -> facial expression for the sample subject's emotion clip (ground truth).

A circumplex model: eight prototype expressions sit at angles of the valence/arousal circle
(Russell's circumplex; happy near +valence, surprise near +arousal, sad near -valence/-arousal...);
a point (v, a) blends the prototypes by a von Mises kernel of its angle and scales them by its
radius. Each prototype is a vector of action-unit-like controls that the face rig turns into
landmark motion. Deliberately independent of ``etlib``: etlib's own V/A estimates and expression
generator are measured against this, so they must not share code with it.
"""

from __future__ import annotations

import numpy as np

#: Controls of the face rig driven by emotion (besides speech and blinks), each in [0, 1].
CONTROLS: tuple[str, ...] = (
    "smile",  # lip corners up and out, cheeks raise the lower lids (AU6 + AU12)
    "frown",  # lip corners down (AU15), chin up (AU17)
    "contempt",  # one lip corner up (unilateral AU14/AU12)
    "brow_raise",  # whole brows up (AU1 + AU2)
    "inner_brow_raise",  # inner brows up (AU1), the sad brow
    "brow_furrow",  # brows down and together (AU4)
    "eye_widen",  # upper lids up (AU5)
    "eye_squint",  # lower lids up (AU7)
    "lid_droop",  # upper lids down (AU43, weak)
    "upper_lip_raise",  # upper lip and nose up (AU9 + AU10)
    "jaw_drop",  # mouth opens a little on its own (AU26), surprise
)

# (angle in degrees on the V/A circle, {control: weight})
PROTOTYPES: tuple[tuple[float, dict[str, float]], ...] = (
    (25.0, {"smile": 1.0, "eye_squint": 0.4, "brow_raise": 0.15}),  # happy
    (70.0, {"brow_raise": 1.0, "eye_widen": 1.0, "jaw_drop": 0.35, "smile": 0.1}),  # surprise
    (115.0, {"brow_furrow": 1.0, "eye_widen": 0.35, "upper_lip_raise": 0.3, "frown": 0.35}),  # angry
    (155.0, {"upper_lip_raise": 1.0, "brow_furrow": 0.55, "eye_squint": 0.5, "frown": 0.45}),  # disgust
    (205.0, {"inner_brow_raise": 1.0, "frown": 1.0, "lid_droop": 0.3}),  # sad
    (250.0, {"inner_brow_raise": 0.5, "frown": 0.55, "lid_droop": 0.7}),  # tired, depressed
    (300.0, {"contempt": 1.0, "lid_droop": 0.25, "smile": 0.1}),  # contempt
    (335.0, {"smile": 0.45, "contempt": 0.35, "lid_droop": 0.2}),  # content, relaxed
)
KAPPA = 4.0  # concentration of the angular blend


def expression_controls(valence: float, arousal: float) -> np.ndarray:
    """Controls (len(CONTROLS),) in [0, 1] for one valence/arousal point (both in [-1, 1])."""
    radius = min(1.0, float(np.hypot(valence, arousal)))
    if radius < 1e-6:
        return np.zeros(len(CONTROLS))
    theta = np.arctan2(arousal, valence)
    weights = np.array([np.exp(KAPPA * (np.cos(theta - np.deg2rad(a)) - 1.0)) for a, _ in PROTOTYPES])
    weights /= weights.sum()
    out = np.zeros(len(CONTROLS))
    for w, (_, proto) in zip(weights, PROTOTYPES):
        for name, value in proto.items():
            out[CONTROLS.index(name)] += w * value
    # prototypes are reached at radius ~0.8 (the S6 ring); closer to the centre they fade out
    return np.clip(out * min(1.0, radius / 0.8), 0.0, 1.0)


def va_path(points: list[tuple[float, float]], n_frames: int, fps: float, lead_s: float = 0.4) -> np.ndarray:
    """Per-frame (valence, arousal): neutral for ``lead_s``, then each point in turn, reached by a
    smooth (cosine) transition over a third of its segment and held for the rest."""
    va = np.zeros((n_frames, 2))
    t = np.arange(n_frames) / fps
    seg = (n_frames / fps - lead_s) / len(points)
    if seg <= 0:
        raise ValueError("clip too short for the valence/arousal path")
    prev = np.zeros(2)
    for k, p in enumerate(points):
        start = lead_s + k * seg
        ramp = np.clip((t - start) / (seg / 3.0), 0.0, 1.0)
        ease = 0.5 - 0.5 * np.cos(np.pi * ramp)
        inside = t >= start
        va[inside] = prev + ease[inside, None] * (np.asarray(p) - prev)
        prev = np.asarray(p, dtype=float)
    return va


def hold_frames(n_frames: int, fps: float, n_points: int, lead_s: float = 0.4) -> np.ndarray:
    """Index of the point each frame holds (-1 while neutral or in transition)."""
    t = np.arange(n_frames) / fps
    seg = (n_frames / fps - lead_s) / n_points
    k = np.floor((t - lead_s) / seg).astype(int)
    in_hold = (t - lead_s - k * seg) >= seg / 3.0
    return np.where((t >= lead_s) & in_hold & (k < n_points), k, -1)

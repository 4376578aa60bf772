"""Teeth inside the mouth by colour: used by both mask backends (landmark polygons and BiSeNet, whose
CelebAMask-HQ classes have no teeth)."""

from __future__ import annotations

import numpy as np


def teeth_from_colour(image: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """Teeth inside the mouth: brighter than most of the mouth and nearly grey.

    The thresholds adapt to the frame: brightness above the mouth's 60th percentile and above 0.45, and
    saturation below 0.35 (teeth are off-white; tongue and lips are saturated red, the throat dark).
    """
    import cv2

    if not mouth.any():
        return np.zeros_like(mouth)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32) / [180.0, 255.0, 255.0]
    v, s = hsv[..., 2], hsv[..., 1]
    v_thr = max(0.45, float(np.percentile(v[mouth], 60)))
    teeth = mouth & (v >= v_thr) & (s <= 0.35)
    # Lone speckles are highlights on the tongue or lips, not teeth.
    teeth = cv2.morphologyEx(teeth.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)) > 0
    return teeth & mouth

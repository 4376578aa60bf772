"""Face, inside-mouth and teeth masks, and the per-frame background (paper Sec. S4.2, Fig. S5-S6).

The paper parses faces with BiSeNet [68] (a coarse face/mouth mask) and refines it with a teeth parser [37]:
teeth move to the inside-mouth region, so the face branch never has to draw them. The offline
counterpart keeps that logic with landmark polygons instead of a parser:

* face: the jaw line closed over the template's forehead, minus the inside of the mouth;
* mouth ("green" region of Fig. S5): the inner-lip polygon, teeth included;
* teeth: bright, unsaturated pixels inside the inner lips (colour segmentation);
* head = face + mouth: what the Gaussians model; bg/ holds each frame with the head inpainted, which
  is C_background of Eq. S9 for that frame; background.png is a static plate; "background" marks pixels
  that match the plate, "torso" the rest of the person (hair, neck, shoulders).

With BiSeNet's weights present, :func:`get_mask_backend` returns :class:`etlib.preprocess.bisenet.BiSeNetMasks`,
the paper's parser, which gives the same masks (plus hair, neck, torso and background from its classes).
"""

from __future__ import annotations

import numpy as np

from etlib.preprocess.teeth import teeth_from_colour
from etlib.preprocess.template import INNER_LIPS, JAW


def _poly_mask(points: np.ndarray, size: int) -> np.ndarray:
    import cv2

    mask = np.zeros((size, size), np.uint8)
    if len(points) >= 3:
        cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    return mask > 0


def face_polygon(landmarks: np.ndarray, forehead: np.ndarray) -> np.ndarray:
    """Jaw 0..16 then the forehead arc back from the left temple to the right one."""
    return np.concatenate([landmarks[JAW], forehead[::-1]], axis=0)


def frame_masks(image: np.ndarray, landmarks: np.ndarray, forehead: np.ndarray) -> dict[str, np.ndarray]:
    """Face, mouth, teeth and head masks of one frame (booleans, image size)."""
    size = image.shape[0]
    mouth = _poly_mask(landmarks[INNER_LIPS], size)
    face = _poly_mask(face_polygon(landmarks, forehead), size) & ~mouth
    teeth = teeth_from_colour(image, mouth)
    return {"face": face, "mouth": mouth, "teeth": teeth, "head": face | mouth}


class LandmarkMasks:
    """The offline mask backend: landmark polygons + colour teeth segmentation (:func:`frame_masks`)."""

    name = "landmark polygons + colour teeth segmentation"
    version = "etlib"

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, forehead: np.ndarray) -> dict[str, np.ndarray]:
        return frame_masks(image, landmarks, forehead)


def get_mask_backend(prefer: str = "auto", device: str = "cpu"):
    """BiSeNet face parsing when its weights are in the cache (``'auto'`` or ``'bisenet'``), else landmark
    polygons (``'landmarks'``). Both are called as ``backend(image, landmarks, forehead) -> masks``."""
    from etlib.backends import choose

    if prefer not in ("auto", "bisenet", "landmarks"):
        raise ValueError(f"prefer must be 'auto', 'bisenet' or 'landmarks', not {prefer!r}")
    if prefer == "bisenet" or (prefer == "auto" and choose("face_parsing").accelerated):
        from etlib.preprocess.bisenet import BiSeNetMasks

        return BiSeNetMasks(device=device)
    return LandmarkMasks()


def inpaint_head(image: np.ndarray, head: np.ndarray, dilate_frac: float = 0.03) -> np.ndarray:
    """C_background of Eq. S9 for one frame: the frame itself outside the head, the head filled from its
    surroundings (Telea inpainting).

    The fill starts ``dilate_frac`` of the frame beyond the head, so that the half-skin pixels along its edge do
    not bleed into the hole; but only the head is replaced. The Gaussians model the head alone (the face layer is
    trained transparent outside the face mask, Eqs. S13-S15), so every pixel outside it comes from this image in
    the composite of Eq. S10: a ring of inpainted colour there was a seam no layer is trained to cover (a dark line
    along the jaw, cheeks and hairline of real footage)."""
    import cv2

    k = max(3, int(round(dilate_frac * image.shape[0])) | 1)
    region = cv2.dilate(head.astype(np.uint8) * 255, np.ones((k, k), np.uint8))
    filled = cv2.inpaint(image, region, 3, cv2.INPAINT_TELEA)
    return np.where(head[..., None], filled, image)


def background_and_torso(
    image: np.ndarray, head: np.ndarray, plate: np.ndarray, threshold: int = 24
) -> tuple[np.ndarray, np.ndarray]:
    """Split the non-head pixels into background (matches the static plate) and torso (the rest)."""
    import cv2

    diff = np.abs(image.astype(np.int16) - plate.astype(np.int16)).max(axis=-1)
    background = (diff < threshold) & ~head
    background = cv2.morphologyEx(background.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    return background, ~background & ~head


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0

"""Seamless-cloning augmentation of the synthetic emotional faces (Sec. S4.1, Fig. S4).

g_LEF's output carries a domain gap (blurry hair, irregular skin). The paper keeps the real source
frame and transfers only the emotion-expressive regions of the generated image: rectangles around the
eyes and the mouth, found from the generated image's landmarks. A plain cut-and-paste (Fig. S4c) leaves
visible seams where the generated colours differ; Poisson seamless cloning (Perez et al. 2003 [49],
``cv2.seamlessClone`` with ``NORMAL_CLONE``; Fig. S4d) keeps the generated gradients inside each
rectangle and the source values on its border, so the seams vanish.

:func:`boundary_energy` measures the seam artefact so the two compositions can be compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from etlib.base import LANDMARK_GROUPS

if TYPE_CHECKING:
    from etlib.emoface.offline import GeneratedFace


class Rect(NamedTuple):
    """A half-open pixel rectangle: columns ``x0 <= x < x1``, rows ``y0 <= y < y1``."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass
class Composite:
    """A composed training image (Sec. S4.1).

    ``image``: ``[H, W, 3]`` uint8; ``mask``: ``[H, W]`` bool union of the regions taken from the
    generated image; ``region_masks``: the same per region; ``rects``: the regions; ``method``:
    ``"paste"`` or ``"seamless"``.
    """

    image: np.ndarray
    mask: np.ndarray
    region_masks: dict[str, np.ndarray]
    rects: dict[str, Rect]
    method: str


def _check_image(name: str, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{name} must be an [H, W, 3] uint8 image, got {got}; convert floats with (x * 255).round()")


def _check_pair(source: np.ndarray, generated: np.ndarray) -> None:
    _check_image("source", source)
    _check_image("generated", generated)
    if source.shape != generated.shape:
        raise ValueError(
            f"source {source.shape} and generated {generated.shape} differ in size; the generated image must be "
            "aligned to the source frame (resize/warp it first)"
        )


def region_rects(
    landmarks: np.ndarray,
    image_shape: tuple[int, ...],
    margin: float = 0.2,
    min_margin_px: int = 2,
    include_brows: bool = True,
) -> dict[str, Rect]:
    """Eye and mouth rectangles of a face from its 68 landmarks (those of the generated image).

    Each rectangle is the bounding box of its landmark group widened by ``margin`` times the box's width
    (left/right) and height (top/bottom), at least ``min_margin_px`` pixels, then clipped so that one
    pixel of image frame remains around it (Poisson cloning needs source values outside the region).
    The eye regions include the brows by default: brow movements (AU1, AU2, AU4) carry much of an
    expression.

    Returns:
        ``{"eye_right": Rect, "eye_left": Rect, "mouth": Rect}``.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"landmarks must be [68, 2] (x, y) in the iBUG 68-point order, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("landmarks contain NaN or inf")
    height, width = image_shape[:2]
    if height < 3 or width < 3:
        raise ValueError(f"image of {height}x{width} pixels is too small for region cloning")
    groups = {
        "eye_right": LANDMARK_GROUPS["eye_right"] + (LANDMARK_GROUPS["brow_right"] if include_brows else ()),
        "eye_left": LANDMARK_GROUPS["eye_left"] + (LANDMARK_GROUPS["brow_left"] if include_brows else ()),
        "mouth": LANDMARK_GROUPS["mouth"],
    }
    rects = {}
    for name, idx in groups.items():
        (lo_x, lo_y), (hi_x, hi_y) = pts[list(idx)].min(axis=0), pts[list(idx)].max(axis=0)
        mx = max(margin * (hi_x - lo_x), min_margin_px)
        my = max(margin * (hi_y - lo_y), min_margin_px)
        x0 = int(np.clip(np.floor(lo_x - mx), 1, width - 2))
        y0 = int(np.clip(np.floor(lo_y - my), 1, height - 2))
        x1 = int(np.clip(np.ceil(hi_x + mx) + 1, x0 + 1, width - 1))
        y1 = int(np.clip(np.ceil(hi_y + my) + 1, y0 + 1, height - 1))
        rects[name] = Rect(x0, y0, x1, y1)
    return rects


#: How far the face region reaches above the brows, in inter-ocular distances: the forehead, where AU1/AU2 lift
#: the skin (an eye-to-eye distance is ~60 % of the brow-to-hairline height, so 0.6 d covers its lower part).
FOREHEAD_REACH = 0.6


def face_region_mask(landmarks: np.ndarray, image_shape: tuple[int, ...], margin: float = 0.05) -> np.ndarray:
    """``[H, W]`` bool: the whole face as one region, the convex hull of the jaw (0-16), the brows (17-26) and the
    brows lifted by :data:`FOREHEAD_REACH` eye distances, grown by ``margin`` eye distances, with a 1-pixel image
    frame left free (Poisson cloning needs source values around a region).

    The region for a generator whose pixels *are* the source's (the offline, warp-based generator): it has no
    domain gap to hide, and its cheek, nasolabial and forehead motion lies outside the eye and mouth rectangles.
    """
    import cv2

    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2) or not np.isfinite(pts).all():
        raise ValueError(f"landmarks must be a finite [68, 2] (x, y) array in the iBUG 68-point order, got {pts.shape}")
    height, width = image_shape[:2]
    if height < 3 or width < 3:
        raise ValueError(f"image of {height}x{width} pixels is too small for region cloning")
    from etlib.emoface.offline import face_frame

    _, down, d = face_frame(pts)
    brows = pts[17:27]
    hull = cv2.convexHull(np.concatenate([pts[:17], brows, brows - FOREHEAD_REACH * d * down]).astype(np.float32))
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, np.round(hull[:, 0]).astype(np.int32), 1)
    grow = int(round(margin * d))
    if grow > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    mask[[0, -1], :] = 0
    mask[:, [0, -1]] = 0
    return mask.astype(bool)


def _bounding_rect(mask: np.ndarray) -> Rect:
    ys, xs = np.nonzero(mask)
    return Rect(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def seamless_clone_mask(source: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Poisson seamless cloning ([49]) of ``generated`` into ``source`` over any ``[H, W]`` bool region that leaves
    a 1-pixel image frame."""
    import cv2

    _check_pair(source, generated)
    if mask.shape != source.shape[:2] or not mask.any():
        raise ValueError(f"mask must be a non-empty [H, W] = {source.shape[:2]} bool array, got {mask.shape}")
    if mask[[0, -1], :].any() or mask[:, [0, -1]].any():
        raise ValueError("the cloned region must leave a 1-pixel image frame (Poisson cloning needs values around it)")
    rect = _bounding_rect(mask)
    # OpenCV places the mask's bounding box at center - size // 2, so this center keeps it in place.
    center = (rect.x0 + rect.width // 2, rect.y0 + rect.height // 2)
    cloned = cv2.seamlessClone(
        np.ascontiguousarray(generated), np.ascontiguousarray(source), mask.astype(np.uint8) * 255, center,
        cv2.NORMAL_CLONE,
    )  # fmt: skip
    # OpenCV solves over the mask's bounding box and leaves +-1 rounding outside a non-rectangular mask; the
    # Poisson problem only defines the inside, so the outside stays the source's exactly.
    return np.where(mask[..., None], cloned, source)


def _rects(rects: Mapping[str, Rect] | Iterable[Rect]) -> dict[str, Rect]:
    items = rects.items() if isinstance(rects, Mapping) else enumerate(rects)
    return {str(k): Rect(*(int(v) for v in r)) for k, r in items}


def rect_masks(rects: Mapping[str, Rect] | Iterable[Rect], image_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """``[H, W]`` bool masks of the rectangles."""
    height, width = image_shape[:2]
    masks = {}
    for name, (x0, y0, x1, y1) in _rects(rects).items():
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"rectangle {name} {(x0, y0, x1, y1)} is empty or outside the {width}x{height} image")
        mask = np.zeros((height, width), dtype=bool)
        mask[y0:y1, x0:x1] = True
        masks[name] = mask
    return masks


def paste_regions(source: np.ndarray, generated: np.ndarray, rects: Mapping[str, Rect] | Iterable[Rect]) -> np.ndarray:
    """Cut-and-paste composite (Fig. S4c): the rectangles of ``generated`` copied onto ``source``."""
    _check_pair(source, generated)
    out = source.copy()
    for mask in rect_masks(rects, source.shape).values():
        out[mask] = generated[mask]
    return out


def seamless_clone_regions(
    source: np.ndarray, generated: np.ndarray, rects: Mapping[str, Rect] | Iterable[Rect]
) -> np.ndarray:
    """Poisson seamless cloning (Fig. S4d, [49]): each rectangle of ``generated`` cloned into ``source``
    with ``cv2.seamlessClone(..., NORMAL_CLONE)``, one rectangle after the other."""
    import cv2

    _check_pair(source, generated)
    height, width = source.shape[:2]
    out = source.copy()
    for name, rect in _rects(rects).items():
        x0, y0, x1, y1 = rect
        if not (1 <= x0 and 1 <= y0 and x1 <= width - 1 and y1 <= height - 1 and rect.width >= 3 and rect.height >= 3):
            raise ValueError(
                f"rectangle {name} {tuple(rect)} must be at least 3x3 and leave a 1-pixel image frame for cloning"
            )
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[y0:y1, x0:x1] = 255
        # OpenCV places the mask's bounding box at center - size // 2, so this center keeps it in place.
        center = (x0 + rect.width // 2, y0 + rect.height // 2)
        out = cv2.seamlessClone(np.ascontiguousarray(generated), out, mask, center, cv2.NORMAL_CLONE)
    return out


def compose_emotional_face(
    source: np.ndarray,
    generated: np.ndarray,
    generated_landmarks: np.ndarray,
    method: str = "seamless",
    margin: float = 0.2,
    include_brows: bool = True,
    regions: str = "eyes_mouth",
) -> Composite:
    """Sec. S4.1: transfer the eye and mouth regions of g_LEF's image onto the real source frame.

    Args:
        source: the real frame ``[H, W, 3]`` uint8.
        generated: g_LEF's emotional image aligned to it (same size), uint8.
        generated_landmarks: 68 landmarks ``[68, 2]`` (x, y) of ``generated``.
        method: ``"seamless"`` (the paper's choice) or ``"paste"`` (the cut-and-paste baseline).
        regions: ``"eyes_mouth"`` (the paper's rectangles, :func:`region_rects`, for a GAN's image with its domain
            gap) or ``"face"`` (one region, :func:`face_region_mask`, for a generator that moves the source's own
            pixels: the rectangles would throw away its cheek, nasolabial and forehead motion).
    """
    _check_pair(source, generated)
    if regions == "face":
        mask = face_region_mask(generated_landmarks, source.shape)
        if method == "seamless":
            image = seamless_clone_mask(source, generated, mask)
        elif method == "paste":
            image = np.where(mask[..., None], generated, source)
        else:
            raise ValueError(f"method must be 'seamless' or 'paste', got {method!r}")
        return Composite(image=image, mask=mask, region_masks={"face": mask}, rects={"face": _bounding_rect(mask)},
                         method=method)  # fmt: skip
    if regions != "eyes_mouth":
        raise ValueError(f"regions must be 'eyes_mouth' (the paper's) or 'face', got {regions!r}")
    rects = region_rects(generated_landmarks, source.shape, margin=margin, include_brows=include_brows)
    if method == "seamless":
        image = seamless_clone_regions(source, generated, rects)
    elif method == "paste":
        image = paste_regions(source, generated, rects)
    else:
        raise ValueError(f"method must be 'seamless' or 'paste', got {method!r}")
    masks = rect_masks(rects, source.shape)
    union = np.logical_or.reduce(list(masks.values()))
    return Composite(image=image, mask=union, region_masks=masks, rects=rects, method=method)


# ----------------------------------------------------------------------------------------------
# Seam artefact measure
# ----------------------------------------------------------------------------------------------


def _as_float(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


def _seam_gradients(image: np.ndarray, rect: Rect, width: int) -> np.ndarray:
    """Squared magnitudes (summed over channels) of the finite differences normal to the rectangle's
    four edges, for every pixel pair within ``width`` pixels of an edge and along it."""
    height, img_w = image.shape[:2]
    x0, y0, x1, y1 = rect
    out = []
    for edge_x in (x0, x1):  # vertical edges: horizontal differences I[:, c+1] - I[:, c]
        cols = np.arange(edge_x - width, edge_x + width)  # left pixel of each pair
        cols = cols[(cols >= 0) & (cols + 1 < img_w)]
        if len(cols):
            diff = image[y0:y1, cols + 1] - image[y0:y1, cols]
            out.append((diff**2).sum(axis=-1).ravel())
    for edge_y in (y0, y1):  # horizontal edges: vertical differences
        rows = np.arange(edge_y - width, edge_y + width)
        rows = rows[(rows >= 0) & (rows + 1 < height)]
        if len(rows):
            diff = image[rows + 1, x0:x1] - image[rows, x0:x1]
            out.append((diff**2).sum(axis=-1).ravel())
    return np.concatenate(out) if out else np.zeros(0)


def boundary_energy(
    composite: np.ndarray,
    source: np.ndarray,
    rects: Mapping[str, Rect] | Iterable[Rect],
    width: int = 2,
    mode: str = "excess",
) -> float:
    """How visible the seams of a composite are (Sec. S4.1's "boundary artefacts").

    For every rectangle edge we take the finite differences across the edge (normal to it) for the pixel
    pairs within ``width`` pixels of the edge, along its whole length: ``g = I[p + n] - I[p]``, with
    intensities in [0, 1] and ``|g|^2`` summed over the colour channels. ``E(I)`` is the mean of
    ``|g|^2`` over all those pairs. A seam adds a jump that the source does not have there, so:

    * ``mode="excess"``: ``E(composite) - E(source)``; 0 means the seams add no gradient energy.
    * ``mode="ratio"``: ``E(composite) / E(source)``; 1 means the same.

    The band (rather than the single pair straddling the edge) catches a seam that cloning would only
    move by a pixel.
    """
    if composite.shape != source.shape:
        raise ValueError(f"composite {composite.shape} and source {source.shape} differ in size")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    comp, src = _as_float(composite), _as_float(source)
    rect_list = list(_rects(rects).values())
    if not rect_list:
        raise ValueError("no rectangles given")
    e_comp = np.concatenate([_seam_gradients(comp, r, width) for r in rect_list])
    e_src = np.concatenate([_seam_gradients(src, r, width) for r in rect_list])
    if e_comp.size == 0:
        raise ValueError("the rectangles have no edge pixels inside the image")
    if mode == "excess":
        return float(e_comp.mean() - e_src.mean())
    if mode == "ratio":
        return float(e_comp.mean() / max(e_src.mean(), 1e-12))
    raise ValueError(f"mode must be 'excess' or 'ratio', got {mode!r}")


@dataclass
class CloningRow:
    """Fig. S4's columns for one source and one ``e``: (a) source, (b) generated, (c) paste, (d) seamless."""

    valence: float
    arousal: float
    label: str
    source: np.ndarray
    source_landmarks: np.ndarray
    generated: GeneratedFace  # the generator's output (image and landmarks)
    paste: Composite
    seamless: Composite

    def energy(self, method: str, mode: str = "excess") -> float:
        """:func:`etlib.emoface.cloning.boundary_energy` of the paste or seamless composite against the source."""
        comp = self.paste if method == "paste" else self.seamless
        return boundary_energy(comp.image, self.source, comp.rects, mode=mode)

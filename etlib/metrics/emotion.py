"""Emotion metrics of the emotion-conditioned scenario (Sec. 4.1, Table 3; S6, Eqs. S17-S18).

A judge (EmoNet [61], or the offline FER port; see :mod:`etlib.emoface.judge`) reads valence, arousal and
class probabilities from every rendered frame; these functions compare them with the conditioning.

Top-3 accuracy uses the paper's label of each of the 12 S6 points (``etlib.config.S6_POINTS``: Happy,
Surprise, Angry, Disgust, Sad, Contempt) mapped to the judge's class names (:data:`LABEL_TO_CLASS`).
EmoNet's 8 classes contain every label. The FER port's 7 classes have no "contempt": a Contempt frame can
never be a hit there. It still counts in the denominator (so FER accuracies are comparable with a
judge that can say contempt only as a lower bound), and :class:`TopKAccuracy` reports how many frames
were unreachable and the accuracy over the reachable ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from etlib.config import S6_POINTS

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]

#: Paper label -> the class-name spellings judges use (EmoNet: "anger"; FER: "angry").
LABEL_TO_CLASS: dict[str, tuple[str, ...]] = {
    "happy": ("happy", "happiness"),
    "surprise": ("surprise", "surprised"),
    "angry": ("anger", "angry"),
    "disgust": ("disgust", "disgusted"),
    "sad": ("sad", "sadness"),
    "contempt": ("contempt",),
    "fear": ("fear", "afraid"),
    "neutral": ("neutral",),
}


def _vector(x: ArrayLike, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    arr = np.asarray(arr, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _pair(pred: ArrayLike, true: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, t = _vector(pred, "pred"), _vector(true, "true")
    if t.size == 1 and p.size > 1:
        t = np.full_like(p, t[0])  # one conditioning value for every frame
    if p.shape != t.shape:
        raise ValueError(f"pred ({p.size} values) and true ({t.size} values) differ in length")
    return p, t


def va_rmse(pred: ArrayLike, true: ArrayLike) -> float:
    """Eq. S17: ``RMSE = sqrt(1/N sum_i (E^pred_i - E^true_i)^2)`` over the N frames (valence or arousal).

    ``true`` may be a single value (the conditioning point) for all frames.
    """
    p, t = _pair(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def sign_agreement(pred: ArrayLike, true: ArrayLike) -> float:
    """Eq. S18: ``SA = 1/N sum_i I(sign(E^pred_i) == sign(E^true_i))``; ``sign`` is 1, -1, or 0 at exactly 0."""
    p, t = _pair(pred, true)
    return float(np.mean(np.sign(p) == np.sign(t)))


def s6_label(valence: float, arousal: float, atol: float = 1e-6) -> str:
    """The paper's label of an S6 point (``etlib.config.S6_POINTS``); other points are an error."""
    for v, a, label in S6_POINTS:
        if abs(v - valence) <= atol and abs(a - arousal) <= atol:
            return label
    raise ValueError(
        f"({valence}, {arousal}) is not one of the 12 S6 points {[(v, a) for v, a, _ in S6_POINTS]}; "
        "only they have a predefined emotion label"
    )


def label_to_class_index(label: str, class_names: Sequence[str]) -> int | None:
    """Index of ``label`` (an S6 label such as "Angry") among a judge's ``class_names``; None if the judge
    has no such class (FER and "Contempt")."""
    spellings = LABEL_TO_CLASS.get(label.strip().lower())
    if spellings is None:
        raise ValueError(f"unknown emotion label {label!r}; known: {', '.join(LABEL_TO_CLASS)}")
    lowered = [c.strip().lower() for c in class_names]
    for spelling in spellings:
        if spelling in lowered:
            return lowered.index(spelling)
    return None


@dataclass(frozen=True)
class TopKAccuracy:
    """Top-k accuracy (fraction, 0-1) over all frames; unreachable frames (label not among the judge's
    classes) count as misses. ``reachable_accuracy`` is over the other frames (None if there are none)."""

    accuracy: float
    k: int
    n_frames: int
    n_unreachable: int
    reachable_accuracy: float | None

    def __float__(self) -> float:
        return self.accuracy


def top3_accuracy(
    probs: torch.Tensor | np.ndarray, class_names: Sequence[str], target_labels: Sequence[str], k: int = 3
) -> TopKAccuracy:
    """Top-3 emotion accuracy (E-Acc, Table 3; S6): a frame is a hit when its predefined label is among the
    judge's ``k`` most probable classes.

    Args:
        probs: ``[N, C]`` class probabilities (or logits: only the order matters).
        class_names: the judge's ``C`` class names (e.g. ``judge.class_names``).
        target_labels: ``N`` paper labels, one a frame (see :func:`s6_label`).
    """
    scores = probs.detach().cpu().numpy() if torch.is_tensor(probs) else np.asarray(probs, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(class_names):
        raise ValueError(
            f"probs must be [N, {len(class_names)}] for class_names {tuple(class_names)}, got {scores.shape}"
        )
    if len(target_labels) != scores.shape[0]:
        raise ValueError(f"{len(target_labels)} labels for {scores.shape[0]} frames")
    if scores.shape[0] == 0:
        raise ValueError("no frames")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    targets = [label_to_class_index(label, class_names) for label in target_labels]
    hits = np.array([t is not None and t in row for t, row in zip(targets, top, strict=True)])
    reachable = np.array([t is not None for t in targets])
    n_reachable = int(reachable.sum())
    return TopKAccuracy(
        accuracy=float(hits.mean()),
        k=k,
        n_frames=len(targets),
        n_unreachable=len(targets) - n_reachable,
        reachable_accuracy=float(hits[reachable].mean()) if n_reachable else None,
    )

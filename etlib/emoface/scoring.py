"""Scoring generated faces with the emotion judge: V-RMSE, A-RMSE (Eq. S17), V-SA, A-SA (Eq. S18), E-Acc.

Shared by the notebooks' figures (:mod:`etlib.viz.emotion`) and ``python -m etlib.evaluation.generator_check``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from etlib.emoface.judge import crop_face


@torch.no_grad()
def judge_faces(judge, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], margin: float = 0.2):
    """The emotion judge (EmoNet or its FER counterpart) on uint8 face images, each cropped square around its
    landmarks (:func:`etlib.emoface.judge.crop_face`); returns its :class:`~etlib.emoface.judge.JudgeOutput`."""
    crops = np.stack([crop_face(np.asarray(im), lm, margin=margin, size=256) for im, lm in zip(images, landmarks)])
    device = next(judge.parameters()).device
    return judge(torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255).to(device))


def judge_va(judge, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], margin: float = 0.2) -> np.ndarray:
    """``[N, 2]`` (valence, arousal) of :func:`judge_faces`."""
    return judge_faces(judge, images, landmarks, margin).va.cpu().numpy().astype(np.float64)


def va_agreement(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """V-RMSE, A-RMSE (Eq. S17) and V-SA, A-SA (Eq. S18) of predicted against target ``[N, 2]`` valence/arousal
    (:mod:`etlib.metrics`)."""
    from etlib.metrics import sign_agreement, va_rmse

    pred, true = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    if pred.shape != true.shape or pred.ndim != 2 or pred.shape[1] != 2:
        raise ValueError(f"predicted and target must both be [N, 2] (valence, arousal), got {pred.shape}, {true.shape}")
    return {
        "V-RMSE": va_rmse(pred[:, 0], true[:, 0]),
        "A-RMSE": va_rmse(pred[:, 1], true[:, 1]),
        "V-SA": sign_agreement(pred[:, 0], true[:, 0]),
        "A-SA": sign_agreement(pred[:, 1], true[:, 1]),
    }


def emotion_scores(judged, points: Sequence[tuple[float, float, str]]) -> dict[str, float]:
    """The emotion metrics of Table 3 / S6 for judged images made at ``points`` ``(valence, arousal, label)``:
    :func:`va_agreement` plus E-Acc, the top-3 accuracy of the paper's labels (:func:`etlib.metrics.top3_accuracy`;
    the FER judge has no "contempt" class, so those points count as misses)."""
    from etlib.metrics import top3_accuracy

    target = np.array([[v, a] for v, a, _ in points], np.float64)
    scores = va_agreement(judged.va.cpu().numpy(), target)
    scores["E-Acc"] = top3_accuracy(judged.probs, judged.class_names, [label for _, _, label in points]).accuracy
    return scores


def _crops(images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], margin: float) -> torch.Tensor:
    crops = np.stack([crop_face(np.asarray(im), lm, margin=margin, size=256) for im, lm in zip(images, landmarks)])
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255)


@torch.no_grad()
def judge_relative(
    judge,
    images: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    reference_landmarks: Sequence[np.ndarray],
    crop_landmarks: Sequence[np.ndarray] | None = None,
    reference_crop_landmarks: Sequence[np.ndarray] | None = None,
    margin: float = 0.2,
):
    """A relative judge (:class:`~etlib.emoface.judge.FacsFERJudge`) on uint8 face images against their neutral
    references (one per image): both are cropped like :func:`judge_faces`; ``landmarks`` (NaN where no face was
    found: then the AU term is left out) measure the action units, ``crop_landmarks`` (default ``landmarks``)
    place the crops, which need every point."""
    crop_lm = landmarks if crop_landmarks is None else crop_landmarks
    ref_crop_lm = reference_landmarks if reference_crop_landmarks is None else reference_crop_landmarks
    device = next(judge.parameters()).device
    x, ref = _crops(images, crop_lm, margin).to(device), _crops(references, ref_crop_lm, margin).to(device)
    return judge.relative(x, np.asarray(landmarks), ref, np.asarray(reference_landmarks))

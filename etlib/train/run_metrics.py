"""Test-split metrics of a trained run (``RUN/metrics.json``): PSNR, SSIM, LMD, seconds per stage, backends.

* PSNR on the whole frame (the background outside the head is the frame's own, as in TalkingGaussian's
  evaluation) and on the head region alone (face + mouth masks), which is the harder, more honest number.
* LMD: mouth-landmark distance (pixels at the preset's resolution) between landmarks detected on the
  renders and on the real frames by the same detector at the same size (as Table 1 does, and the paper's
  protocol: the tracked landmarks from preprocessing were found on the full-size video and differ from a
  detection on the downsized frame by ~0.25 px on the sample subject, a floor no render could beat);
  also for a baseline whose mouth does not move (the audio window held at the training set's mean), so
  the number says how much the audio actually drives the lips.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from etlib.base import atomic_write_text
from etlib.encoders import reuse_encodings
from etlib.preprocess.subject import SubjectDir
from etlib.talking.model import EmoTalkingGaussian, FrameCondition
from etlib.train.data import SubjectFrames

ANALYSIS_SIZE = 512


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR of (B, H, W, 3) frames in [0, 1], per frame then averaged (``etlib.metrics.psnr``)."""
    from etlib.metrics import psnr as _psnr

    return float(_psnr(_nchw(pred), _nchw(target), None if mask is None else _nchw(mask)))


def render_frame(
    model: EmoTalkingGaussian, data: SubjectFrames, i: int, cond: FrameCondition | None = None, emotion: bool = True
) -> np.ndarray:
    """(H, W, 3) float in [0, 1]: frame ``i``'s camera and background, its own conditions unless given."""
    background = torch.from_numpy(data.subject.read_bg(i).astype(np.float32) / 255.0)
    with torch.no_grad():
        out = model(data.camera(i), cond or data.condition(i), background, emotion=emotion)
    return out.image.clamp(0, 1).numpy()


def detect_landmarks(images: list[np.ndarray], detector=None) -> np.ndarray:
    """68 landmarks of each (H, W, 3) [0, 1] image (NaN where no face), at the images' resolution."""
    import cv2

    from etlib.preprocess.landmarks import DlibLandmarks

    detector = detector or DlibLandmarks()
    out = np.full((len(images), 68, 2), np.nan, np.float32)
    prev = None
    for k, img in enumerate(images):
        size = img.shape[0]
        big = cv2.resize(
            (img * 255).round().astype(np.uint8), (ANALYSIS_SIZE, ANALYSIS_SIZE), interpolation=cv2.INTER_CUBIC
        )
        det = detector(big, prev)
        if det.landmarks is not None:
            out[k] = det.landmarks * size / ANALYSIS_SIZE
            prev = det.box
    return out


def mean_audio_condition(data: SubjectFrames, i: int) -> FrameCondition:
    """Frame ``i``'s conditions with the audio window replaced by the training set's mean: a mouth that does
    not follow the speech (the LMD baseline)."""
    mean = data.audio_features[data.train_ids].mean(0, keepdims=True)  # one row: every window slot clamps to it
    return data.condition(i, audio=mean, audio_index=0)


def evaluate_model(
    model: EmoTalkingGaussian, data: SubjectFrames, ids: list[int] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Image and lip metrics of ``model`` on frames ``ids`` (default: the test split)."""
    from etlib.metrics import lmd, ssim

    ids = list(ids if ids is not None else data.test_ids)
    renders, statics, truths, heads = [], [], [], []
    with reuse_encodings(model):  # H(mu) of the canonical Gaussians once for all frames
        for i in tqdm(ids, desc="evaluate", disable=not progress):
            renders.append(render_frame(model, data, i))
            statics.append(render_frame(model, data, i, mean_audio_condition(data, i)))
            truths.append(data.subject.read_frame(i).astype(np.float32) / 255.0)
            heads.append(data.subject.read_mask("face", i) | data.subject.read_mask("mouth", i))
    pred, true = np.stack(renders), np.stack(truths)
    head = np.stack(heads)[..., None].astype(np.float32)
    lm_pred = detect_landmarks(renders)
    lm_static = detect_landmarks(statics)
    lm_true = detect_landmarks(truths)
    ok = ~np.isnan(lm_pred[:, 0, 0]) & ~np.isnan(lm_static[:, 0, 0]) & ~np.isnan(lm_true[:, 0, 0])
    return {
        "frames": len(ids),
        "psnr": psnr(pred, true),
        "psnr_head": psnr(pred, true, np.broadcast_to(head, pred.shape)),
        "ssim": float(ssim(_nchw(pred), _nchw(true))),
        "lmd": float(lmd(lm_pred[ok], lm_true[ok])) if ok.any() else None,
        "lmd_static_mouth": float(lmd(lm_static[ok], lm_true[ok])) if ok.any() else None,
        "lmd_frames": int(ok.sum()),
    }


def evaluate_run(trainer, emotion_subject: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Write ``RUN/metrics.json`` for a trained :class:`~etlib.train.trainer.Trainer`."""
    from etlib.backends import torch_threads

    with torch_threads():
        return _evaluate_run(trainer, emotion_subject, progress)


def _evaluate_run(trainer, emotion_subject, progress: bool) -> dict[str, Any]:
    model = trainer.model.eval()
    metrics = {
        "test": evaluate_model(model, trainer.data, progress=progress),
        "seconds_per_stage": trainer.state["seconds"],
        "seconds_total": round(sum(trainer.state["seconds"].values()), 1),
        "backends": trainer.state["backends"],
        "terms_dropped": trainer.state.get("terms_dropped", {}),
        "gaussians": {"face": len(model.face), "mouth": len(model.mouth)},
        "preset": trainer.preset.name,
        "ablation": trainer.ablation.to_dict(),
    }
    if emotion_subject is not None:
        va_origin = trainer.state.get("va_origin")
        metrics["emotion_clip"] = evaluate_emotion_clip(model, emotion_subject, va_origin=va_origin, progress=progress)
    atomic_write_text(trainer.run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def evaluate_emotion_clip(
    model: EmoTalkingGaussian,
    subject: str | Path,
    va_truth: np.ndarray | None = None,
    max_frames: int = 40,
    progress: bool = True,
    va_origin: np.ndarray | list | None = None,
) -> dict[str, Any]:
    """PSNR on an emotion clip of the same person (the sample subject's ``emotion.mp4`` processed like the
    training video) rendered at the true valence/arousal with the emotion branch, and without it.

    ``va_truth`` (T, 2) defaults to the clip's ground truth (``ground_truth/<clip>.npz`` beside its source)
    or, without one, the judge's per-frame estimates, taken relative to ``va_origin`` when the model was trained
    with one (the training run's ``state.json``; a ground truth is relative to the resting face already).
    """
    s = SubjectDir(subject)
    data = SubjectFrames(s, va_origin=va_origin)
    if va_truth is None:
        source = Path(s.meta()["source"])
        gt = source.parent / "ground_truth" / f"{source.stem}.npz"
        va_truth = np.load(gt)["va"][: data.n] if gt.exists() else data.va
    ids = list(range(0, data.n, max(1, -(-data.n // max_frames))))
    with_e, without_e, truth = [], [], []
    with reuse_encodings(model):
        for i in tqdm(ids, desc="emotion clip", disable=not progress):
            cond = data.condition(i, va=va_truth[i], check_va=False)  # measured, relative to the resting face
            with_e.append(render_frame(model, data, i, cond, emotion=True))
            without_e.append(render_frame(model, data, i, cond, emotion=False))
            truth.append(s.read_frame(i).astype(np.float32) / 255.0)
    true = np.stack(truth)
    head = np.stack([s.read_mask("face", i) | s.read_mask("mouth", i) for i in ids])[..., None]
    head = np.broadcast_to(head, true.shape).astype(np.float32)
    return {
        "frames": len(ids),
        "psnr_head_with_emotion_branch": psnr(np.stack(with_e), true, head),
        "psnr_head_without_emotion_branch": psnr(np.stack(without_e), true, head),
        "psnr_with_emotion_branch": psnr(np.stack(with_e), true),
        "psnr_without_emotion_branch": psnr(np.stack(without_e), true),
    }


def layer_error(model: EmoTalkingGaussian, data: SubjectFrames, ids: list[int], layer: str, deform: bool) -> float:
    """Mean L1 of one layer's render against its masked truth (I^M_mask or I^F_mask) over frames ``ids``:
    with ``deform`` the branch's network acts, without it the canonical Gaussians stand still."""
    errors = []
    with torch.no_grad():
        for i in ids:
            s = data.sample(i)
            if layer == "mouth":
                out, truth = model.render_layer(model.mouth_layer(s.cond, deform), s.camera), s.image * s.mouth_mask
            elif layer == "face":
                out = model.render_layer(model.face_layer(s.cond, deform, emotion=False), s.camera)
                truth = s.image * s.face_mask
            else:
                raise ValueError(f"layer must be 'mouth' or 'face', not {layer!r}")
            errors.append(float((out.color - truth).abs().mean()))
    return float(np.mean(errors))


def lip_motion(model: EmoTalkingGaussian, data: SubjectFrames, ids: list[int], radius_px: float = 1.5) -> dict:
    """Does ``f_F`` open the mouth with the speech? Per frame of ``ids``: the mean vertical image motion (pixels)
    that ``f_F``'s ``Δmu`` (Eq. 4) gives the face Gaussians on the lower lip, beside the true mouth opening.

    Lower-lip Gaussians are those whose canonical centre projects within ``radius_px`` of landmarks 55-59/65-67
    in the first frame. Returns ``motion_px``, ``opening_px`` (landmark 66 minus 62, y) and their correlation.
    """
    if model.f_F is None:
        raise ValueError("this model has no face branch")
    lower_lip = [55, 56, 57, 58, 59, 65, 66, 67]
    mu = model.face.means.detach()
    K, w2c = torch.from_numpy(data.K).float(), torch.from_numpy(data.w2c[ids[0]]).float()
    cam = mu @ w2c[:3, :3].T + w2c[:3, 3]
    uv = (cam @ K.T)[:, :2] / (cam @ K.T)[:, 2:]
    near = torch.cdist(uv, torch.from_numpy(data.landmarks[ids[0], lower_lip]).float()).min(1).values < radius_px
    if not near.any():
        raise ValueError("no face Gaussian projects onto the lower lip; is the model trained on this subject?")
    px_per_unit = float(K[1, 1]) / float(cam[near, 2].mean())
    motion = []
    with torch.no_grad():
        for i in ids:
            c = data.condition(i)
            d_xyz = model.f_F(mu, c.audio, c.au).d_xyz[near]
            motion.append(float((d_xyz @ w2c[:3, :3].T)[:, 1].mean()) * px_per_unit)
    motion_px = np.asarray(motion) - np.mean(motion)
    opening_px = data.landmarks[ids, 66, 1] - data.landmarks[ids, 62, 1]
    corr = float(np.corrcoef(motion_px, opening_px)[0, 1]) if motion_px.std() > 0 else 0.0
    return {"motion_px": motion_px, "opening_px": opening_px, "correlation": corr, "gaussians": int(near.sum())}

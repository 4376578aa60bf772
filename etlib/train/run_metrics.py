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
    """(H, W, 3) float in [0, 1] on the CPU: frame ``i``'s camera and background, its own conditions unless given,
    rendered on the model's device (:attr:`~etlib.talking.model.EmoTalkingGaussian.device`; inputs made elsewhere
    are moved there)."""
    device = model.device
    cond = (cond or data.condition(i)).to(device)
    with torch.no_grad():
        out = model(data.camera(i).to(device), cond, data.background(i).to(device), emotion=emotion)
    return out.image.clamp(0, 1).cpu().numpy()


class LandmarkTrack:
    """68 landmarks of a stream of (H, W, 3) [0, 1] images, one image at a time, at the images' resolution (NaN
    where no face is found). Each detection starts from the previous face box, as when a whole clip is detected at
    once (:func:`detect_landmarks`), so a long clip is tracked without holding its frames."""

    def __init__(self, detector=None) -> None:
        from etlib.preprocess.landmarks import DlibLandmarks

        self.detector = detector or DlibLandmarks()
        self.prev = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2

        size = image.shape[0]
        big = cv2.resize(
            (image * 255).round().astype(np.uint8), (ANALYSIS_SIZE, ANALYSIS_SIZE), interpolation=cv2.INTER_CUBIC
        )
        det = self.detector(big, self.prev)
        if det.landmarks is None:
            return np.full((68, 2), np.nan, np.float32)
        self.prev = det.box
        return (det.landmarks * size / ANALYSIS_SIZE).astype(np.float32)


def detect_landmarks(images, detector=None) -> np.ndarray:
    """(T, 68, 2) landmarks of each (H, W, 3) [0, 1] image of ``images`` (any iterable; NaN where no face), at the
    images' resolution (:class:`LandmarkTrack`)."""
    track = LandmarkTrack(detector)
    found = [track(image) for image in images]
    return np.stack(found) if found else np.zeros((0, 68, 2), np.float32)


def mean_audio_condition(data: SubjectFrames, i: int) -> FrameCondition:
    """Frame ``i``'s conditions with the audio window replaced by the training set's mean: a mouth that does
    not follow the speech (the LMD baseline)."""
    mean = data.audio_features[data.train_ids].mean(0, keepdims=True)  # one row: every window slot clamps to it
    return data.condition(i, audio=mean, audio_index=0)


def head_mask(subject: SubjectDir, i: int) -> np.ndarray:
    """(H, W, 1) float32: frame ``i``'s head region, face + inside-mouth masks (what ``psnr_head`` scores)."""
    return (subject.read_mask("face", i) | subject.read_mask("mouth", i))[..., None].astype(np.float32)


def frame_scores(pred: np.ndarray, truth: np.ndarray, head: np.ndarray | None = None) -> dict[str, float]:
    """PSNR (whole frame, and over ``head`` when given) and SSIM of one (H, W, 3) [0, 1] frame: the per-frame values
    whose means are the clip's (``etlib.metrics`` averages over frames the same way)."""
    from etlib.metrics import ssim

    p, t = _nchw(pred[None]), _nchw(truth[None])
    scores = {"psnr": psnr(pred[None], truth[None]), "ssim": float(ssim(p, t))}
    if head is not None:
        scores["psnr_head"] = psnr(pred[None], truth[None], np.broadcast_to(head, pred.shape)[None])
    return scores


def evaluate_model(
    model: EmoTalkingGaussian, data: SubjectFrames, ids: list[int] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Image and lip metrics of ``model`` on frames ``ids`` (default: the test split).

    Streams: each frame is rendered, scored and its landmarks found before the next is read, so memory does not
    grow with the number of frames (``benchmarks/eval_memory.py``: a 7,500-frame 512 px subject)."""
    from etlib.metrics import lmd

    ids = list(ids if ids is not None else data.test_ids)
    tracks = {k: LandmarkTrack() for k in ("render", "static", "truth")}
    found: dict[str, list[np.ndarray]] = {k: [] for k in tracks}
    scores: list[dict[str, float]] = []
    with reuse_encodings(model):  # H(mu) of the canonical Gaussians once for all frames
        for i in tqdm(ids, desc="evaluate", disable=not progress):
            images = {
                "render": render_frame(model, data, i),
                "static": render_frame(model, data, i, mean_audio_condition(data, i)),
                "truth": data.subject.read_frame(i).astype(np.float32) / 255.0,
            }
            scores.append(frame_scores(images["render"], images["truth"], head_mask(data.subject, i)))
            for key, image in images.items():
                found[key].append(tracks[key](image))
    lm = {k: np.stack(v) if v else np.zeros((0, 68, 2), np.float32) for k, v in found.items()}
    ok = ~np.isnan(lm["render"][:, 0, 0]) & ~np.isnan(lm["static"][:, 0, 0]) & ~np.isnan(lm["truth"][:, 0, 0])
    return {
        "frames": len(ids),
        "psnr": float(np.mean([f["psnr"] for f in scores])),
        "psnr_head": float(np.mean([f["psnr_head"] for f in scores])),
        "ssim": float(np.mean([f["ssim"] for f in scores])),
        "lmd": float(lmd(lm["render"][ok], lm["truth"][ok])) if ok.any() else None,
        "lmd_static_mouth": float(lmd(lm["static"][ok], lm["truth"][ok])) if ok.any() else None,
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
    Frames are scored one at a time (nothing of the clip is held).
    """
    s = SubjectDir(subject)
    data = SubjectFrames(s, va_origin=va_origin, device=model.device)
    if va_truth is None:
        source = Path(s.meta()["source"])
        gt = source.parent / "ground_truth" / f"{source.stem}.npz"
        va_truth = np.load(gt)["va"][: data.n] if gt.exists() else data.va
    ids = list(range(0, data.n, max(1, -(-data.n // max_frames))))
    scores: dict[str, list[float]] = {}
    with reuse_encodings(model):
        for i in tqdm(ids, desc="emotion clip", disable=not progress):
            cond = data.condition(i, va=va_truth[i], check_va=False)  # measured, relative to the resting face
            truth = s.read_frame(i).astype(np.float32) / 255.0
            head = np.broadcast_to(head_mask(s, i), truth.shape)[None]
            for key, emotion in (("with", True), ("without", False)):
                render = render_frame(model, data, i, cond, emotion=emotion)[None]
                scores.setdefault(f"psnr_head_{key}_emotion_branch", []).append(psnr(render, truth[None], head))
                scores.setdefault(f"psnr_{key}_emotion_branch", []).append(psnr(render, truth[None]))
    order = ("psnr_head_with_emotion_branch", "psnr_head_without_emotion_branch", "psnr_with_emotion_branch",
             "psnr_without_emotion_branch")  # fmt: skip
    return {"frames": len(ids), **{k: float(np.mean(scores[k])) for k in order}}


def layer_error(model: EmoTalkingGaussian, data: SubjectFrames, ids: list[int], layer: str, deform: bool) -> float:
    """Mean L1 of one layer's render against its masked truth (I^M_mask or I^F_mask) over frames ``ids``:
    with ``deform`` the branch's network acts, without it the canonical Gaussians stand still."""
    errors = []
    with torch.no_grad():  # data and model on one device (a trainer's ``data`` and ``model``)
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
    cam = mu.cpu() @ w2c[:3, :3].T + w2c[:3, 3]  # the projection on the CPU, beside the landmarks
    uv = (cam @ K.T)[:, :2] / (cam @ K.T)[:, 2:]
    near = torch.cdist(uv, torch.from_numpy(data.landmarks[ids[0], lower_lip]).float()).min(1).values < radius_px
    if not near.any():
        raise ValueError("no face Gaussian projects onto the lower lip; is the model trained on this subject?")
    px_per_unit = float(K[1, 1]) / float(cam[near, 2].mean())
    motion = []
    with torch.no_grad():
        for i in ids:
            c = data.condition(i).to(mu.device)
            d_xyz = model.f_F(mu, c.audio, c.au).d_xyz.cpu()[near]
            motion.append(float((d_xyz @ w2c[:3, :3].T)[:, 1].mean()) * px_per_unit)
    motion_px = np.asarray(motion) - np.mean(motion)
    opening_px = data.landmarks[ids, 66, 1] - data.landmarks[ids, 62, 1]
    corr = float(np.corrcoef(motion_px, opening_px)[0, 1]) if motion_px.std() > 0 else 0.0
    return {"motion_px": motion_px, "opening_px": opening_px, "correlation": corr, "gaussians": int(near.sum())}

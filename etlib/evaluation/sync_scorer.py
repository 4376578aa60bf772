"""The instrument behind Sync-E/C in Tables 1-4, independent of training.

L_sync (Eq. 9) trains the model against one SyncNet: Wav2Lip's lip-sync expert when its weights are present, else a
SyncNet trained on the subject's training frames (:mod:`etlib.evaluation.syncnet_check`, ``syncnet.pt``). Scoring
Sync-E/C with that network would let the loss grade itself: the model was optimised to please it. The tables use
another instrument (:func:`find_sync_scorer`):

1. ``syncnet_python``'s SyncNet v2 (the paper's evaluator [14], :mod:`etlib.audio.syncnet_v2`) when its weights are
   in the cache: it never saw this subject. It reads whole-face 224 px crops and MFCCs
   (:func:`etlib.audio.sync_metrics.sync_scores_v2`), wrapped here as :class:`SyncNetV2Scorer`.
2. Offline, an *evaluator SyncNet* (:func:`train_evaluator_syncnet`, ``syncnet_eval.pt``): the same architecture,
   trained from another seed on frames the model never trained on, the subject's held-out clip (the sample
   subject's emotion clip, which notebook 08 preprocesses and no training stage reads). Its check on the subject's
   own clip, none of which it saw, is written beside it (``syncnet_eval.json``) and quoted in the tables' notes.

:func:`assert_independent` refuses a scorer whose name is the SyncNet the run's L_sync used (``state.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from etlib.base import SAMPLE_RATE

#: The evaluator's seed: the subject's L_sync SyncNet trains from seed 0 (``train_syncnet``'s default).
EVALUATOR_SEED = 1
EVALUATOR_FILE = "syncnet_eval.pt"
EVALUATOR_REPORT = "syncnet_eval.json"
#: The evaluator's name, shown in every table: what it trained on and from which seed.
EVALUATOR_NAME = "syncnet:evaluator(trained on {clip}, seed {seed}; never on the model's frames)"
#: v2's face crop: ``syncnet_python``'s ``crop_scale`` around the face box (its default, 0.4).
V2_CROP_SCALE = 0.4


def evaluator_name(clip: str, seed: int = EVALUATOR_SEED) -> str:
    return EVALUATOR_NAME.format(clip=clip, seed=seed)


# ----------------------------------------------------------------------------------------------
# SyncNet v2, the paper's evaluator
# ----------------------------------------------------------------------------------------------


def v2_crop_track(landmarks: np.ndarray) -> np.ndarray:
    """``(T, 3)`` box size ``bs`` (half the box's longer side) and centre ``cy, cx`` of each frame's v2 face crop,
    median-filtered over 13 frames as ``syncnet_python``'s ``run_pipeline.crop_video`` does (the 68 landmarks' box
    stands in for its S3FD detection). The whole track is needed up front; the frames are not
    (:func:`v2_face_crop` cuts one frame at a time)."""
    from scipy.signal import medfilt

    lm = np.asarray(landmarks, np.float64)
    x0, y0, x1, y1 = lm[..., 0].min(-1), lm[..., 1].min(-1), lm[..., 0].max(-1), lm[..., 1].max(-1)
    kernel = min(13, len(lm) - (1 - len(lm) % 2))  # medfilt needs an odd kernel no longer than the track
    smooth = (lambda v: medfilt(v, kernel)) if kernel >= 3 else (lambda v: v)  # noqa: E731
    return np.stack([smooth(np.maximum(y1 - y0, x1 - x0) / 2), smooth((y0 + y1) / 2), smooth((x0 + x1) / 2)], 1)


def v2_face_crop(frame: np.ndarray, box: np.ndarray, crop_scale: float = V2_CROP_SCALE) -> np.ndarray:
    """One ``(224, 224, 3)`` uint8 v2 face crop of ``frame`` at its track entry ``box = (bs, cy, cx)``
    (:func:`v2_crop_track`): the frame padded by ``bs (1 + 2 crop_scale)`` with grey 110, rows
    ``cy - bs .. cy + bs (1 + 2 crop_scale)`` and columns ``cx -+ bs (1 + crop_scale)``, resized to 224."""
    import cv2

    bs, cy, cx = (float(v) for v in box)
    bsi = int(bs * (1 + 2 * crop_scale))
    padded = np.pad(np.asarray(frame), ((bsi, bsi), (bsi, bsi), (0, 0)), constant_values=110)
    my, mx = cy + bsi, cx + bsi
    face = padded[int(my - bs) : int(my + bs * (1 + 2 * crop_scale)),
                  int(mx - bs * (1 + crop_scale)) : int(mx + bs * (1 + crop_scale))]  # fmt: skip
    return cv2.resize(face, (224, 224))


def v2_face_crops(frames: np.ndarray, landmarks: np.ndarray, crop_scale: float = V2_CROP_SCALE) -> np.ndarray:
    """``(T, 224, 224, 3)`` uint8 face crops for SyncNet v2, cut as ``syncnet_python``'s ``run_pipeline.crop_video``
    cuts them (:func:`v2_crop_track`, :func:`v2_face_crop`)."""
    track = v2_crop_track(landmarks)
    out = np.empty((len(frames), 224, 224, 3), np.uint8)
    for t, frame in enumerate(frames):
        out[t] = v2_face_crop(frame, track[t], crop_scale)
    return out


@dataclass
class SyncNetV2Scorer:
    """SyncNet v2 behind the tables' Sync-E/C: :meth:`score` takes the clip's frames, their landmarks and its
    16 kHz audio (v2 needs whole faces and the waveform, not the Wav2Lip-style mouth crops)."""

    model: Any
    name: str = "syncnet_v2 (syncnet_python, pretrained)"

    def score(self, frames: np.ndarray, landmarks: np.ndarray, audio: np.ndarray) -> dict[str, Any]:
        return self.score_crops(v2_face_crops(frames, landmarks), audio)

    def score_crops(self, crops: np.ndarray, audio: np.ndarray) -> dict[str, Any]:
        """The cells from the clip's ``(T, 224, 224, 3)`` v2 face crops (cut one frame at a time by a streaming
        caller, :func:`v2_face_crop`) and its 16 kHz audio."""
        from etlib.audio.sync_metrics import sync_scores_v2

        s = sync_scores_v2(crops, audio, self.model, sr=SAMPLE_RATE)
        return {"sync_e": s.sync_e, "sync_c": s.sync_c, "av_offset": s.av_offset, "windows": s.n_windows,
                "mean_distances": s.mean_distances.tolist()}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The offline evaluator SyncNet
# ----------------------------------------------------------------------------------------------


def train_evaluator_syncnet(
    heldout_clip: str | Path,
    out: str | Path,
    preset: str = "quick",
    subject: str | Path | None = None,
    iterations: int | None = None,
    seed: int = EVALUATOR_SEED,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the evaluator SyncNet on every frame of ``heldout_clip`` (a processed subject folder that no training
    stage reads: the sample subject's emotion clip) from ``seed``, at the preset's SyncNet size and iterations; write
    ``OUT/syncnet_eval.pt`` (resumed when present) and ``OUT/syncnet_eval.json``. With ``subject`` (the run's
    subject, none of whose frames the evaluator saw), check it there as :mod:`etlib.evaluation.syncnet_check`
    checks a SyncNet: 2 s speech windows every 0.5 s, true offset found within +-1 frame, Sync-C of the true audio
    above that of the audio delayed by 10 frames. Returns the report."""
    from etlib.audio.features import log_mel
    from etlib.audio.syncnet import load_syncnet, train_syncnet
    from etlib.backends import torch_threads
    from etlib.base import atomic_torch_save, atomic_write_text, json_default
    from etlib.config import get_preset
    from etlib.evaluation.syncnet_check import (
        SPEECH_SHARE,
        evaluate_windows,
        frame_loudness_db,
        load_subject_clip,
        speech_frames,
        split_windows,
    )

    if subject is not None and Path(heldout_clip).resolve() == Path(subject).resolve():
        raise ValueError(
            f"{heldout_clip} is the subject the model trained on: the evaluator must learn from another clip "
            "(the sample subject's emotion clip, or a second video of the person)"
        )
    cfg = get_preset(preset)
    iterations = (cfg.syncnet_iterations or 2000) if iterations is None else iterations
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / EVALUATOR_FILE
    clip = load_subject_clip(heldout_clip, cfg.syncnet.face_hw)
    name = evaluator_name(clip.name, seed)
    with torch_threads():
        training = train_syncnet(
            clip.crops, log_mel(clip.wave), fps=clip.fps, iterations=iterations, seed=seed, width=cfg.syncnet.width,
            embed_dim=cfg.syncnet.embed_dim, arch=cfg.syncnet.arch, subject=clip.name, checkpoint_path=path,
            checkpoint_every=max(1, min(100, iterations)), progress=progress,
        )  # fmt: skip
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt["name"] != name:  # the evaluator is named for what it is in every table
        atomic_torch_save(ckpt | {"name": name}, path)
    report: dict[str, Any] = {
        "syncnet": name,
        "trained_on": {"clip": str(Path(heldout_clip).resolve()), "frames": len(clip.crops), "seed": seed},
        "iterations": training.iterations,
        "last_loss": float(np.mean(training.losses[-20:])) if training.losses else None,
    }
    if subject is not None:
        own = load_subject_clip(subject, cfg.syncnet.face_hw)
        window = int(round(2.0 * own.fps))
        speech = speech_frames(frame_loudness_db(own.wave, len(own.crops), own.fps))
        windows = [w for w in split_windows(0, len(own.crops), window, hop=0.5 * own.fps)
                   if speech[w[0] : w[1]].mean() >= SPEECH_SHARE]  # fmt: skip
        check = evaluate_windows(own, load_syncnet(path), windows).report()
        report["check_on_subject"] = {"subject": own.name, "windows": len(windows), **check}
    atomic_write_text(out / EVALUATOR_REPORT, json.dumps(report, indent=1, default=json_default))
    return report


def evaluator_summary(folder: str | Path) -> str | None:
    """One line on the evaluator of ``folder/syncnet_eval.json``: what it trained on and how it did on the subject's
    clip; None when there is no report."""
    path = Path(folder) / EVALUATOR_REPORT
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    line = f"{r['syncnet']}: {r['trained_on']['frames']} frames of {Path(r['trained_on']['clip']).name}"
    check = r.get("check_on_subject")
    if check:
        acc, shift = check["offset_accuracy"], check["shift_test"]
        line += (f"; on {check['subject']}'s clip (never seen by it) it finds the true offset in {acc['hits']}/"
                 f"{acc['n_windows']} speech windows and ranks the true audio above a 10-frame shift in "
                 f"{shift['true_above_shifted']}")  # fmt: skip
    return line


# ----------------------------------------------------------------------------------------------
# Finding the instrument
# ----------------------------------------------------------------------------------------------


def find_sync_scorer(
    search: list[str | Path] | tuple = (), path: str | Path | None = None, device: torch.device | str = "cpu"
) -> tuple[Any | None, str]:
    """``(scorer, description)`` of the Sync-E/C instrument independent of training, or ``(None, "unavailable:
    why")``. Order: an explicit ``path`` (a SyncNet checkpoint); SyncNet v2 when its weights are in the cache;
    ``syncnet_eval.pt`` in a ``search`` folder. Never ``syncnet.pt`` (L_sync's) nor Wav2Lip's expert (L_sync's when
    present)."""
    from etlib.audio.syncnet import load_syncnet
    from etlib.weights import is_present

    if path is not None:
        net = load_syncnet(path, device=device)
        return net, f"{net.name} ({path})"
    if is_present("syncnet_v2"):
        from etlib.audio.syncnet_v2 import load_syncnet_v2

        scorer = SyncNetV2Scorer(load_syncnet_v2(device=device))
        return scorer, f"{scorer.name}: the paper's evaluator, trained on none of this subject"
    for folder in search:
        candidate = Path(folder) / EVALUATOR_FILE
        if candidate.exists():
            net = load_syncnet(candidate, device=device)
            summary = evaluator_summary(folder)
            return net, f"{net.name} ({candidate})" + (f"; {summary.split(': ', 1)[1]}" if summary else "")
    return None, (
        "unavailable: no SyncNet independent of training (SyncNet v2 weights, or an evaluator SyncNet: "
        "etlib.evaluation.sync_scorer.train_evaluator_syncnet on a clip the model never trained on)"
    )


def training_syncnet_name(run: str | Path) -> str | None:
    """The name of the SyncNet whose L_sync trained ``run`` (``state.json``'s ``sync``), or None without L_sync."""
    state = json.loads((Path(run) / "state.json").read_text())
    sync = state.get("sync")
    if not isinstance(sync, str) or " with " not in sync:
        return None
    return sync.split(" with ", 1)[1].split(", every")[0].split(";")[0].strip()


def assert_independent(scorer_name: str, run: str | Path) -> None:
    """Refuse a scorer that is the SyncNet the run trained against (the loss would grade itself)."""
    trained = training_syncnet_name(run)
    if trained is not None and scorer_name.split(" (")[0] == trained:
        raise ValueError(
            f"the Sync-E/C scorer {scorer_name!r} is the SyncNet that trained {run} through L_sync (Eq. 9): it would "
            "grade its own loss; give a SyncNet trained elsewhere (train_evaluator_syncnet) or SyncNet v2's weights"
        )


def sync_of_clip(scorer, frames: np.ndarray, landmarks: np.ndarray, audio: np.ndarray) -> dict[str, Any] | None:
    """SyncNet v2's cells for a clip, or None for a Wav2Lip-style SyncNet (the tables' mouth-crop path scores it)."""
    if isinstance(scorer, SyncNetV2Scorer):
        return scorer.score(frames, landmarks, audio)
    return None


__all__ = [
    "EVALUATOR_SEED",
    "SyncNetV2Scorer",
    "assert_independent",
    "evaluator_name",
    "evaluator_summary",
    "find_sync_scorer",
    "sync_of_clip",
    "train_evaluator_syncnet",
    "training_syncnet_name",
    "v2_crop_track",
    "v2_face_crop",
    "v2_face_crops",
]

"""The paper's evaluation (Sec. 4, S6): Tables 1-4 for a trained run, with the backend behind every number.

    python -m etlib.evaluation --subject DIR --run RUN --out OUT [--emotion-subject DIR] \
        [--ablation-runs no_normal_loss=RUN2 ...] [--audio speech.wav ...] [--syncnet syncnet.pt]

* Table 1, self-reconstruction (test split, its own audio, AUs and V/A): PSNR, SSIM, LPIPS, LMD,
  Sync-E/C, AUE-U/AUE-L, FPS for "Ours" and "Ours w/o Emo. branch" (the same model, emotion branch off).
* Table 2, cross-domain audio: Sync-E/C on speech the model never heard (:mod:`etlib.audio.heldout`: two sets
  of evaluation-only sentences, each spoken by a TTS voice that training does not use; and any ``--audio``
  files), with each clip's largest correlation with the audio training used.
* Table 3, emotion-conditioned (S6): the 12 valence/arousal points; V-RMSE, A-RMSE (Eq. S17), V-SA, A-SA
  (Eq. S18) and top-3 E-Acc from the emotion judge on face crops of the renders; "Ours" is driven by V/A,
  the AU baseline is the model without its emotion branch driven by action units read off the offline
  generator's emotional images (the paper's protocol for methods that cannot take V/A). On the offline route
  the readings are FER + landmark action units (:class:`etlib.emoface.judge.FacsFERJudge`), each method's
  frame read against the same method's render of the same frame at its neutral condition (the same rule for
  every row); FER's readings alone stay beside them (``fer_only_*``).
* Table 4, ablations: LPIPS, Sync-C and E-Acc of each variant run.

Writes ``OUT/tables.md``, ``OUT/table{1..4}.csv``, ``OUT/report.json`` and plots ``OUT/*.png``.
Sync-E/C come from an instrument independent of training (:mod:`etlib.evaluation.sync_scorer`): SyncNet v2 when
its weights are present, else an evaluator SyncNet trained from another seed on a clip the model never trained on;
never the SyncNet of L_sync (Eq. 9), which would grade its own loss (:func:`~etlib.evaluation.sync_scorer.assert_independent`).
Numbers from offline counterparts (the FER judge, a SyncNet trained on the subject, landmark-geometry AUs)
are not the paper's numbers: every row names what produced it, and what cannot be measured says
``unavailable: <why>`` instead of a stand-in value.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from etlib.base import FPS, SAMPLE_RATE, add_debug_flag, run_main, to_uint8
from etlib.config import S6_POINTS, EvalSettings, get_preset
from etlib.preprocess.action_units import AU_NAMES, UPPER_FACE_AUS, au_from_landmarks, neutral_reference
from etlib.talking.model import Ablation

SAMPLES_PER_FRAME = int(SAMPLE_RATE / FPS)

#: Table 4's rows in the paper's order, with its labels.
ABLATION_LABELS: dict[str, str] = {
    "no_normal_loss": "Ours w/o L_normal",
    "no_sync_loss": "Ours w/o L_sync",
    "combined_face_branch": "Combined face b.",
    "no_emotion_branch": "Ours w/o emo. b.",
    "full": "Ours",
}

#: The paper's Tables 1-4 (Macron, Obama, Lieu, May averages; 512 px; pretrained SyncNet, EmoNet, OpenFace).
PAPER_TABLES: dict[str, list[dict[str, Any]]] = {
    "table1": [
        {"Method": "Ground truth", "PSNR": None, "SSIM": 1, "LPIPS": 0, "LMD": 0, "Sync-E": 6.546, "Sync-C": 7.827,
         "AUE-U": 0, "AUE-L": 0, "FPS": None},
        {"Method": "ER-NeRF", "PSNR": 33.06, "SSIM": 0.935, "LPIPS": 0.0274, "LMD": 3.110, "Sync-E": 8.443,
         "Sync-C": 5.554, "AUE-U": 0.779, "AUE-L": 0.565, "FPS": 34},
        {"Method": "GaussianTalker", "PSNR": 33.02, "SSIM": 0.939, "LPIPS": 0.0333, "LMD": 3.206, "Sync-E": 8.554,
         "Sync-C": 5.741, "AUE-U": 0.766, "AUE-L": 0.523, "FPS": 121},
        {"Method": "TalkingGaussian", "PSNR": 33.64, "SSIM": 0.940, "LPIPS": 0.0256, "LMD": 2.610, "Sync-E": 8.129,
         "Sync-C": 5.919, "AUE-U": 0.279, "AUE-L": 0.550, "FPS": 108},
        {"Method": "Ours w/o Emo. branch", "PSNR": 33.87, "SSIM": 0.944, "LPIPS": 0.0255, "LMD": 2.557,
         "Sync-E": 7.750, "Sync-C": 6.270, "AUE-U": 0.207, "AUE-L": 0.515, "FPS": 107},
        {"Method": "Ours", "PSNR": 33.78, "SSIM": 0.943, "LPIPS": 0.0267, "LMD": 2.638, "Sync-E": 7.702,
         "Sync-C": 6.279, "AUE-U": 0.278, "AUE-L": 0.520, "FPS": 101},
    ],
    "table2": [
        {"Method": "Ground truth", "A Sync-E": 7.589, "A Sync-C": 7.158, "B Sync-E": 7.398, "B Sync-C": 7.112},
        {"Method": "ER-NeRF", "A Sync-E": 9.960, "A Sync-C": 4.305, "B Sync-E": 9.397, "B Sync-C": 4.938},
        {"Method": "GaussianTalker", "A Sync-E": 10.208, "A Sync-C": 4.375, "B Sync-E": 9.419, "B Sync-C": 5.001},
        {"Method": "TalkingGaussian", "A Sync-E": 9.369, "A Sync-C": 4.835, "B Sync-E": 9.009, "B Sync-C": 5.261},
        {"Method": "Ours", "A Sync-E": 9.262, "A Sync-C": 4.930, "B Sync-E": 8.746, "B Sync-C": 5.426},
    ],
    "table3": [
        {"Method": "Ground truth", "Sync-E": 7.830, "Sync-C": 7.042},
        {"Method": "ER-NeRF", "Sync-E": 10.109, "Sync-C": 4.225, "V-RMSE": 0.479, "A-RMSE": 0.502, "V-SA": 0.500,
         "A-SA": 0.500, "E-Acc": 27.3},
        {"Method": "GaussianTalker", "Sync-E": 10.243, "Sync-C": 4.539, "V-RMSE": 0.491, "A-RMSE": 0.503,
         "V-SA": 0.500, "A-SA": 0.500, "E-Acc": 22.9},
        {"Method": "TalkingGaussian", "Sync-E": 9.580, "Sync-C": 4.779, "V-RMSE": 0.467, "A-RMSE": 0.474,
         "V-SA": 0.515, "A-SA": 0.500, "E-Acc": 29.1},
        {"Method": "Ours", "Sync-E": 9.082, "Sync-C": 5.152, "V-RMSE": 0.352, "A-RMSE": 0.383, "V-SA": 0.766,
         "A-SA": 0.637, "E-Acc": 46.6},
    ],
    "table4": [
        {"Method": "Ours w/o L_normal", "LPIPS": 0.0274, "Sync-C": 6.090, "E-Acc": 45.4},
        {"Method": "Ours w/o L_sync", "LPIPS": 0.0269, "Sync-C": 5.925, "E-Acc": 46.1},
        {"Method": "Combined face b.", "LPIPS": 0.0253, "Sync-C": 4.489, "E-Acc": 42.1},
        {"Method": "Ours w/o emo. b.", "LPIPS": 0.0255, "Sync-C": 6.270, "E-Acc": 25.3},
        {"Method": "Ours", "LPIPS": 0.0267, "Sync-C": 6.279, "E-Acc": 46.6},
    ],
}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Settings and backends
# ------------------------------------------------------------------------------------------------


def settings_for(preset: str) -> EvalSettings:
    """The preset's :class:`etlib.config.EvalSettings` (smoke fits a CI notebook, quick a 5-minute one on 2 cores)."""
    return get_preset(preset).evaluation


@dataclass
class Backends:
    """What produces the numbers: the emotion judge, the SyncNet (or why there is none), LPIPS (or why not),
    the landmark detector, the AU extractor and the device that renders and runs the networks (``"cpu"`` or
    ``"cuda:N"``; the judge, SyncNet and LPIPS are on it)."""

    judge: Any
    syncnet: Any | None
    syncnet_status: str
    lpips: Any | None
    lpips_status: str
    detector: Any
    device: str = "cpu"
    #: A judge that reads a frame against a neutral reference (:class:`etlib.emoface.judge.FacsFERJudge`, sharing
    #: ``judge``'s FER model), or None: Table 3's emotion readings when present.
    reading_judge: Any | None = None

    def describe(self) -> dict[str, str]:
        from etlib.backends import device_label

        threads = torch.get_num_threads()
        return {
            "judge": self.judge.name if self.judge is not None else "none",
            "reading_judge": self.reading_judge.name if self.reading_judge is not None else "none",
            "syncnet": self.syncnet_status,
            "lpips": self.lpips_status,
            "landmarks": f"{getattr(self.detector, 'name', 'detector')} on renders upscaled to 512 px",
            "action_units": "landmark geometry (etlib.preprocess.action_units), subject's neutral",
            "device": f"{device_label(self.device)}, {threads} torch CPU thread{'s' if threads > 1 else ''}",
            "tts": _tts_voice(),
        }


def _tts_voice() -> str:
    """The voice that speaks the TTS clips of Tables 2-3 (:func:`etlib.audio.tts.voice_name`)."""
    from etlib.audio.tts import TTSBackendError, voice_name

    try:
        return voice_name()
    except TTSBackendError as err:
        return f"unavailable: {err}"


def short_backends(desc: Mapping[str, str]) -> dict[str, str]:
    """Compact labels of :meth:`Backends.describe` for the tables' "Backends" column (the notes and
    ``report.json`` keep the full text)."""
    unavailable = lambda text: text.startswith("unavailable")  # noqa: E731
    return {
        "judge": desc["judge"].split(" (")[0],
        "reading_judge": str(desc.get("reading_judge", "none")).split(", relative")[0],
        "syncnet": "none" if unavailable(desc["syncnet"]) else desc["syncnet"].split(" (")[0],
        "lpips": "unavailable" if unavailable(desc["lpips"]) else "AlexNet",
        "landmarks": desc["landmarks"].split(" ")[0],
        "action_units": "landmark-geometry AUs",
        "device": desc["device"],
    }


def _backend_note(desc: Mapping[str, str], keys: Sequence[str]) -> str:
    return "Backends: " + "; ".join(f"{k}: {desc[k]}" for k in keys) + "."


def find_syncnet(
    path: str | Path | None = None,
    search: Sequence[str | Path] = (),
    subject: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Any | None, str]:
    """``(syncnet, description)``: the SyncNet behind Sync-E/C (on ``device``), or ``(None, "unavailable: <why>")``.

    Order: an explicit ``path``; Wav2Lip's pretrained lip-sync expert when its weights are in the cache;
    ``syncnet.pt`` in one of the ``search`` folders (the course writes ``output_dir/syncnet.pt``). Nothing is
    trained or downloaded here.
    """
    from etlib.audio.syncnet import load_lipsync_expert, load_syncnet
    from etlib.weights import is_present

    if path is not None:
        net = load_syncnet(path, device=device)
        return net, f"{net.name} ({path})"
    if is_present("lipsync_expert"):
        net = load_lipsync_expert(device=device)
        return net, f"{net.name} (Wav2Lip's pretrained expert)"
    for folder in search:
        candidate = Path(folder) / "syncnet.pt"
        if candidate.exists():
            net = load_syncnet(candidate, device=device)
            return net, f"{net.name} ({candidate})"
    return None, "unavailable: no SyncNet for this subject"


def make_backends(
    syncnet_path=None,
    syncnet_search: Sequence[str | Path] = (),
    judge: str = "reading",
    device: torch.device | str = "auto",
) -> Backends:
    """The default backends on ``device`` (``"auto"``: CUDA when usable): the judge of
    :func:`etlib.emoface.judge.get_judge` (``"reading"``: EmoNet when its weights are present, else FER with
    FER + landmark action units as Table 3's reading judge; ``"fer"``: FER alone), :func:`find_syncnet`, LPIPS
    when its weights are present, dlib's 68
    landmarks (on the CPU: dlib has no GPU path here)."""
    from etlib.backends import resolve_device
    from etlib.emoface.judge import get_judge, is_relative
    from etlib.evaluation.sync_scorer import find_sync_scorer
    from etlib.metrics import try_lpips
    from etlib.preprocess.landmarks import DlibLandmarks

    device = resolve_device(device)
    syncnet, sync_status = find_sync_scorer(syncnet_search, syncnet_path, device=device)
    lpips, lpips_reason = try_lpips(device)
    lpips_status = lpips_reason if lpips is not None else lpips_reason.removeprefix("LPIPS ")
    chosen = get_judge(judge, device=device)
    image_judge, reading = (chosen.fer, chosen) if is_relative(chosen) else (chosen, None)
    return Backends(image_judge, syncnet, sync_status, lpips, lpips_status, DlibLandmarks(), str(device),
                    reading)  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Metric pieces (pure functions: unit-tested on synthetic inputs)
# ------------------------------------------------------------------------------------------------


def upper_au_condition(aus: np.ndarray) -> np.ndarray:
    """(T, 14) AU intensities (0-5, ``AU_NAMES`` order) -> (T, 7) model condition ``u``: the upper-face AUs
    in ``UPPER_FACE_AUS`` order divided by 5 (as :class:`etlib.train.data.SubjectFrames` builds ``cond.au``)."""
    aus = np.asarray(aus, dtype=np.float32)
    if aus.ndim != 2 or aus.shape[1] != len(AU_NAMES):
        raise ValueError(f"expected (T, {len(AU_NAMES)}) AU intensities in AU_NAMES order, got {aus.shape}")
    return aus[:, [AU_NAMES.index(n) for n in UPPER_FACE_AUS]] / 5.0


def au_errors(pred_landmarks: np.ndarray, true_landmarks: np.ndarray, neutral: dict[str, float]) -> dict[str, Any]:
    """AUE-U / AUE-L (Table 1) between AUs read from two (T, 68, 2) landmark sequences with the same
    ``neutral`` (the subject's :func:`neutral_reference`); frames with NaN landmarks in either are skipped."""
    from etlib.metrics import aue

    ok = np.isfinite(pred_landmarks).all(axis=(1, 2)) & np.isfinite(true_landmarks).all(axis=(1, 2))
    if not ok.any():
        return {"aue_u": "unavailable: no face detected", "aue_l": "unavailable: no face detected", "frames": 0}
    pred = au_from_landmarks(pred_landmarks[ok], neutral)
    true = au_from_landmarks(true_landmarks[ok], neutral)
    err = aue(dict(zip(AU_NAMES, pred.T)), dict(zip(AU_NAMES, true.T)))
    return {"aue_u": err.upper, "aue_l": err.lower, "frames": int(ok.sum())}


def emotion_metrics(
    pred_va: np.ndarray,
    target_va: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    labels: Sequence[str],
) -> dict[str, Any]:
    """V-RMSE / A-RMSE (Eq. S17), V-SA / A-SA (Eq. S18) and top-3 E-Acc (%, S6) of N judged frames.

    ``pred_va`` (N, 2): the judge's valence/arousal; ``target_va`` (N, 2): the conditioning point of each
    frame; ``probs`` (N, C) over ``class_names``; ``labels``: the paper's label of each frame's point.
    """
    from etlib.metrics import sign_agreement, top3_accuracy, va_rmse

    pred, target = np.asarray(pred_va, np.float64), np.asarray(target_va, np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or pred.shape[1] != 2:
        raise ValueError(f"pred_va and target_va must both be (N, 2), got {pred.shape} and {target.shape}")
    acc = top3_accuracy(probs, class_names, labels)
    return {
        "v_rmse": va_rmse(pred[:, 0], target[:, 0]),
        "a_rmse": va_rmse(pred[:, 1], target[:, 1]),
        "v_sa": sign_agreement(pred[:, 0], target[:, 0]),
        "a_sa": sign_agreement(pred[:, 1], target[:, 1]),
        "e_acc": 100.0 * acc.accuracy,
        "e_acc_reachable": None if acc.reachable_accuracy is None else 100.0 * acc.reachable_accuracy,
        "e_acc_unreachable_frames": acc.n_unreachable,
        "frames": len(pred),
    }


def s6_schedule(frames_per_point: int, points=S6_POINTS) -> tuple[np.ndarray, list[str]]:
    """Per-frame (N, 2) targets and labels of one clip that holds each S6 point for ``frames_per_point``."""
    if frames_per_point < 1:
        raise ValueError(f"frames_per_point must be >= 1, got {frames_per_point}")
    va = np.repeat(np.array([(v, a) for v, a, _ in points], np.float32), frames_per_point, axis=0)
    labels = [label for _, _, label in points for _ in range(frames_per_point)]
    return va, labels


def clip_sync(frames, landmarks: np.ndarray, audio: np.ndarray, syncnet) -> dict[str, Any]:
    """Sync-E / Sync-C / AV offset of a clip: (T, H, W, 3) uint8 frames (an array, or any sequence that slices into
    arrays, such as :class:`etlib.base.LazyFrames`: they are cropped a batch at a time), the (T, 68, 2) landmarks
    that place the face box, the clip's 16 kHz audio. ``syncnet=None`` gives "unavailable" cells."""
    from etlib.evaluation.sync_scorer import sync_of_clip

    v2 = sync_of_clip(syncnet, frames, landmarks, audio)  # SyncNet v2 reads whole faces and the waveform
    if v2 is not None:
        return v2
    if syncnet is None:
        return _no_sync("unavailable: no SyncNet for this subject")
    if len(frames) < 5:
        return _no_sync(f"unavailable: {len(frames)} frames, SyncNet needs 5")
    from etlib.audio.sync_metrics import mouth_crops

    crops = mouth_crops(frames, landmarks, out_hw=tuple(syncnet.config.face_hw), device=_device_of(syncnet))
    return sync_of_crops(crops, audio, syncnet)


def _no_sync(reason: str) -> dict[str, Any]:
    return {"sync_e": reason, "sync_c": reason, "av_offset": None, "windows": 0}


def _device_of(net) -> torch.device:
    return next(net.parameters()).device


def sync_of_crops(crops: np.ndarray, audio: np.ndarray, syncnet) -> dict[str, Any]:
    """Sync-E / Sync-C / AV offset from a clip's SyncNet mouth crops (``mouth_crops`` / ``MouthCropper``)."""
    if len(crops) < 5:
        return _no_sync(f"unavailable: {len(crops)} frames, SyncNet needs 5")
    from etlib.audio.features import log_mel
    from etlib.audio.sync_metrics import sync_scores

    scores = sync_scores(crops, log_mel(audio, SAMPLE_RATE), syncnet, FPS)
    return {
        "sync_e": scores.sync_e,
        "sync_c": scores.sync_c,
        "av_offset": scores.av_offset,
        "windows": scores.n_windows,
        "mean_distances": scores.mean_distances.tolist(),
    }


#: Frames a :class:`ClipStream` gathers before cutting their mouth crops (as :func:`mouth_crops` batches them, so the
#: crops, hence Sync-E/C, equal those of a whole clip): the most frames a stream holds.
CROP_BATCH = 64


class ClipStream:
    """What the tables measure of a clip, fed one (H, W, 3) uint8 frame at a time in order (``add``): SyncNet's
    mouth crops (Sync-E/C), the emotion judge's reading of a face crop of each frame, and the frames at ``keep``
    (indices, for the figures). Only a batch of frames is held, so a clip of any length costs its crops.

    Args:
        landmarks: (T, 68, 2) landmarks of the clip's frames (the pose frames': they place the face boxes).
        syncnet: the instrument of Sync-E/C (:func:`etlib.evaluation.sync_scorer.find_sync_scorer`): a Wav2Lip-style
            SyncNet (lower-half mouth crops) or SyncNet v2 (224 px whole-face crops, cut one frame at a time), or
            None.
        judge: the emotion judge, or None.
        keep: indices of the frames to keep.
        judge_batch: face crops the judge reads at once.
        crop_batch: frames cut into mouth crops at once (default :data:`CROP_BATCH`).
        detector: a landmark detector (dlib's): with it, 68 landmarks are detected on every frame
            (:meth:`detected`, NaN where no face is found), for a reading judge's action units.
    """

    def __init__(
        self,
        landmarks: np.ndarray,
        syncnet=None,
        judge=None,
        keep: Sequence[int] = (),
        judge_batch: int = 32,
        crop_batch: int | None = None,
        detector=None,
    ):
        from etlib.audio.sync_metrics import MouthCropper
        from etlib.evaluation.sync_scorer import SyncNetV2Scorer, v2_crop_track

        self.landmarks, self.syncnet, self.judge = np.asarray(landmarks), syncnet, judge
        self.cropper = self._v2_track = None
        if isinstance(syncnet, SyncNetV2Scorer):  # whole faces: the track's smoothed boxes now, a crop per frame
            self._v2_track = v2_crop_track(self.landmarks)
            self._v2_crops = np.empty((len(self.landmarks), 224, 224, 3), np.uint8)
        elif syncnet is not None:
            self.cropper = MouthCropper(
                self.landmarks,
                out_hw=tuple(syncnet.config.face_hw),
                batch_size=crop_batch or CROP_BATCH,
                device=_device_of(syncnet),
            )
        self.keep, self.kept = set(int(k) for k in keep), {}
        self.judge_batch = int(judge_batch)
        self._track = None
        if detector is not None:
            from etlib.train.run_metrics import LandmarkTrack

            self._track = LandmarkTrack(detector)
        self._detected: list[np.ndarray] = []
        self._faces: list[np.ndarray] = []
        self._va: list[np.ndarray] = []
        self._probs: list[np.ndarray] = []
        self.n = 0

    def add(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3:
            raise ValueError(f"a clip's frames are (H, W, 3) uint8 images, got {frame.dtype} {frame.shape}")
        if self.n >= len(self.landmarks):
            raise ValueError(f"more frames than the {len(self.landmarks)} landmark sets of this clip")
        if self.cropper is not None:
            self.cropper.add(frame)
        if self._v2_track is not None:
            from etlib.evaluation.sync_scorer import v2_face_crop

            self._v2_crops[self.n] = v2_face_crop(frame, self._v2_track[self.n])
        if self.judge is not None:
            from etlib.emoface.judge import crop_face

            face = frame.astype(np.float32) / 255.0  # the video's 8-bit values, as [0, 1] floats
            self._faces.append(crop_face(face, self.landmarks[self.n], margin=0.2, size=128))
            if len(self._faces) == self.judge_batch:
                self._judge()
        if self._track is not None:
            self._detected.append(self._track(frame.astype(np.float32) / 255.0))
        if self.n in self.keep:
            self.kept[self.n] = frame.copy()
        self.n += 1

    def _judge(self) -> None:
        if not self._faces:
            return
        x = torch.from_numpy(np.clip(np.stack(self._faces), 0, 1)).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            out = self.judge(x.to(_device_of(self.judge)))
        self._va.append(out.va.cpu().numpy())
        self._probs.append(out.probs.cpu().numpy())
        self._faces = []

    def sync(self, audio: np.ndarray) -> dict[str, Any]:
        """Sync-E / Sync-C / AV offset of the frames added, against the clip's 16 kHz ``audio``."""
        if self.syncnet is None:
            return _no_sync("unavailable: no SyncNet for this subject")
        if self.n < 5:
            return _no_sync(f"unavailable: {self.n} frames, SyncNet needs 5")
        if self._v2_track is not None:
            return self.syncnet.score_crops(self._v2_crops[: self.n], audio)
        return sync_of_crops(self.cropper.crops(), audio, self.syncnet)

    def judged(self) -> dict[str, Any]:
        """The judge's ``va`` (T, 2) and ``probs`` (T, C) of the frames added, and its ``class_names``."""
        self._judge()
        return {"va": np.concatenate(self._va), "probs": np.concatenate(self._probs),
                "class_names": list(self.judge.class_names)}  # fmt: skip

    def detected(self) -> np.ndarray:
        """(T, 68, 2) landmarks detected on the frames added (NaN where no face was found)."""
        if self._track is None:
            raise ValueError("this stream has no landmark detector")
        return np.stack(self._detected) if self._detected else np.zeros((0, 68, 2), np.float32)

    def frames_kept(self) -> np.ndarray:
        """The kept frames, (K, H, W, 3) uint8 in the order of their indices."""
        return np.stack([self.kept[k] for k in sorted(self.kept)])


def audio_of_frames(audio: np.ndarray, first: int, n: int) -> np.ndarray:
    """The 16 kHz samples of video frames ``first .. first + n - 1`` (25 fps), zero-padded past the end."""
    lo, hi = first * SAMPLES_PER_FRAME, (first + n) * SAMPLES_PER_FRAME
    out = np.zeros(hi - lo, np.float32)
    part = np.asarray(audio[lo:hi], np.float32)
    out[: len(part)] = part
    return out


# ------------------------------------------------------------------------------------------------
# Rendering helpers
# ------------------------------------------------------------------------------------------------


def driven_landmarks(data, n: int) -> np.ndarray:
    """(n, 68, 2) tracked landmarks of the pose frames of a driven clip of ``n`` frames (poses and backgrounds loop
    over the training frames, :func:`etlib.render.render_frames`): they place the face boxes of its crops."""
    ids = [data.train_ids[t % len(data.train_ids)] for t in range(n)]
    return data.landmarks[ids]


def score_driven(
    model,
    data,
    audio: np.ndarray,
    backends: Backends,
    va: np.ndarray | None = None,
    au: np.ndarray | None = None,
    emotion: bool = True,
    judge: bool = False,
    keep: Sequence[int] = (),
    progress: bool = False,
    desc: str = "render",
    detect: bool = False,
) -> dict[str, Any]:
    """A clip driven by new 16 kHz ``audio``, per-frame ``va`` (T, 2) (default: each pose frame's own) and optional
    ``au`` (T, 7) overrides of ``cond.au``, rendered by :func:`etlib.render.render_frames` and measured as it goes
    (:class:`ClipStream`): Sync-E/C, with ``judge`` the emotion judge's readings, with ``detect`` the landmarks
    ``backends.detector`` finds on every rendered frame, and the frames at ``keep``.

    Returns ``{"frames": T, "landmarks": (T, 68, 2), "sync": {...}, "judged": {...} or None, "kept": (K, H, W, 3),
    "detected": (T, 68, 2) or None}``.
    """
    from etlib.render import render_frames

    feats = data.features_for(audio, SAMPLE_RATE, FPS)
    n = len(feats) if va is None else len(va)
    landmarks = driven_landmarks(data, n)
    stream = ClipStream(landmarks, backends.syncnet, backends.judge if judge else None, keep,
                        detector=backends.detector if detect else None)  # fmt: skip
    for frame in render_frames(model, data, audio, va, progress, emotion, au=au, n_frames=n, desc=desc,
                               features=feats):  # fmt: skip
        stream.add(frame)
    return {
        "frames": n,
        "landmarks": landmarks,
        "sync": stream.sync(audio),
        "judged": stream.judged() if judge else None,
        "kept": stream.frames_kept() if keep else None,
        "detected": stream.detected() if detect else None,
    }


def judge_frames(judge, frames, landmarks: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """The emotion judge on square face crops (``crop_face``, 20 % margin) of (T, H, W, 3) uint8 frames (any
    iterable: they are read a batch at a time, :class:`ClipStream`)."""
    stream = ClipStream(landmarks, judge=judge, judge_batch=batch)
    for frame in frames:
        stream.add(frame)
    return stream.judged()


# ------------------------------------------------------------------------------------------------
# Table 1: self-reconstruction
# ------------------------------------------------------------------------------------------------


#: Frames of Table 1's block kept for the figure of its reconstructions (spread over the block).
SHOWN_FRAMES = 4


def self_reconstruction(
    model,
    data,
    backends: Backends,
    ids: Sequence[int] | None = None,
    fps_iters: int = 10,
    progress: bool = True,
    baselines: bool = True,
) -> dict[str, Any]:
    """Table 1 on frames ``ids`` (default the test split; must be consecutive for SyncNet): rows "Ground
    truth", "Ours w/o Emo. branch" (emotion branch off) and "Ours" (only "Ours" without ``baselines``).
    Landmarks for LMD and the AUs are found by the same detector on the renders and on the real frames (as
    OpenFace runs on both in the paper).

    Streams: each frame is read, rendered and scored (PSNR, SSIM and LPIPS per frame, then averaged over frames as
    ``etlib.metrics`` does; landmarks; SyncNet's mouth crops) before the next, so a 5-minute test split costs its
    crops and landmarks, not its frames. :data:`SHOWN_FRAMES` frames are kept for the figure (``shown``)."""
    from etlib.io import read_audio
    from etlib.metrics import fps, lmd, psnr, ssim
    from etlib.train.run_metrics import LandmarkTrack, render_frame

    ids = list(data.test_ids if ids is None else ids)
    if np.any(np.diff(ids) != 1):
        raise ValueError("Table 1 needs consecutive frame indices (SyncNet reads 5-frame windows)")
    track = data.landmarks[ids]
    audio = audio_of_frames(read_audio(data.subject.audio, sr=SAMPLE_RATE), ids[0], len(ids))
    neutral = neutral_reference(data.landmarks[data.train_ids])
    picks = np.linspace(0, len(ids) - 1, min(SHOWN_FRAMES, len(ids))).round().astype(int)
    labels = [("Ours w/o Emo. branch", False), ("Ours", True)][0 if baselines else 1 :]
    names = ["Ground truth"] + [label for label, _ in labels]
    clips = {k: ClipStream(track, backends.syncnet, keep=picks) for k in names}
    found = {k: LandmarkTrack(backends.detector) for k in names}
    landmarks: dict[str, list[np.ndarray]] = {k: [] for k in names}
    scores: dict[str, dict[str, list[float]]] = {label: {"psnr": [], "ssim": [], "lpips": []} for label, _ in labels}
    nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x[None])).permute(0, 3, 1, 2)  # noqa: E731
    for i in tqdm(ids, desc="Table 1", disable=not progress):
        truth = data.subject.read_frame(i)
        truth_f = truth.astype(np.float32) / 255.0
        clips["Ground truth"].add(truth)
        landmarks["Ground truth"].append(found["Ground truth"](truth_f))
        for label, emotion in labels:
            pred = render_frame(model, data, i, emotion=emotion)
            clips[label].add(to_uint8(pred))
            landmarks[label].append(found[label](pred))
            frame_scores = scores[label]
            frame_scores["psnr"].append(psnr(nchw(pred), nchw(truth_f)))
            frame_scores["ssim"].append(ssim(nchw(pred), nchw(truth_f)))
            if backends.lpips is not None:
                frame_scores["lpips"].append(backends.lpips(nchw(pred), nchw(truth_f)))
    lm = {k: np.stack(v) for k, v in landmarks.items()}
    lm_true = lm["Ground truth"]
    gt = {"Method": "Ground truth", "psnr": "-", "ssim": 1.0, "lpips": 0.0, "lmd": 0.0, "aue_u": 0.0, "aue_l": 0.0}
    gt |= clips["Ground truth"].sync(audio) if baselines else {}
    gt["fps"] = "-"
    rows, renders = [gt] if baselines else [], {}
    for label, emotion in labels:
        lm_pred = lm[label]
        ok = np.isfinite(lm_pred).all(axis=(1, 2)) & np.isfinite(lm_true).all(axis=(1, 2))
        row: dict[str, Any] = {"Method": label}
        row["psnr"] = float(np.mean(scores[label]["psnr"]))
        row["ssim"] = float(np.mean(scores[label]["ssim"]))
        row["lpips"] = float(np.mean(scores[label]["lpips"])) if backends.lpips is not None else backends.lpips_status
        row["lmd"] = lmd(lm_pred[ok], lm_true[ok]) if ok.any() else "unavailable: no face detected"
        row["lmd_frames"] = int(ok.sum())
        row |= {k: v for k, v in au_errors(lm_pred, lm_true, neutral).items() if k != "frames"}
        row |= clips[label].sync(audio)
        renders[label] = clips[label].frames_kept()
        with torch.no_grad():
            timing = fps(lambda e=emotion: render_frame(model, data, ids[0], emotion=e), warmup=1, iters=fps_iters)
        row["fps"] = timing.fps
        rows.append(row)
    return {"rows": rows, "frames": ids, "shown": [ids[k] for k in picks], "renders": renders,
            "truth": clips["Ground truth"].frames_kept(), "landmark_frames": int(ok.sum())}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Table 2: cross-domain audio
# ------------------------------------------------------------------------------------------------


def cross_domain_audio(
    model,
    data,
    audios: Mapping[str, np.ndarray],
    backends: Backends,
    progress: bool = True,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Table 2: Sync-E/C of the model speaking each 16 kHz clip in ``audios`` (name -> samples), at the
    frames' own measured emotion (its emotion branch on); clips are cut to ``max_seconds`` if given. Each clip is
    scored as it renders (:func:`score_driven`)."""
    results = {}
    for name, audio in audios.items():
        audio = audio if max_seconds is None else audio[: int(max_seconds * SAMPLE_RATE)]
        clip = score_driven(model, data, audio, backends, progress=progress, desc=f"speak {name}")
        results[name] = clip["sync"] | {"frames": clip["frames"]}
    return {"rows": [{"Method": "Ours", **{f"{k}|{n}": v for n, r in results.items() for k, v in r.items()}}],
            "clips": results}  # fmt: skip


def tts_audios(n: int) -> dict[str, np.ndarray]:
    """Table 2's cross-domain speech: the first ``n`` sentences of each set of
    :data:`etlib.audio.heldout.CROSS_DOMAIN_SETS` ("Set A", "Set B"), spoken by the set's voice. None of it is
    the subject's audio or the S5 sentences of L_sync (Eq. 9): the model never heard it (``tests/test_heldout.py``;
    :func:`heard_in_training` measures it on every run). Which voice said what: :func:`cross_domain_descriptions`."""
    from etlib.audio.heldout import cross_domain_clips

    return {name: wave for name, (wave, _) in cross_domain_clips(n, sr=SAMPLE_RATE).items()}


def cross_domain_descriptions(n: int) -> dict[str, str]:
    """``{clip name: "<voice>: <sentences>"}`` of :func:`tts_audios` (the voice that actually spoke)."""
    from etlib.audio.heldout import cross_domain_clips

    return {name: what for name, (_, what) in cross_domain_clips(n, sr=SAMPLE_RATE).items()}


def heard_in_training(audios: Mapping[str, np.ndarray], subject_audio: str | Path) -> dict[str, float]:
    """For each clip, :func:`etlib.audio.heldout.shared_audio` against the audio training used: the subject's own
    track and the S5 sentences as L_sync speaks them (1.0: some 0.5 s of the clip is training audio; at or above
    :data:`etlib.audio.heldout.HEARD_THRESHOLD` the clip is not cross-domain)."""
    from etlib.audio.heldout import shared_audio, training_speech
    from etlib.io import read_audio

    heard = [read_audio(subject_audio, sr=SAMPLE_RATE), *training_speech(SAMPLE_RATE)]
    return {name: shared_audio(wave, heard) for name, wave in audios.items()}


# ------------------------------------------------------------------------------------------------
# Table 3: emotion-conditioned
# ------------------------------------------------------------------------------------------------


#: The neutral condition of Table 3's readings, as an S6-like point (valence, arousal, label).
NEUTRAL_POINT: tuple[tuple[float, float, str], ...] = ((0.0, 0.0, "neutral"),)


def au_baseline_conditions(
    data, detector, n_sources: int = 3, points=S6_POINTS, generator=None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The AU baseline's condition at each S6 point (S6): the offline generator makes the subject's emotional
    faces at the point from ``n_sources`` training frames, landmarks are detected on them, and AUs are read
    with the subject's neutral (:func:`au_from_landmarks`); returns (P, 7) ``cond.au`` (upper-face AUs / 5)
    averaged over the sources, and the generated images (for figures)."""
    from etlib.emoface.offline import OfflineEmotionGenerator
    from etlib.train.run_metrics import detect_landmarks

    generator = generator or OfflineEmotionGenerator()
    neutral = neutral_reference(data.landmarks[data.train_ids])
    sources = [data.train_ids[k] for k in np.linspace(0, len(data.train_ids) - 1, n_sources).round().astype(int)]
    conditions, images, detected = [], [], 0
    for v, a, _ in points:
        gen = [generator(data.subject.read_frame(i), data.landmarks[i], v, a).image for i in sources]
        lm = detect_landmarks([g.astype(np.float32) / 255.0 for g in gen], detector)
        ok = np.isfinite(lm).all(axis=(1, 2))
        detected += int(ok.sum())
        if ok.any():
            conditions.append(upper_au_condition(au_from_landmarks(lm[ok], neutral)).mean(0))
        else:  # no face found on any generated image: the baseline gets the neutral AUs (zero)
            conditions.append(np.zeros(len(UPPER_FACE_AUS), np.float32))
        images.append(gen[0])
    info = {"generator": generator.name, "sources": sources, "detected": detected, "images": images}
    return np.stack(conditions).astype(np.float32), info


def emotion_conditioned(
    model,
    data,
    backends: Backends,
    audio: np.ndarray,
    frames_per_point: int = 10,
    au_sources: int = 3,
    emotion_subject: str | Path | None = None,
    emotion_clip_frames: int = 40,
    progress: bool = True,
    au_baseline: bool = True,
    reading: bool = True,
) -> dict[str, Any]:
    """Table 3: one continuous clip spoken with ``audio`` (cross-domain speech, looped if short) that holds
    each of the 12 S6 points for ``frames_per_point`` frames; rows "Ours" (V/A to the emotion branch) and
    "AU baseline" (emotion branch off, AUs of the offline generator's images; skipped without ``au_baseline``).
    With ``emotion_subject``,
    PSNR against that ground-truth emotion clip (:func:`etlib.train.run_metrics.evaluate_emotion_clip`).
    Clips are scored as they render; ``renders`` keeps the middle frame of each point's segment (12 a row).

    With ``backends.reading_judge`` (and ``reading``) the V/A and E-Acc columns are its readings: each method's
    clip is rendered a second time at its neutral condition (Ours: ``e = (0, 0)``; the AU baseline: the AUs its own
    protocol reads off the generator's images at ``(0, 0)``), with the same speech and poses, and every frame is
    read against the same frame of that neutral clip (landmarks detected by ``backends.detector`` on both). FER's
    readings alone are kept as ``fer_only_*``."""
    from etlib.train.run_metrics import evaluate_emotion_clip

    va, labels = s6_schedule(frames_per_point)
    n = len(va)
    need = n * SAMPLES_PER_FRAME
    speech = np.tile(audio, int(np.ceil(need / max(len(audio), 1))))[:need].astype(np.float32)
    relative = reading and getattr(backends, "reading_judge", None) is not None
    if au_baseline:
        au_points, au_info = au_baseline_conditions(data, backends.detector, au_sources)
    else:
        au_points, au_info = np.zeros((len(S6_POINTS), len(UPPER_FACE_AUS)), np.float32), {}
    au = np.repeat(au_points, frames_per_point, axis=0)
    neutral_runs: dict[str, dict[str, Any]] = {}
    if relative:
        neutral_runs["Ours (V/A)"] = {"va": np.zeros_like(va), "emotion": True}
        if au_baseline:
            au_neutral, neutral_info = au_baseline_conditions(data, backends.detector, au_sources, NEUTRAL_POINT)
            au_info["neutral_condition"] = au_neutral[0]
            au_info["neutral_detected"] = neutral_info["detected"]
            neutral_runs["AU baseline (w/o Emo. b. + generator AUs)"] = {
                "va": np.zeros_like(va), "au": np.repeat(au_neutral, n, axis=0), "emotion": False}  # fmt: skip
    clip_psnr = None
    if emotion_subject is not None:
        clip_psnr = evaluate_emotion_clip(model, emotion_subject, max_frames=emotion_clip_frames, progress=progress)
    rows, renders, judged = [], {}, {}
    runs = [("Ours (V/A)", {"va": va, "emotion": True})]
    runs += [("AU baseline (w/o Emo. b. + generator AUs)", {"va": va, "au": au, "emotion": False})] * au_baseline
    middles = [p * frames_per_point + frames_per_point // 2 for p in range(len(S6_POINTS))]  # one frame a point
    for label, kwargs in runs:
        clip = score_driven(model, data, speech, backends, judge=True, keep=middles, progress=progress, desc=label,
                            detect=relative, **kwargs)  # fmt: skip
        j = clip["judged"]
        row = {"Method": label} | clip["sync"]
        image_metrics = emotion_metrics(j["va"], va, j["probs"], j["class_names"], labels)
        row |= image_metrics
        if relative:
            rest = score_driven(model, data, speech, backends, judge=True, progress=progress,
                                desc=f"{label} at neutral", detect=True, **neutral_runs[label])  # fmt: skip
            read = backends.reading_judge.combine(j["probs"], clip["detected"], rest["judged"]["probs"],
                                                  rest["detected"])  # fmt: skip
            row |= emotion_metrics(read.va.numpy(), va, read.probs.numpy(), read.class_names, labels)
            row |= {f"fer_only_{k}": v for k, v in image_metrics.items() if k != "frames"}
            both = np.isfinite(clip["detected"]).all(axis=(1, 2)) & np.isfinite(rest["detected"]).all(axis=(1, 2))
            row["au_frames"] = int(both.sum())
            j = j | {"reading_va": read.va.numpy(), "reading_probs": read.probs.numpy()}
        if clip_psnr is None:
            row["psnr_emotion_clip"] = "unavailable: no --emotion-subject"
        else:
            key = "with" if kwargs["emotion"] else "without"
            row["psnr_emotion_clip"] = clip_psnr[f"psnr_head_{key}_emotion_branch"]
        rows.append(row)
        renders[label], judged[label] = clip["kept"], j
    return {
        "rows": rows,
        "targets": va,
        "labels": labels,
        "renders": renders,
        "judged": judged,
        "au_baseline": {"conditions": au_points, **au_info},
        "emotion_clip": clip_psnr,
    }


# ------------------------------------------------------------------------------------------------
# Table 4: ablations
# ------------------------------------------------------------------------------------------------


def train_ablations(
    subject: str | Path,
    out_dir: str | Path,
    preset: str = "smoke",
    names: Sequence[str] = ("no_normal_loss", "no_sync_loss", "combined_face_branch", "no_emotion_branch"),
    progress: bool = True,
) -> dict[str, Path]:
    """Train each Table 4 variant as its own full run (all six stages) under ``out_dir/<name>``; completed
    runs are resumed, not redone. Each is as expensive as the main run (smoke: tens of seconds each on a
    CPU; quick: as long as notebooks 06-09). Returns name -> run folder."""
    from etlib.emoface.targets import make_emotion_targets
    from etlib.train import Trainer

    runs = {}
    for name in names:
        Ablation.from_name(name)  # fail early on a typo
        run = Path(out_dir) / name
        Trainer(subject, run, preset, ablation=name, emotion_targets=make_emotion_targets(), progress=progress).run()
        runs[name] = run
    return runs


def ablation_name(ablation: Ablation) -> str:
    """The Table 4 name (``Ablation.NAMES``) of a variant."""
    for name in Ablation.NAMES:
        if Ablation.from_name(name) == ablation:
            return name
    raise ValueError(f"{ablation} is none of the Table 4 variants {Ablation.NAMES}")


def _run_notes(run: Path) -> str:
    state = json.loads((Path(run) / "state.json").read_text())  # notes only: no path is built from it
    dropped = state.get("terms_dropped", {})
    return "; ".join(f"{k} {v}" for k, v in dropped.items()) or "all loss terms used"


def ablations(
    subject: str | Path,
    runs: Mapping[str, str | Path | None],
    backends: Backends,
    audio: np.ndarray,
    settings: EvalSettings,
    precomputed: Mapping[str, dict[str, Any]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Table 4: LPIPS and Sync-C in the self-reconstruction scenario, E-Acc in the emotion-conditioned one,
    for each variant with a run; the others say "not trained". ``precomputed`` (name -> row with lpips,
    sync_c, e_acc) reuses numbers already measured (the main run's)."""
    from etlib.train import load_model
    from etlib.train.data import SubjectFrames

    rows = []
    for name, label in ABLATION_LABELS.items():
        run = runs.get(name)
        if precomputed and name in precomputed:
            rows.append({"Method": label, **precomputed[name], "notes": _run_notes(run) if run else ""})
            continue
        if run is None:
            rows.append({"Method": label, "lpips": "not trained", "sync_c": "not trained", "e_acc": "not trained"})
            continue
        model = load_model(run, device=backends.device).eval()
        data = SubjectFrames.for_run(run, model.config["audio_frames"], subject, device=model.device)
        ids = _table1_ids(data, settings.max_test_frames)
        t1 = self_reconstruction(model, data, backends, ids, fps_iters=1, progress=progress, baselines=False)
        t3 = emotion_conditioned(model, data, backends, audio, settings.frames_per_point, progress=progress,
                                 au_baseline=False, reading=False)  # fmt: skip
        ours, ours3 = t1["rows"][-1], t3["rows"][0]
        rows.append({"Method": label, "lpips": ours["lpips"], "sync_c": ours["sync_c"], "e_acc": ours3["e_acc"],
                     "notes": _run_notes(run)})  # fmt: skip
    return {"rows": rows}


def _table1_ids(data, max_frames: int | None) -> list[int]:
    ids = list(data.test_ids)
    return ids if max_frames is None else ids[:max_frames]


# ------------------------------------------------------------------------------------------------
# Tables: layout, markdown, csv
# ------------------------------------------------------------------------------------------------


@dataclass
class Table:
    """One table: ``columns`` are (header, keys) pairs; a cell joins its keys' values with "/"
    (Sync-E/C as the paper prints it). CSV files keep one column per key and the full text of every
    "unavailable: why"; markdown cells show the word before the colon and list the reasons as notes."""

    name: str
    title: str
    columns: list[tuple[str, tuple[str, ...]]]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def cells(self, skip: tuple[str, ...] = ("Backends",)) -> tuple[list[str], list[dict[str, str]]]:
        """Headers and rows of formatted cells (the markdown cells), without the ``skip`` columns: what a
        figure of the table shows."""
        columns = [(h, keys) for h, keys in self.columns if h not in skip]
        rows = [
            {h: "/".join(format_value(r.get(k), _digits(k)) for k in keys) for h, keys in columns} for r in self.rows
        ]
        return [h for h, _ in columns], rows


def _is_reason(value: Any) -> bool:
    """An "unavailable: why" (or "not trained") cell rather than a number or a label."""
    return isinstance(value, str) and value.startswith(("unavailable:", "not trained"))


def format_value(value: Any, digits: int = 3) -> str:
    """Numbers to ``digits`` decimals, ``None`` to "-", "unavailable: why" to "unavailable", labels as they are."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value.split(":")[0] if _is_reason(value) else value
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    return f"{v:.{digits}f}" if np.isfinite(v) else ("inf" if v > 0 else "nan")


_DIGITS = {"psnr": 2, "fps": 1, "e_acc": 1, "fer_only_e_acc": 1, "psnr_emotion_clip": 2, "lpips": 4}


def _digits(key: str) -> int:
    return next((d for k, d in _DIGITS.items() if key.split("|")[0] == k), 3)


def to_markdown(table: Table) -> str:
    """The table as GitHub markdown, title first and notes after."""
    head = "| " + " | ".join(h for h, _ in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    lines = [f"### {table.title}", "", head, rule]
    for row in table.rows:
        cells = ["/".join(format_value(row.get(k), _digits(k)) for k in keys) for _, keys in table.columns]
        lines.append("| " + " | ".join(cells) + " |")
    reasons = sorted({v for r in table.rows for v in r.values() if _is_reason(v) and ":" in v})
    notes = table.notes + [f"`{r.split(':')[0]}`: {r.split(':', 1)[1].strip()}" for r in reasons]
    if notes:
        lines += [""] + [f"* {n}" for n in notes]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """One header row of the keys (``Method`` first), one row per table row; numbers unrounded."""
    keys = [k for _, ks in table.columns for k in ks]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(keys)
    for row in table.rows:
        writer.writerow(["" if row.get(k) is None else row.get(k) for k in keys])
    return buf.getvalue()


#: How each metric's instrument relates to training (Tables 1-4): what it is, and whether training used it.
INSTRUMENTS: dict[str, str] = {
    "psnr_ssim": "PSNR/SSIM: closed-form image statistics",
    "lpips": "LPIPS: {lpips}, also the network of the L_LPIPS terms of Eqs. S12-S16 (as in the paper: not independent "
    "of training)",
    "lmd": "LMD: {landmarks}; no loss term uses it (it tracked the training frames' landmarks in preprocessing)",
    "sync": "Sync-E/C: {syncnet_name}, independent of training (not the SyncNet of L_sync, Eq. 9)",
    "aue": "AUE-U/L: landmark-geometry AUs; the same extractor reads the upper-face AUs u that f_F takes (Eq. 4), as "
    "OpenFace does in the paper",
    "emotion": "V-RMSE, A-RMSE, V-SA, A-SA, E-Acc: {judge}; no loss term uses it and it made no emotion target (it "
    "labelled the subject's own frames' valence/arousal in preprocessing)",
    "emotion_reading": "V-RMSE, A-RMSE, V-SA, A-SA, E-Acc: {reading_judge} (FER alone beside it: {judge}); no loss "
    "term uses either and neither made an emotion target (FER labelled the subject's own frames' valence/arousal in "
    "preprocessing; the action units are measured on detected landmarks, never the generator's, though both "
    "follow the EMFACS prototypes)",
}
#: The instruments behind each table's metrics.
TABLE_INSTRUMENTS: dict[str, tuple[str, ...]] = {
    "table1": ("psnr_ssim", "lpips", "lmd", "sync", "aue"),
    "table2": ("sync",),
    "table3": ("psnr_ssim", "sync", "emotion"),
    "table4": ("lpips", "sync", "emotion"),
}


def instrument_note(table: str, backends: Mapping[str, str]) -> str:
    """One note naming the instrument of every metric of ``table`` (:data:`TABLE_INSTRUMENTS`) and how it relates
    to training (:data:`INSTRUMENTS`), from :meth:`Backends.describe`."""
    lpips = str(backends.get("lpips", "unavailable"))
    names = {
        "lpips": "unavailable" if lpips.startswith("unavailable") else lpips,
        "landmarks": str(backends.get("landmarks", "the landmark detector")).split(" on ")[0],
        "syncnet_name": str(backends.get("syncnet", "unavailable")).split(" (")[0],
        "judge": str(backends.get("judge", "the emotion judge")).split(" (")[0],
        "reading_judge": str(backends.get("reading_judge", "none")).split(", relative")[0],
    }
    keys = TABLE_INSTRUMENTS[table]
    if table == "table3" and names["reading_judge"] != "none":
        keys = tuple("emotion_reading" if k == "emotion" else k for k in keys)
    notes = [INSTRUMENTS[k].format(**names) for k in keys]
    if names["syncnet_name"].startswith("unavailable"):
        notes = [n if not n.startswith("Sync-E/C") else "Sync-E/C: unavailable (no instrument independent of training)"
                 for n in notes]  # fmt: skip
    return "Instruments: " + "; ".join(notes) + "."


def table1(result: dict[str, Any], backends: dict[str, str]) -> Table:
    s = short_backends(backends)
    b = f"SyncNet {s['syncnet']}; LPIPS {s['lpips']}; {s['landmarks']}; {s['action_units']}; FPS on {s['device']}"
    rows = [r | {"backends": b} for r in result["rows"]]
    columns = [("Method", ("Method",)), ("PSNR (↑)", ("psnr",)), ("SSIM (↑)", ("ssim",)), ("LPIPS (↓)", ("lpips",)),
               ("LMD (↓)", ("lmd",)), ("Sync-E (↓)/C (↑)", ("sync_e", "sync_c")),
               ("AUE-U (↓)/L (↓)", ("aue_u", "aue_l")), ("FPS", ("fps",)), ("Backends", ("backends",))]  # fmt: skip
    ids = result["frames"]
    notes = [f"Test frames {ids[0]}-{ids[-1]} ({len(ids)} consecutive frames); LMD in pixels at the subject's "
             f"resolution, on {result['landmark_frames']} frames with a face found in both; FPS of one render on "
             f"{backends['device']}.",
             _backend_note(backends, ("syncnet", "lpips", "landmarks", "action_units", "device"))]  # fmt: skip
    return Table("table1", "Table 1. Self-reconstruction (test split)", columns, rows, notes)


def table2(result: dict[str, Any], backends: dict[str, str]) -> Table:
    """Table 2: one Sync-E/C column a clip; the notes say who spoke what and how much of it training heard."""
    from etlib.audio.heldout import HEARD_THRESHOLD

    names = list(result["clips"])
    speech, heard = result.get("speech", {}), result.get("heard", {})
    voices = "; ".join(f"{n}: {speech[n].split(': ')[0]}" for n in names if n in speech) or backends.get("tts", "TTS")
    rows = [r | {"backends": f"SyncNet {short_backends(backends)['syncnet']}; speech {voices}"} for r in result["rows"]]
    columns = [("Method", ("Method",))]
    columns += [(f"{n} Sync-E (↓)/C (↑)", (f"sync_e|{n}", f"sync_c|{n}")) for n in names]
    columns += [("Backends", ("backends",))]
    notes = [f"{n}: {result['clips'][n]['frames']} frames" + (f", {speech[n]}" if n in speech else "") for n in names]
    if heard:
        notes.append("Never heard in training: largest normalised correlation of any 0.5 s of each clip with the audio "
                     "training used (the subject's track, the S5 sentences of L_sync): "
                     + ", ".join(f"{n} {v:.2f}" for n, v in heard.items())
                     + f" (1.00: the same samples; unrelated speech measured up to 0.67; {HEARD_THRESHOLD} or more "
                     "would mean heard).")  # fmt: skip
        notes += [f"**{n} holds audio training used: it is not cross-domain.**" for n, v in heard.items()
                  if v >= HEARD_THRESHOLD]  # fmt: skip
    notes += ["No ground-truth row: no video of the subject saying these clips exists.",
              _backend_note(backends, ("syncnet",))]  # fmt: skip
    return Table("table2", "Table 2. Cross-domain audio", columns, rows, notes)


def table3(result: dict[str, Any], backends: dict[str, str], frames_per_point: int) -> Table:
    """Table 3: V-RMSE, A-RMSE (Eq. S17), V-SA, A-SA (Eq. S18), E-Acc by the reading judge when there is one (FER +
    landmark action units, each method against its own render at its neutral condition), FER's alone beside them;
    the "Backends" column and the notes name both."""
    s = short_backends(backends)
    relative = any("fer_only_v_rmse" in r for r in result["rows"])
    judge = f"judge {s['reading_judge']} (FER alone in its own column)" if relative else f"judge {s['judge']}"
    rows = [r | {"backends": f"{judge}; SyncNet {s['syncnet']}"} for r in result["rows"]]
    columns = [("Method", ("Method",)), ("Sync-E (↓)/C (↑)", ("sync_e", "sync_c")), ("V-RMSE (↓)", ("v_rmse",)),
               ("A-RMSE (↓)", ("a_rmse",)), ("V-SA (↑)", ("v_sa",)), ("A-SA (↑)", ("a_sa",)),
               ("E-Acc % (↑)", ("e_acc",))]  # fmt: skip
    if relative:
        columns.append(("FER alone V-RMSE/A-RMSE/V-SA/A-SA/E-Acc %",
                        tuple(f"fer_only_{k}" for k in ("v_rmse", "a_rmse", "v_sa", "a_sa", "e_acc"))))  # fmt: skip
    columns += [("PSNR emotion clip (↑)", ("psnr_emotion_clip",)), ("Backends", ("backends",))]
    au = result["au_baseline"]
    notes = [
        f"12 S6 points x {frames_per_point} frames in one clip of cross-domain speech (Table 2's first clip, looped).",
        f"AU baseline: {au['generator']} on training frames {au['sources']}, landmarks found on "
        f"{au['detected']} of {len(au['sources']) * 12} generated images, upper-face AUs as `cond.au`.",
    ]
    if relative:
        frames = ", ".join(f"{r['Method']} {r['au_frames']}" for r in result["rows"])
        notes.append(
            f"V-RMSE, A-RMSE, V-SA, A-SA, E-Acc: {backends['reading_judge']}. Each method's clip is rendered again "
            "at its own neutral condition with the same speech and poses (Ours: e = (0, 0); AU baseline: the AUs its "
            "protocol reads off the generator's images at (0, 0)), and every frame is read against the same frame "
            "of that clip: FER's change of log-probabilities plus EMFACS evidence of the action units measured on "
            f"landmarks detected on both (frames with a face found on both: {frames} of "
            f"{result['rows'][0]['frames']}). The same rule for every row. The FER-alone column: "
            f"{backends['judge']}, read absolutely."
        )
    notes.append(_backend_note(backends, ("judge", "reading_judge", "syncnet") if relative else ("judge", "syncnet")))
    unreachable = result["rows"][0].get("e_acc_unreachable_frames", 0)
    if unreachable:
        notes.append(f"The judge has no class for {unreachable} of {result['rows'][0]['frames']} frames' labels "
                     "(FER has no 'contempt'): they count as misses.")  # fmt: skip
    if result.get("emotion_clip"):
        notes.append("PSNR emotion clip: head region of the sample subject's emotion clip rendered at its true V/A "
                     "(Ours) or without the emotion branch (baseline, the clip's own measured AUs).")  # fmt: skip
    return Table("table3", "Table 3. Emotion-conditioned (S6)", columns, rows, notes)


def table4(result: dict[str, Any], backends: dict[str, str]) -> Table:
    s = short_backends(backends)
    rows = [r | {"backends": f"judge {s['judge']}; SyncNet {s['syncnet']}; LPIPS {s['lpips']}"} for r in result["rows"]]
    columns = [("Method", ("Method",)), ("LPIPS (↓)", ("lpips",)), ("Sync-C (↑)", ("sync_c",)),
               ("E-Acc % (↑)", ("e_acc",)), ("Training notes", ("notes",)), ("Backends", ("backends",))]  # fmt: skip
    notes = ["LPIPS and Sync-C in the self-reconstruction scenario, E-Acc in the emotion-conditioned one (Sec. 4.4).",
             "Each variant trains like Ours but for what it ablates (tests/test_ablations.py): the same stages, steps, "
             "loss terms and emotional images; in Combined face b. the emotion stage trains f_F, which takes "
             "valence/arousal there, instead of f_E.",
             _backend_note(backends, ("judge", "syncnet", "lpips"))]  # fmt: skip
    return Table("table4", "Table 4. Ablations", columns, rows, notes)


# ------------------------------------------------------------------------------------------------
# The whole evaluation
# ------------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Everything :func:`evaluate` measured: the four tables, the raw results and the backends."""

    tables: dict[str, Table]
    results: dict[str, dict[str, Any]]
    backends: dict[str, str]
    settings: EvalSettings
    out: Path | None = None

    def markdown(self) -> str:
        return "\n".join(to_markdown(t) for t in self.tables.values())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if k not in ("renders", "truth", "images", "judged")}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def evaluate(
    subject: str | Path,
    run: str | Path,
    out: str | Path | None = None,
    *,
    emotion_subject: str | Path | None = None,
    ablation_runs: Mapping[str, str | Path] | None = None,
    audio_files: Sequence[str | Path] = (),
    settings: EvalSettings | None = None,
    backends: Backends | None = None,
    syncnet_path: str | Path | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> Evaluation:
    """Tables 1-4 for the run ``run`` of ``subject``; with ``out``, write tables.md, table{1..4}.csv,
    report.json and the plots there. Everything renders and runs on one device: ``device``, else the given
    ``backends``' device, else ``"auto"`` (CUDA when usable). CPU work uses one torch thread
    (:func:`etlib.backends.torch_threads`). Every clip is scored as it renders: memory does not grow with its length.
    """
    from etlib.backends import resolve_device, torch_threads

    if device is not None and backends is not None and resolve_device(device) != torch.device(backends.device):
        raise ValueError(f"device {device!r} differs from the backends' device {backends.device!r}: give one of them")
    device = resolve_device(device if device is not None else (backends.device if backends is not None else "auto"))
    with torch_threads():
        return _evaluate(subject, run, out, emotion_subject, ablation_runs or {}, audio_files, settings, backends,
                         syncnet_path, progress, device)  # fmt: skip


def _evaluate(subject, run, out, emotion_subject, ablation_runs, audio_files, settings, backends, syncnet_path,
              progress, device) -> Evaluation:  # fmt: skip
    from etlib.io import read_audio
    from etlib.train import load_model
    from etlib.train.checkpoints import read_run_state
    from etlib.train.data import SubjectFrames

    run = Path(run)
    state = read_run_state(run)  # validated: no unknown stage names, an error that says what to run
    unknown = set(ablation_runs) - set(Ablation.NAMES)
    if unknown:
        raise ValueError(f"unknown ablation names {sorted(unknown)}; choose from {', '.join(Ablation.NAMES)}")
    settings = settings or settings_for(state["preset"])
    backends = backends or make_backends(syncnet_path, [run.parent, *([out] if out else [])], device=device)
    desc = backends.describe()
    from etlib.evaluation.sync_scorer import assert_independent, training_syncnet_name

    assert_independent(desc["syncnet"], run)  # the loss never grades itself
    desc["syncnet"] += f"; L_sync trained with {training_syncnet_name(run) or 'no SyncNet'}"
    model = load_model(run, device=device).eval()
    data = SubjectFrames.for_run(run, model.config["audio_frames"], subject, device=device)

    t1 = self_reconstruction(model, data, backends, _table1_ids(data, settings.max_test_frames),
                             settings.fps_iters, progress)  # fmt: skip
    audios = tts_audios(settings.tts_sentences)
    audios |= {Path(f).stem: read_audio(f, sr=SAMPLE_RATE) for f in audio_files}
    t2 = cross_domain_audio(model, data, audios, backends, progress, settings.max_audio_seconds)
    cut = {n: a if settings.max_audio_seconds is None else a[: int(settings.max_audio_seconds * SAMPLE_RATE)]
           for n, a in audios.items()}  # fmt: skip
    t2["heard"] = heard_in_training(cut, data.subject.audio)
    t2["speech"] = cross_domain_descriptions(settings.tts_sentences) | {Path(f).stem: f"file {f}" for f in audio_files}
    speech = next(iter(audios.values()))
    t3 = emotion_conditioned(model, data, backends, speech, settings.frames_per_point, settings.au_sources,
                             emotion_subject, settings.emotion_clip_frames, progress)  # fmt: skip
    ours1, ours3 = t1["rows"][-1], t3["rows"][0]
    own = ablation_name(Ablation(**state["ablation"]))  # --run may itself be a variant: file it under its name
    # Table 4 compares runs with the image judge alone (its other rows are measured so, ``reading=False``)
    measured = {
        "lpips": ours1["lpips"],
        "sync_c": ours1["sync_c"],
        "e_acc": ours3.get("fer_only_e_acc", ours3["e_acc"]),
    }
    runs = {k: Path(v) for k, v in ablation_runs.items()} | {own: run}
    t4 = ablations(subject, runs, backends, speech, settings, {own: measured}, progress)

    tables = {
        "table1": table1(t1, desc),
        "table2": table2(t2, desc),
        "table3": table3(t3, desc, settings.frames_per_point),
        "table4": table4(t4, desc),
    }
    results = {"table1": t1, "table2": t2, "table3": t3, "table4": t4}
    for name, table in tables.items():
        table.notes.append(instrument_note(name, desc))
    ev = Evaluation(tables, results, desc, settings, Path(out) if out else None)
    if out is not None:
        write_outputs(ev, Path(out), run_state=state)
    return ev


def write_outputs(ev: Evaluation, out: Path, run_state: dict[str, Any] | None = None) -> dict[str, Path]:
    """tables.md, table{1..4}.csv, report.json and the plots (:mod:`etlib.viz.evaluation`) under ``out``."""
    from etlib.base import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    paths = {"tables.md": out / "tables.md", "report.json": out / "report.json"}
    header = "# Evaluation (Tables 1-4 of the paper, offline counterparts named per row)\n\n"
    atomic_write_text(paths["tables.md"], header + ev.markdown())
    for name, table in ev.tables.items():
        paths[f"{name}.csv"] = out / f"{name}.csv"
        atomic_write_text(paths[f"{name}.csv"], to_csv(table))
    report = {
        "backends": ev.backends,
        "settings": ev.settings.__dict__,
        "run": {k: run_state[k] for k in ("preset", "ablation", "completed", "terms_dropped") if k in run_state}
        if run_state
        else {},
        "tables": {n: {"rows": t.rows, "notes": t.notes} for n, t in ev.tables.items()},
        "results": ev.results,
    }
    atomic_write_text(paths["report.json"], json.dumps(_jsonable(report), indent=1, default=str))
    from etlib.viz.evaluation import save_evaluation_plots  # figures belong to viz; only the CLI/report needs them

    paths |= save_evaluation_plots(ev, out)
    return paths


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def _parse_runs(items: Sequence[str]) -> dict[str, str]:
    runs = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--ablation-runs takes name=RUN pairs, got {item!r}")
        runs[name] = path
    return runs


def main(argv: list[str] | None = None, print_fn: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m etlib.evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subject", required=True, help="the processed subject the run was trained on")
    parser.add_argument("--run", required=True, help="a training run folder (etlib.train)")
    parser.add_argument("--out", required=True, help="where tables.md, table{1..4}.csv, report.json and plots go")
    parser.add_argument("--emotion-subject", help="the sample subject's emotion clip, preprocessed (Table 3 PSNR)")
    parser.add_argument("--ablation-runs", nargs="*", default=[], metavar="NAME=RUN",
                        help=f"Table 4 variants: {', '.join(n for n in Ablation.NAMES if n != 'full')}")  # fmt: skip
    parser.add_argument("--audio", nargs="*", default=[], help="extra speech files for Table 2 (any format)")
    parser.add_argument("--syncnet", help="a SyncNet checkpoint (etlib.audio.syncnet.train_syncnet)")
    parser.add_argument("--settings", help="smoke | quick | paper sizes (default: the run's preset)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda: renders, judge, SyncNet and LPIPS")
    parser.add_argument("--quiet", action="store_true")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    ev = evaluate(
        args.subject,
        args.run,
        args.out,
        emotion_subject=args.emotion_subject,
        ablation_runs=_parse_runs(args.ablation_runs),
        audio_files=args.audio,
        settings=settings_for(args.settings) if args.settings else None,
        syncnet_path=args.syncnet,
        progress=not args.quiet,
        device=args.device,
    )
    print_fn(ev.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

"""The speech side of a subject (Sec. 3.3.2, Eq. 9): an offline SyncNet and the curated TTS audio, checked.

``python -m etlib.evaluation.syncnet_check --subject DIR --out OUT [--preset quick] [--iterations N]``

1. Trains (or resumes from ``OUT/syncnet.pt``) a SyncNet on the subject's *training* frames less their last
   ``--holdout-seconds`` (8 s): lower-half mouth crops cut around the landmarks, the log-mel audio of the same
   frames (:func:`train_subject_syncnet`). The SyncNet never sees the held-out frames nor their audio.
2. Cuts the held-out frames (those last 8 s of the training split, then the whole *test* split) into 2 s
   windows with a 0.5 s hop (overlapping windows), keeps those with speech (a loudness gate), and asks of
   every SyncNet at hand (the offline one; Wav2Lip's ``lipsync_expert`` when its weights are present):

   * does it find the true audio-video offset within +-1 frame (:func:`offset_accuracy`, target >= 80 %)?
     The distance-vs-offset curve takes the real audio around the window at every offset
     (``window_scores(..., padded=False)``): ``syncnet_python``'s zero rows would favour offset 0 by themselves.
   * is Sync-C of the true audio above Sync-C of the audio delayed by 10 frames, on every window
     (:func:`shift_test`; each window scored as a clip, exactly as ``syncnet_python``)?
   The windows that lie inside the test split alone are reported apart too (``test_split_only``). The same is
   computed on speech windows of the frames SyncNet trained on, labelled as seen data (a reference only).

   Every number carries the name of the SyncNet that produced it: an offline-trained SyncNet's numbers are
   not comparable with the paper's (pretrained SyncNet [14]).
3. Speaks the ten curated sentences of Sec. S5 (:func:`curated_tts_report`) and checks what can be checked
   offline: 16 kHz output, durations, that espeak voiced every word of the sentence, the share of speech
   frames and a pitch in the human range. That is a proxy of intelligibility, not a listening test or ASR.

Everything goes to ``OUT/report.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from etlib.audio.features import log_mel
from etlib.audio.sync_metrics import (
    SyncScores,
    clip_embeddings,
    mouth_crops,
    scores_from_distances,
    scores_from_embeddings,
)
from etlib.audio.syncnet import (
    FRAMES_PER_WINDOW,
    SyncNet,
    SyncNetTraining,
    load_syncnet,
    train_syncnet,
)
from etlib.base import SAMPLE_RATE, LazyFrames, add_debug_flag, json_default, run_main
from etlib.config import PRESETS
from etlib.io import read_audio
from etlib.preprocess import SubjectDir

WINDOW_SECONDS = 2.0  # held-out windows
HOP_SECONDS = 0.5  # between the starts of overlapping held-out windows
#: the end of the training split that SyncNet does not train on (at most a quarter of that split): with the
#: test split (the last 1/11 of a clip) it gives enough held-out speech windows to measure an accuracy
HOLDOUT_SECONDS = 8.0
SHIFT_FRAMES = 10  # the "shifted audio" of the shift test
OFFSET_TOLERANCE = 1  # frames
OFFSET_TARGET = 0.8  # fraction of windows
VSHIFT = 15  # offsets searched, as syncnet_python
#: shortest window scored: syncnet_python pads the audio with zero rows for offsets past the clip's ends, so a
#: window needs at least 2 * VSHIFT + 1 five-frame windows before the padding stops deciding the argmin
MIN_WINDOW_FRAMES = 2 * VSHIFT + 5
SPEECH_SHARE = 0.5  # a window needs this share of speech frames
HUMAN_F0_HZ = (60.0, 400.0)


# ----------------------------------------------------------------------------------------------
# The subject's clip
# ----------------------------------------------------------------------------------------------


@dataclass
class SubjectClip:
    """A processed subject as SyncNet sees it: lower-half crops of every frame and the 16 kHz audio."""

    name: str
    crops: np.ndarray  # (T, h, w, 3) uint8 RGB lower-half face crops
    wave: np.ndarray  # float32 mono, 16 kHz
    fps: float
    split: dict[str, list[int]]


def load_subject_clip(
    subject: str | Path | SubjectDir, face_hw: tuple[int, int], device: torch.device | str = "cpu"
) -> SubjectClip:
    """Read landmarks, audio and split of a processed subject and cut ``face_hw`` mouth crops of its frames (on
    ``device``). The frames are read from disk a batch at a time (:class:`etlib.base.LazyFrames`): a 5-minute 512 px
    clip costs its crops (100 MB at 48 x 96), not its frames (5.9 GB)."""
    s = subject if isinstance(subject, SubjectDir) else SubjectDir(subject)
    if not s.landmarks.exists() or not s.audio.exists():
        raise FileNotFoundError(
            f"{s.root} is not a processed subject (needs landmarks.npy and audio.wav): "
            "run `python -m etlib.preprocess VIDEO OUTDIR` first"
        )
    landmarks = np.load(s.landmarks)
    n = min(s.n_frames, len(landmarks))
    crops = mouth_crops(LazyFrames(s.read_frame, n), landmarks[:n], out_hw=tuple(face_hw), device=device)
    fps = float(s.meta().get("fps", 25.0))
    return SubjectClip(s.root.resolve().name, crops, read_audio(s.audio, SAMPLE_RATE), fps, s.read_split())


def _contiguous(indices: list[int], what: str) -> tuple[int, int]:
    """``[first, last + 1)`` of a run of consecutive frame indices."""
    idx = sorted(int(i) for i in indices)
    if not idx:
        raise ValueError(f"the {what} split is empty")
    if idx[-1] - idx[0] + 1 != len(idx):
        raise ValueError(f"the {what} split is not one run of consecutive frames; SyncNet needs continuous video")
    return idx[0], idx[-1] + 1


def audio_for_frames(wave: np.ndarray, start: int, stop: int, fps: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The samples under video frames ``start .. stop - 1`` (zero-padded past the end of the audio)."""
    lo, hi = int(round(start * sr / fps)), int(round(stop * sr / fps))
    out = np.zeros(hi - lo, np.float32)
    part = wave[lo:hi]
    out[: len(part)] = part
    return out


def delay_audio(wave: np.ndarray, frames: int, fps: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``wave`` delayed by ``frames`` video frames (silence in front, same length): audio that lags."""
    n = int(round(frames * sr / fps))
    return np.concatenate([np.zeros(n, np.float32), wave])[: len(wave)]


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def syncnet_frames(clip: SubjectClip, holdout_s: float = HOLDOUT_SECONDS) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(train, held)`` frame ranges ``[first, last + 1)``: SyncNet trains on the training split less its last
    ``holdout_s`` seconds (at most a quarter of it); those frames and the test split are held out."""
    start, stop = _contiguous(clip.split["train"], "train")
    test_start, test_stop = _contiguous(clip.split["test"], "test")
    if test_start != stop:
        raise ValueError(
            f"the test split must follow the training split (train ends at {stop}, test starts {test_start})"
        )
    holdout = min(int(round(holdout_s * clip.fps)), (stop - start) // 4)
    if holdout < 0:
        raise ValueError(f"holdout_s must be >= 0, got {holdout_s}")
    return (start, stop - holdout), (stop - holdout, min(test_stop, len(clip.crops)))


def train_subject_syncnet(
    subject: str | Path | SubjectDir,
    out: str | Path,
    preset: str = "quick",
    iterations: int | None = None,
    progress: bool = True,
    clip: SubjectClip | None = None,
    holdout_s: float = HOLDOUT_SECONDS,
    device: torch.device | str = "cpu",
) -> SyncNetTraining:
    """Train the offline SyncNet (S_I, S_A of Eq. 9) on the subject's training frames less their last
    ``holdout_s`` seconds (:func:`syncnet_frames`); resumable.

    Sizes come from the preset's ``syncnet`` (:class:`etlib.config.SyncNetConfig`); ``iterations`` defaults to the preset's
    ``syncnet_iterations`` (2000 for ``paper``, which otherwise uses the pretrained expert). The checkpoint
    ``OUT/syncnet.pt`` is written as training goes; a run finds it and continues (or just loads it). The SyncNet
    trains on ``device``.
    """
    from etlib.backends import torch_threads
    from etlib.config import get_preset

    config = get_preset(preset).syncnet
    if iterations is None:
        iterations = get_preset(preset).syncnet_iterations or 2000
    clip = clip or load_subject_clip(subject, config.face_hw, device)
    (start, stop), _ = syncnet_frames(clip, holdout_s)
    wave = audio_for_frames(clip.wave, start, stop, clip.fps)
    with torch_threads():
        return train_syncnet(
            clip.crops[start:stop],
            log_mel(wave),
            fps=clip.fps,
            iterations=iterations,
            width=config.width,
            embed_dim=config.embed_dim,
            arch=config.arch,
            subject=clip.name,
            checkpoint_path=Path(out) / "syncnet.pt",
            checkpoint_every=max(1, min(100, iterations)),
            progress=progress,
            device=device,
        )


# ----------------------------------------------------------------------------------------------
# Windows, the loudness gate, offsets
# ----------------------------------------------------------------------------------------------


def frame_loudness_db(wave: np.ndarray, n_frames: int, fps: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """RMS level of each video frame's audio in dBFS, shape ``(n_frames,)``."""
    hop = sr / fps
    out = np.full(n_frames, -120.0)
    for i in range(n_frames):
        seg = wave[int(round(i * hop)) : int(round((i + 1) * hop))]
        if len(seg):
            out[i] = 10 * np.log10(np.mean(np.square(seg, dtype=np.float64)) + 1e-12)
    return out


def speech_frames(loudness_db: np.ndarray, floor_db: float = -45.0, below_peak_db: float = 30.0) -> np.ndarray:
    """Loudness gate: a frame is speech when louder than ``floor_db`` and within ``below_peak_db`` of the
    clip's loud frames (95th percentile), so both silence and faint room noise are left out."""
    if loudness_db.size == 0:
        return np.zeros(0, bool)
    return loudness_db > max(floor_db, float(np.percentile(loudness_db, 95)) - below_peak_db)


def split_windows(
    start: int, stop: int, window: int, min_frames: int = MIN_WINDOW_FRAMES, hop: float | None = None
) -> list[tuple[int, int]]:
    """``[t0, t1)`` windows of ``window`` frames in ``[start, stop)``, starting every ``hop`` frames (rounded;
    default ``window``: no overlap); a range shorter than one window gives itself when it holds
    ``min_frames``, a short tail is dropped."""
    if stop - start < window:
        return [(start, stop)] if stop - start >= max(min_frames, FRAMES_PER_WINDOW) else []
    hop = float(window if hop is None else hop)
    if hop <= 0:
        raise ValueError(f"hop must be > 0 frames, got {hop}")
    n = int((stop - window - start) // hop) + 1
    return [(start + int(round(k * hop)), start + int(round(k * hop)) + window) for k in range(n)]


def window_scores(
    face_emb: torch.Tensor,
    audio_emb: torch.Tensor,
    window: tuple[int, int],
    syncnet: str,
    vshift: int = VSHIFT,
    padded: bool = True,
) -> SyncScores:
    """Sync-E / Sync-C / offset of frames ``[t0, t1)`` from whole-clip per-window embeddings (row ``i`` is
    the 5-frame window starting at frame ``i``); only face windows lying entirely inside ``[t0, t1)`` count.

    ``padded=True`` scores the window as a clip of its own, exactly as ``syncnet_python`` (zero audio rows
    past the window's ends). ``padded=False`` takes the audio at every offset from the whole clip instead, so
    no zero row enters the curve: with unit embeddings a zero row sits at distance 1, which favours offset 0
    (no padding) or the extremes (most padding) whatever the lips do; rows whose shifted audio leaves the clip
    are left out of that offset's mean.
    """
    t0, t1 = window
    last = t1 - FRAMES_PER_WINDOW + 1
    if t0 < 0 or last <= t0 or last > len(face_emb) or len(audio_emb) != len(face_emb):
        raise ValueError(f"window {window} does not fit {len(face_emb)} embedded 5-frame windows")
    if padded:
        return scores_from_embeddings(face_emb[t0:last], audio_emb[t0:last], vshift=vshift, syncnet_name=syncnet)
    rows = torch.arange(t0, last, device=face_emb.device)
    mdist = torch.empty(2 * vshift + 1, device=face_emb.device)
    for k in range(2 * vshift + 1):  # index k is offset vshift - k: face i meets audio i - offset
        audio_rows = rows - (vshift - k)
        ok = (audio_rows >= 0) & (audio_rows < len(audio_emb))
        if not ok.any():
            raise ValueError(f"window {window} has no audio at offset {vshift - k}")
        mdist[k] = torch.pairwise_distance(face_emb[rows[ok]], audio_emb[audio_rows[ok]]).mean()
    return scores_from_distances(mdist, vshift, len(rows), syncnet)


def offset_accuracy(
    scores: list[SyncScores], true_offset: int = 0, tolerance: int = OFFSET_TOLERANCE, syncnet: str | None = None
) -> dict:
    """Share of windows whose AV offset is within ``tolerance`` frames of ``true_offset`` (``syncnet`` names
    the model when there is no window to take the name from)."""
    if not scores:
        return {"syncnet": syncnet, "value": None, "hits": 0, "n_windows": 0, "reason": "no window to score"}
    names = {s.syncnet for s in scores}
    if len(names) != 1:
        raise ValueError(f"scores come from several SyncNets {sorted(names)}; score one SyncNet at a time")
    hits = sum(abs(s.av_offset - true_offset) <= tolerance for s in scores)
    return {
        "syncnet": names.pop(),
        "value": hits / len(scores),
        "hits": int(hits),
        "n_windows": len(scores),
        "true_offset": true_offset,
        "tolerance_frames": tolerance,
        "target": OFFSET_TARGET,
        "met": hits / len(scores) >= OFFSET_TARGET,
    }


def _scores_dict(s: SyncScores) -> dict:
    return {"sync_e": s.sync_e, "sync_c": s.sync_c, "av_offset": s.av_offset, "n_windows": s.n_windows}


def shift_test(
    true: list[SyncScores], shifted: list[SyncScores], windows: list[tuple[int, int]], syncnet: str | None = None
) -> dict:
    """Sync-C of the true audio against the audio delayed by ``SHIFT_FRAMES``, window by window (each window
    scored as a clip of its own, as ``syncnet_python`` scores a clip: a dip away from offset 0 meets padded
    rows, so a SyncNet that tracks the lips gives the delayed audio a smaller Sync-C and an offset near -10)."""
    rows = [
        {
            "frames": list(w),
            "true": _scores_dict(a),
            "shifted": _scores_dict(b),
            "true_above_shifted": a.sync_c > b.sync_c,
        }
        for w, a, b in zip(windows, true, shifted, strict=True)
    ]
    wins = sum(r["true_above_shifted"] for r in rows)
    return {
        "syncnet": true[0].syncnet if true else syncnet,
        "shift_frames": SHIFT_FRAMES,
        "true_above_shifted": f"{wins}/{len(rows)}",
        "all_true_above_shifted": bool(rows) and wins == len(rows),
        "shifted_offset_found": sum(abs(b.av_offset + SHIFT_FRAMES) <= OFFSET_TOLERANCE for b in shifted),
        "mean_sync_c_true": float(np.mean([a.sync_c for a in true])) if true else None,
        "mean_sync_c_shifted": float(np.mean([b.sync_c for b in shifted])) if shifted else None,
        "windows": rows,
    }


@dataclass
class WindowEvaluation:
    """One SyncNet on one set of windows: :func:`offset_accuracy` on the unpadded curves (``offsets``),
    :func:`shift_test` on ``syncnet_python``'s clip scores of true and delayed audio (``true``, ``shifted``)."""

    syncnet: str
    windows: list[tuple[int, int]]
    true: list[SyncScores]
    shifted: list[SyncScores]
    offsets: list[SyncScores]

    def report(self) -> dict:
        acc = offset_accuracy(self.offsets, syncnet=self.syncnet)
        acc["curve"] = "audio from the whole clip at every offset (no zero padding)"
        return {
            "syncnet": self.syncnet,
            "offset_accuracy": acc,
            "shift_test": shift_test(self.true, self.shifted, self.windows, syncnet=self.syncnet),
        }


def evaluate_windows(
    clip: SubjectClip, syncnet: SyncNet, windows: list[tuple[int, int]], crops: np.ndarray | None = None
) -> WindowEvaluation:
    """Score ``windows`` of ``clip`` with ``syncnet``, on the true audio and on the audio delayed by 10 frames."""
    crops = clip.crops if crops is None else crops
    mel = log_mel(clip.wave)
    face_emb, audio_emb = clip_embeddings(crops, mel, syncnet, clip.fps)
    _, delayed_emb = clip_embeddings(crops, log_mel(delay_audio(clip.wave, SHIFT_FRAMES, clip.fps)), syncnet, clip.fps)
    n = min(len(face_emb), len(delayed_emb))
    fits = [w for w in windows if w[1] - FRAMES_PER_WINDOW + 1 <= n]
    face_emb, audio_emb, delayed_emb = face_emb[:n], audio_emb[:n], delayed_emb[:n]
    true = [window_scores(face_emb, audio_emb, w, syncnet.name) for w in fits]
    shifted = [window_scores(face_emb, delayed_emb, w, syncnet.name) for w in fits]
    offsets = [window_scores(face_emb, audio_emb, w, syncnet.name, padded=False) for w in fits]
    return WindowEvaluation(syncnet.name, fits, true, shifted, offsets)


def held_out_windows(
    clip: SubjectClip,
    window_s: float = WINDOW_SECONDS,
    hop_s: float = HOP_SECONDS,
    holdout_s: float = HOLDOUT_SECONDS,
) -> dict:
    """The frames SyncNet did not train on (:func:`syncnet_frames`: the end of the training split, then the
    test split) cut into ``window_s`` windows every ``hop_s`` seconds (overlapping), silent ones gated out.
    ``test_split_windows`` lists those lying inside the test split; says when that split is too short."""
    _, (start, stop) = syncnet_frames(clip, holdout_s)
    test_start, test_stop = _contiguous(clip.split["test"], "test")
    test_stop = min(test_stop, len(clip.crops))
    window = int(round(window_s * clip.fps))
    speech = speech_frames(frame_loudness_db(clip.wave, len(clip.crops), clip.fps))
    kept, silent = [], []
    for t0, t1 in split_windows(start, stop, window, hop=hop_s * clip.fps):
        (kept if speech[t0:t1].mean() >= SPEECH_SHARE else silent).append((t0, t1))
    info = {
        "held_out_frames": [start, stop],
        "held_out_seconds": (stop - start) / clip.fps,
        "syncnet_holdout_frames": [start, test_start],
        "test_frames": [test_start, test_stop],
        "test_seconds": (test_stop - test_start) / clip.fps,
        "window_frames": window,
        "hop_frames": hop_s * clip.fps,
        "overlapping": hop_s < window_s,
        "windows": kept,
        "test_split_windows": [w for w in kept if w[0] >= test_start],
        "skipped_silent": silent,
        "speech_share_of_held_out": float(speech[start:stop].mean()) if stop > start else 0.0,
        "speech_share_of_test": float(speech[test_start:test_stop].mean()) if test_stop > test_start else 0.0,
        "test_split_too_short": test_stop - test_start < window,
    }
    if info["test_split_too_short"]:
        info["note"] = (
            f"the test split holds {test_stop - test_start} frames ({info['test_seconds']:.2f} s), less than one "
            f"{window_s:g} s window: held-out windows come from the frames SyncNet left out of the training split; "
            "use a longer video (the paper's are 3-5 minutes)"
        )
    return info


def seen_windows(
    clip: SubjectClip, window_s: float = WINDOW_SECONDS, holdout_s: float = HOLDOUT_SECONDS
) -> list[tuple[int, int]]:
    """Speech windows of the frames SyncNet trained on (non-overlapping): a reference, not held-out evidence."""
    (start, stop), _ = syncnet_frames(clip, holdout_s)
    window = int(round(window_s * clip.fps))
    speech = speech_frames(frame_loudness_db(clip.wave, len(clip.crops), clip.fps))
    return [w for w in split_windows(start, stop, window) if speech[w[0] : w[1]].mean() >= SPEECH_SHARE]


# ----------------------------------------------------------------------------------------------
# Curated TTS audio (Sec. S5)
# ----------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+(?:'[^\W_]+)?", text.lower().replace("\u2019", "'"))


def word_coverage(text: str, spoken: list[str]) -> float:
    """Share of the sentence's words found, in order, among espeak's word events. Words are compared without
    a contraction's clitic ("she's" -> "she"): espeak's word event spans only the part before the apostrophe."""
    stem = lambda w: w.split("'")[0]  # noqa: E731
    want, got = [stem(w) for w in _words(text)], [stem(w) for label in spoken for w in _words(label)]
    j, found = 0, 0
    for w in want:
        k = next((k for k in range(j, len(got)) if got[k] == w), None)
        if k is not None:
            found, j = found + 1, k + 1
    return found / len(want) if want else 0.0


def estimate_f0(wave: np.ndarray, sr: int = SAMPLE_RATE, frame_s: float = 0.04, min_clarity: float = 0.5) -> np.ndarray:
    """F0 (Hz) of the voiced frames by normalised autocorrelation, searched in 50-500 Hz; a frame is voiced
    when its best autocorrelation peak reaches ``min_clarity`` and it is not silent."""
    n = int(frame_s * sr)
    lo, hi = int(sr / 500), int(sr / 50)
    loud = np.sqrt(np.mean(np.square(wave))) * 0.1
    f0 = []
    for s in range(0, len(wave) - n - hi, n):
        x = wave[s : s + n + hi].astype(np.float64)
        if np.sqrt(np.mean(x[:n] ** 2)) < loud:
            continue
        x = x - x.mean()
        ac = np.array([np.dot(x[:n], x[k : k + n]) for k in range(lo, hi)])
        norm = np.sqrt(np.dot(x[:n], x[:n]) * np.array([np.dot(x[k : k + n], x[k : k + n]) for k in range(lo, hi)]))
        r = ac / np.maximum(norm, 1e-12)
        k = int(np.argmax(r))
        if r[k] >= min_clarity:
            f0.append(sr / (lo + k))
    return np.array(f0)


def curated_tts_report(
    out: str | Path | None = None, voice: str = "en-us", cache_dir: str | Path | None = None
) -> dict:
    """Speak the ten curated sentences (cached) and check them offline; ``out``: also write ``tts/NN.wav``.

    Per sentence: sample rate (read back from the written wav when ``out`` is given), duration, word-event
    coverage (espeak reports a word event for every word it voiced), speech-activity ratio (20 ms frames
    above a loudness gate), median F0 of voiced frames and whether it lies in 60-400 Hz. This is an
    intelligibility *proxy*: no listener or speech recogniser judged the audio.
    """
    from etlib.audio.sentences import CURATED_SENTENCES
    from etlib.audio.tts import TTSBackendError, synthesize_with_events, voice_name

    rows = []
    try:
        speaker = voice_name(voice=voice)
    except TTSBackendError as err:
        return {"available": False, "reason": str(err)}
    for s in CURATED_SENTENCES:
        try:
            wave, events = synthesize_with_events(s.text, voice=voice, sr=SAMPLE_RATE, cache_dir=cache_dir)
        except TTSBackendError as err:
            return {"available": False, "reason": str(err)}
        sr = SAMPLE_RATE
        if out is not None:
            from scipy.io import wavfile

            path = Path(out) / "tts" / f"{s.index:02d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            wavfile.write(str(path), SAMPLE_RATE, (np.clip(wave, -1, 1) * 32767).astype(np.int16))
            sr = int(wavfile.read(str(path))[0])
        speech = speech_frames(frame_loudness_db(wave, int(len(wave) / SAMPLE_RATE * 50), 50.0))
        f0 = estimate_f0(wave)
        median_f0 = float(np.median(f0)) if len(f0) else None
        words = [e.label for e in events if e.kind == "word"]
        rows.append(
            {
                "index": s.index,
                "text": s.text,
                "sample_rate": sr,
                "duration_s": len(wave) / SAMPLE_RATE,
                "peak": float(np.max(np.abs(wave))),
                "n_words": len(_words(s.text)),
                "word_events": len(words),
                "n_phonemes": sum(e.kind == "phoneme" for e in events),
                "word_coverage": word_coverage(s.text, words) if events else None,  # espeak reports words
                "speech_activity": float(speech.mean()) if speech.size else 0.0,
                "median_f0_hz": median_f0,
                "voiced_share": len(f0) / max(1, len(wave) // int(0.04 * SAMPLE_RATE)),
                "f0_in_human_range": median_f0 is not None and HUMAN_F0_HZ[0] <= median_f0 <= HUMAN_F0_HZ[1],
            }
        )
    has_events = all(r["word_coverage"] is not None for r in rows)
    return {
        "available": True,
        "voice": speaker,
        "sentences": rows,
        "all_16khz": all(r["sample_rate"] == SAMPLE_RATE for r in rows),
        "total_duration_s": float(sum(r["duration_s"] for r in rows)),
        # only espeak reports the words it voiced; for the others the check falls to speech activity
        "all_words_voiced": all(r["word_coverage"] == 1.0 for r in rows)
        if has_events
        else all(r["speech_activity"] > 0.3 for r in rows),
        "all_f0_in_human_range": all(r["f0_in_human_range"] for r in rows),
        "intelligibility_note": (
            f"proxy only ({speaker}): "
            + ("every word voiced (espeak's word events), " if has_events else "speech activity > 30 %, ")
            + "pitch range measured; no listening test or speech recogniser was run"
        ),
    }


# ----------------------------------------------------------------------------------------------
# The whole check
# ----------------------------------------------------------------------------------------------


def _lipsync_expert(device: torch.device | str = "cpu") -> tuple[SyncNet | None, str]:
    from etlib.audio.syncnet import load_lipsync_expert
    from etlib.weights import WeightsMissingError

    try:
        return load_lipsync_expert(device), ""
    except WeightsMissingError as err:
        return None, str(err).splitlines()[0]


def evaluate_subject(
    subject: str | Path,
    out: str | Path,
    preset: str = "quick",
    iterations: int | None = None,
    tts: bool = True,
    progress: bool = True,
    holdout_s: float = HOLDOUT_SECONDS,
    device: torch.device | str = "auto",
) -> dict:
    """Train/load the offline SyncNet, score held-out windows with every SyncNet at hand, check the curated
    TTS audio; write and return ``OUT/report.json``. The SyncNets train and run on ``device`` (``"auto"``: CUDA
    when usable); frames are read a batch at a time."""
    from etlib.backends import device_label, resolve_device, torch_threads

    device = resolve_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from etlib.config import get_preset

    config = get_preset(preset).syncnet
    clip = load_subject_clip(subject, config.face_hw, device)
    start_s = time.perf_counter()
    trained = train_subject_syncnet(
        subject, out, preset, iterations, progress=progress, clip=clip, holdout_s=holdout_s, device=device
    )
    train_seconds = time.perf_counter() - start_s
    offline = load_syncnet(trained.checkpoint_path, device=device)
    held = held_out_windows(clip, holdout_s=holdout_s)
    seen = seen_windows(clip, holdout_s=holdout_s)
    report: dict = {
        "subject": clip.name,
        "subject_dir": str(Path(subject).resolve()),
        "preset": preset,
        "device": device_label(device),
        "fps": clip.fps,
        "n_frames": len(clip.crops),
        "audio_seconds": len(clip.wave) / SAMPLE_RATE,
        "syncnet_training": {
            "syncnet": offline.name,
            "checkpoint": str(trained.checkpoint_path),
            "iterations": trained.iterations,
            "seconds": train_seconds,
            "seconds_note": "wall clock of this run (about 0 when OUT/syncnet.pt was complete); the machine may be shared",
            "train_frames": list(syncnet_frames(clip, holdout_s)[0]),
            "face_hw": list(config.face_hw),
            "arch": config.arch,
            "first_loss": float(np.mean(trained.losses[:20])) if trained.losses else None,
            "last_loss": float(np.mean(trained.losses[-20:])) if trained.losses else None,
        },
        "held_out": dict(held),
        "evaluations": [],
        "seen_reference": [],
    }
    with torch_threads():
        nets: list[tuple[SyncNet, np.ndarray]] = [(offline, clip.crops)]
        expert, why = _lipsync_expert(device)
        if expert is not None:
            s = SubjectDir(subject)
            frames = LazyFrames(s.read_frame, len(clip.crops))  # read a batch at a time, never the whole clip
            crops = mouth_crops(frames, np.load(s.landmarks)[: len(frames)], out_hw=(48, 96), device=device)
            nets.append((expert, crops))
        else:
            report["lipsync_expert"] = f"not evaluated: {why}"
        for net, crops in nets:
            ev = evaluate_windows(clip, net, held["windows"], crops).report()
            test_only = evaluate_windows(clip, net, held["test_split_windows"], crops).report()
            ev["test_split_only"] = {k: test_only[k] for k in ("offset_accuracy", "shift_test")}
            report["evaluations"].append(ev)
            ref = evaluate_windows(clip, net, seen, crops).report()
            ref["note"] = "training windows: SyncNet saw these frames; a reference, not held-out evidence"
            report["seen_reference"].append(ref)
    if tts:
        report["tts"] = curated_tts_report(out)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=json_default))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etlib.evaluation.syncnet_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--subject", required=True, help="a processed subject folder (python -m etlib.preprocess)")
    parser.add_argument("--out", required=True, help="output folder: syncnet.pt, report.json, tts/*.wav")
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    parser.add_argument("--iterations", type=int, default=None, help="SyncNet iterations (default: the preset's)")
    parser.add_argument("--no-tts", action="store_true", help="skip the curated TTS check")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda: where the SyncNets train and run")
    parser.add_argument(
        "--holdout-seconds",
        type=float,
        default=HOLDOUT_SECONDS,
        help="end of the training split that SyncNet leaves out and is scored on with the test split",
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    report = evaluate_subject(
        args.subject,
        args.out,
        args.preset,
        args.iterations,
        tts=not args.no_tts,
        holdout_s=args.holdout_seconds,
        device=args.device,
    )
    summary = {"syncnet_training": report["syncnet_training"]}
    for ev in report["evaluations"]:
        acc, sh = ev["offset_accuracy"], ev["shift_test"]
        t_acc, t_sh = ev["test_split_only"]["offset_accuracy"], ev["test_split_only"]["shift_test"]
        summary[f"held-out · {ev['syncnet']}"] = {
            "offset_accuracy": acc["value"],
            "windows": acc["n_windows"],
            "true_above_shifted": sh["true_above_shifted"],
            "test_split_only": {
                "offset_accuracy": t_acc["value"],
                "windows": t_acc["n_windows"],
                "true_above_shifted": t_sh["true_above_shifted"],
            },
        }
    for ev in report["seen_reference"]:
        acc, sh = ev["offset_accuracy"], ev["shift_test"]
        summary[f"seen (training windows) · {ev['syncnet']}"] = {
            "offset_accuracy": acc["value"],
            "windows": acc["n_windows"],
            "true_above_shifted": sh["true_above_shifted"],
        }
    if "tts" in report and report["tts"].get("available"):
        t = report["tts"]
        summary["tts"] = {
            k: t[k] for k in ("all_16khz", "total_duration_s", "all_words_voiced", "all_f0_in_human_range")
        }
    print(json.dumps(summary, indent=1, default=json_default, ensure_ascii=False))
    print(f"report: {Path(args.out) / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))

"""The speech-side check (etlib.evaluation.syncnet_check): offset windows on synthetic embeddings, the loudness gate,
the TTS proxies, and the CLI end to end on the smoke subject."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from etlib.evaluation.syncnet_check import (
    SubjectClip,
    delay_audio,
    estimate_f0,
    frame_loudness_db,
    held_out_windows,
    offset_accuracy,
    shift_test,
    speech_frames,
    split_windows,
    syncnet_frames,
    window_scores,
    word_coverage,
)

SR, FPS = 16000, 25.0


def lagged_embeddings(n: int, lag: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Face embeddings of ``n`` windows and audio embeddings lagging them by ``lag`` windows
    (audio row ``i`` matches face row ``i - lag``); rows outside the clip are unrelated unit vectors."""
    g = torch.Generator().manual_seed(seed)
    pool = F.normalize(torch.randn(n + 2 * abs(lag) + 1, 16, generator=g), dim=1)
    base = abs(lag)
    face = pool[base : base + n]
    audio = pool[base - lag : base - lag + n]
    return face, audio


def test_split_windows():
    assert split_windows(0, 120, 50) == [(0, 50), (50, 100)]
    assert split_windows(10, 50, 50) == [(10, 50)]  # shorter than a window: itself...
    assert split_windows(10, 30, 50) == []  # ...unless the zero padding of +-15 offsets would dominate it
    assert split_windows(10, 13, 50, min_frames=0) == []  # not even one 5-frame SyncNet window
    # overlapping windows every 0.5 s (12.5 frames, starts rounded half to even)
    assert split_windows(0, 100, 50, hop=12.5) == [(0, 50), (12, 62), (25, 75), (38, 88), (50, 100)]
    assert split_windows(0, 99, 50, hop=12.5)[-1] == (38, 88)
    with pytest.raises(ValueError, match="hop"):
        split_windows(0, 100, 50, hop=0)


@pytest.mark.parametrize("lag", [0, 1, -1, 3, -10])
def test_window_scores_find_the_lag_of_synthetic_embeddings(lag):
    face, audio = lagged_embeddings(200, lag)
    windows = split_windows(0, 200, 50)
    scores = [window_scores(face, audio, w, "toy") for w in windows]
    assert all(s.av_offset == -lag and s.syncnet == "toy" for s in scores)
    assert all(s.n_windows == 46 for s in scores)  # 50 frames hold 46 five-frame windows
    acc = offset_accuracy(scores)
    assert acc["syncnet"] == "toy" and acc["n_windows"] == 4
    assert acc["value"] == (1.0 if abs(lag) <= 1 else 0.0) and acc["met"] == (abs(lag) <= 1)


def test_window_scores_use_only_the_windows_inside_the_range():
    face, audio = lagged_embeddings(100, 0)
    audio = audio.clone()
    audio[:50] = F.normalize(torch.randn(50, 16, generator=torch.Generator().manual_seed(5)), dim=1)
    assert window_scores(face, audio, (50, 100), "toy").av_offset == 0  # the scrambled half is left out
    with pytest.raises(ValueError, match="does not fit"):
        window_scores(face, audio, (80, 130), "toy")


def test_offset_accuracy_and_shift_test_bookkeeping():
    face, audio = lagged_embeddings(120, 0)
    delayed = torch.cat(
        [F.normalize(torch.randn(10, 16, generator=torch.Generator().manual_seed(3)), dim=1), audio[:-10]]
    )
    windows = split_windows(0, 120, 50)
    true = [window_scores(face, audio, w, "toy") for w in windows]
    shifted = [window_scores(face, delayed, w, "toy") for w in windows]
    res = shift_test(true, shifted, windows)
    assert res["syncnet"] == "toy" and res["true_above_shifted"] == "2/2" and res["all_true_above_shifted"]
    assert res["shifted_offset_found"] == 2  # the 10-frame lag is found as offset -10...
    # ...but 10 of the 46 windows then pair with padding, so Sync-C drops
    assert res["mean_sync_c_true"] > res["mean_sync_c_shifted"] > 0
    assert offset_accuracy([])["value"] is None
    other = window_scores(face, audio, windows[0], "other")
    with pytest.raises(ValueError, match="several SyncNets"):
        offset_accuracy([true[0], other])


def test_loudness_gate_and_held_out_windows():
    n_frames = 200
    t = np.arange(int(n_frames * SR / FPS)) / SR
    wave = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    wave[: int(150 * SR / FPS)] *= 1e-4  # frames 0-149 nearly silent
    loud = frame_loudness_db(wave, n_frames, FPS)
    speech = speech_frames(loud)
    assert not speech[:150].any() and speech[150:].all()
    split = {"train": list(range(0, 100)), "test": list(range(100, 200))}
    clip = SubjectClip("toy", np.zeros((n_frames, 16, 32, 3), np.uint8), wave, FPS, split)
    # Without a SyncNet hold-out and without overlap: the test split in two windows, the first one silent.
    held = held_out_windows(clip, hop_s=2.0, holdout_s=0.0)
    assert held["windows"] == [(150, 200)] and held["skipped_silent"] == [(100, 150)]
    assert held["test_split_windows"] == [(150, 200)] and not held["test_split_too_short"]
    # Default: SyncNet leaves out the training split's last 8 s, capped at a quarter (25 frames); 0.5 s hop.
    assert syncnet_frames(clip) == ((0, 75), (75, 200))
    assert syncnet_frames(clip, holdout_s=0.0) == ((0, 100), (100, 200))
    held = held_out_windows(clip)
    assert held["held_out_frames"] == [75, 200] and held["syncnet_holdout_frames"] == [75, 100]
    assert held["windows"] == [(125, 175), (137, 187), (150, 200)]  # >= half speech
    assert held["skipped_silent"] == [(75, 125), (87, 137), (100, 150), (113, 163)]
    assert held["test_split_windows"] == held["windows"] and held["overlapping"]
    clip.split = {"train": list(range(0, 160)), "test": list(range(160, 200))}
    short = held_out_windows(clip)
    assert short["test_split_too_short"] and "less than one 2 s window" in short["note"]
    assert short["windows"] == [(132, 182), (145, 195)] and short["test_split_windows"] == []
    clip.split = {"train": list(range(0, 100)), "test": list(range(120, 200))}
    with pytest.raises(ValueError, match="must follow"):
        syncnet_frames(clip)


def test_delay_audio_shifts_by_whole_frames():
    wave = np.arange(16000, dtype=np.float32)
    delayed = delay_audio(wave, 10, FPS)
    assert len(delayed) == len(wave) and np.all(delayed[:6400] == 0) and delayed[6400] == 0 and delayed[6401] == 1


def test_word_coverage_and_f0():
    assert word_coverage("She's going to buy it.", ["She", "going", "to", "buy", "it"]) == 1.0
    assert word_coverage("a b c d", ["a", "c"]) == 0.5
    assert word_coverage("We met at the café.", ["We", "met", "at", "the", "café"]) == 1.0
    t = np.arange(SR) / SR
    voice = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6)).astype(np.float32)
    f0 = estimate_f0(voice)
    assert len(f0) > 10 and abs(np.median(f0) - 150) < 5
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    assert len(estimate_f0(noise)) < len(f0) / 4  # noise is mostly unvoiced


def _finite_numbers(obj, path=""):
    """Every number in a JSON tree, with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _finite_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _finite_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


@pytest.mark.slow
def test_cli_end_to_end_on_the_smoke_subject(smoke_subject, tmp_path):
    subject = getattr(smoke_subject, "root", smoke_subject)  # preprocess() returns a SubjectDir
    out = tmp_path / "speech"
    env = {"ETLIB_TTS_CACHE": str(tmp_path / "tts_cache"), "ETLIB_TORCH_THREADS": "1"}
    cmd = [sys.executable, "-m", "etlib.evaluation.syncnet_check", "--subject", str(subject), "--out", str(out)]
    cmd += ["--preset", "smoke", "--iterations", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert (out / "syncnet.pt").is_file()
    name = f"syncnet:offline-trained(subject={subject.name})"
    assert report["syncnet_training"]["syncnet"] == name and report["syncnet_training"]["iterations"] == 4
    assert report["syncnet_training"]["arch"] == "compact" and report["syncnet_training"]["seconds"] > 0
    held = report["held_out"]
    assert held["test_split_too_short"] and "note" in held  # 60 frames: the test split is far below 2 s
    for section in ("evaluations", "seen_reference"):
        assert report[section] and report[section][0]["syncnet"] == name
        for ev in report[section]:
            assert ev["offset_accuracy"]["syncnet"] == ev["shift_test"]["syncnet"] == ev["syncnet"]
    assert report["evaluations"][0]["test_split_only"]["offset_accuracy"]["syncnet"] == name
    # the SyncNet trains on the training split less its last quarter (60 frames are far below 8 s)
    train = report["syncnet_training"]["train_frames"]
    assert train[0] == 0 and train[1] < held["test_frames"][0] and held["held_out_frames"][0] == train[1]
    assert report["seen_reference"][0]["offset_accuracy"]["n_windows"] >= 1
    for path, value in _finite_numbers(report):
        assert math.isfinite(value), path
    tts = report["tts"]
    if tts["available"]:
        assert len(tts["sentences"]) == 10 and tts["all_16khz"]
        assert all(0.5 < s["duration_s"] < 6 for s in tts["sentences"])
        assert tts["all_words_voiced"] and tts["all_f0_in_human_range"]
        assert len(list((out / "tts").glob("*.wav"))) == 10
    # Resumable: asking again for the same iterations loads the checkpoint instead of training.
    from etlib.evaluation.syncnet_check import train_subject_syncnet

    again = train_subject_syncnet(subject, out, "smoke", iterations=4, progress=False)
    assert again.iterations == 4 and len(again.losses) == 4 and again.model.name == name
    assert np.mean(again.losses[-20:]) == pytest.approx(report["syncnet_training"]["last_loss"])


def test_unpadded_curve_is_not_biased_by_zero_rows():
    """Unrelated embeddings whose distances sit below 1: syncnet_python's zero padding alone makes offset 0
    win; the unpadded curve takes real audio at every offset and does not."""
    g = torch.Generator().manual_seed(1)
    common = torch.ones(1, 16)
    face = F.normalize(common + 0.1 * torch.randn(300, 16, generator=g), dim=1)
    audio = F.normalize(common + 0.1 * torch.randn(300, 16, generator=g), dim=1)  # unrelated to the faces
    windows = split_windows(100, 300, 50)
    padded = [window_scores(face, audio, w, "toy") for w in windows]
    unpadded = [window_scores(face, audio, w, "toy", padded=False) for w in windows]
    assert offset_accuracy(padded)["value"] == 1.0  # the padding artefact
    assert offset_accuracy(unpadded)["value"] < 0.8
    lagged_face, lagged_audio = lagged_embeddings(300, 2)
    assert all(window_scores(lagged_face, lagged_audio, w, "toy", padded=False).av_offset == -2 for w in windows)

"""The real-footage benchmark's pieces that need no trained model: media found by probing (never by name),
the contact sheet and the self-check table (etlib.viz.real_footage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from etlib.io import write_video, write_wav
from etlib.viz.real_footage import contact_sheet, pick_evenly, self_check_rows


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("benchmarks/real_footage.py")


def test_media_are_told_apart_by_probing_not_by_name(tmp_path, bench):
    frames = np.zeros((10, 16, 16, 3), np.uint8)
    tone = 0.1 * np.sin(np.linspace(0, 400, 8000)).astype(np.float32)
    write_video(frames, tmp_path / "a_clip.mp4", 25, audio=tone)
    (tmp_path / "a_clip.mp4").rename(tmp_path / "talk.dat")  # a video whatever its name
    write_wav(tmp_path / "b_voice.mp4", tone)  # really a WAV
    (tmp_path / "c_notes.wav").write_text("not media")
    (tmp_path / "sub").mkdir()
    clips, speech = bench.classify_media(tmp_path)
    assert [p.name for p in clips] == ["talk.dat"]
    assert [p.name for p in speech] == ["b_voice.mp4"]


def test_no_clip_is_a_clear_error(tmp_path, bench):
    write_wav(tmp_path / "voice.wav", np.zeros(1600, np.float32))
    with pytest.raises(FileNotFoundError, match="no video"):
        bench.classify_media(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        bench.classify_media(tmp_path / "missing")


def test_unique_names_keep_colliding_stems_apart(bench):
    names = bench.unique_names([Path("x/clip.mp4"), Path("x/clip.mov"), Path("x/my talk.mp4")])
    assert list(names) == ["clip_mp4", "clip_mov", "my_talk"]


def test_choose_clip(bench):
    clips = {"a": Path("d/a.mp4"), "b": Path("d/b.mov")}
    assert bench._choose_clip(clips, None) == "a"
    assert bench._choose_clip(clips, "b.mov") == "b"
    with pytest.raises(ValueError, match="none of the clips"):
        bench._choose_clip(clips, "c")


def test_pick_evenly():
    assert pick_evenly(10, 4) == [0, 3, 6, 9]
    assert pick_evenly(3, 8) == [0, 1, 2]
    assert pick_evenly(0, 3) == []


def test_contact_sheet_draws_pairs_and_sweep(tmp_path):
    from PIL import Image

    truth = [np.full((32, 32, 3), 200, np.uint8)] * 3
    renders = [np.zeros((32, 32, 3), np.float32)] * 3
    sweep = [np.full((32, 32, 3), 90, np.uint8)] * 5
    out = contact_sheet(truth, renders, sweep, sweep_labels=["v"] * 5, title="t", out=tmp_path / "s" / "sheet.png")
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[1] > image.shape[0]  # 5 columns, 3 rows
    values = set(np.unique(image.reshape(-1, 3), axis=0).mean(1).round().astype(int).tolist())
    assert {200, 0, 90} <= values  # each row's pixels made it in
    with pytest.raises(ValueError, match="pair them"):
        contact_sheet(truth, renders[:2])
    with pytest.raises(ValueError, match="nothing to draw"):
        contact_sheet([], [])


def test_self_check_rows_mark_targets():
    clips = {
        "good": {"self_checks": {"face_share": 1.0, "reprojection_iod_pct": 4.0, "pose_jitter_deg": 0.4}},
        "shaky": {"self_checks": {"face_share": 0.9, "reprojection_iod_pct": 7.0, "pose_jitter_deg": 1.2}},
        "broken": {"error": "NoFaceError: no face"},
    }
    rows = {r["clip"]: r for r in self_check_rows(clips)}
    assert all(rows["good"][k].endswith("ok") for k in ("face_share", "reprojection_iod_pct", "pose_jitter_deg"))
    assert all(rows["shaky"][k].endswith("MISS") for k in ("face_share", "reprojection_iod_pct", "pose_jitter_deg"))
    assert rows["broken"]["error"].startswith("NoFaceError") and rows["broken"]["face_share"] == "-"


def test_spread_over_every_trained_clip(bench):
    trained = {
        "a": {"psnr": 30.0, "psnr_head": 25.0, "ssim": 0.95},
        "b": {"psnr": 27.5, "psnr_head": 26.5, "ssim": 0.93},
        "c": {"psnr": 33.0, "psnr_head": 24.0, "ssim": 0.97},
        "d": {"clip": "d.mp4", "error": "RuntimeError: stopped"},
    }
    sp = bench.spread(trained)
    assert sp["clips"] == 3 and sp["failed"] == ["d"]
    assert sp["psnr"] == {"min": 27.5, "max": 33.0, "mean": 30.17, "range": 5.5, "weakest": "b"}
    assert sp["psnr_head"]["weakest"] == "c" and sp["psnr_head"]["range"] == 2.5
    table = bench.spread_table(trained, sp)
    assert "27.50-33.00 dB (range 5.50" in table and "d                failed" in table
    assert bench.spread({"x": {"error": "boom"}}) == {"clips": 0, "failed": ["x"]}


def test_train_all_is_a_choice(bench):
    clips = {"a": Path("d/a.mp4"), "b": Path("d/b.mov")}
    assert bench._choose_clip(clips, "all") == "a"

"""data_scripts/make_sample_subject.py: a small build, its files, shapes, consistency, determinism."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from etlib.config import REPO_ROOT, S6_POINTS
from etlib.io import probe, read_audio, read_frames

SCRIPT = REPO_ROOT / "data_scripts" / "make_sample_subject.py"
ARGS = ["--size", "128", "--seconds", "4", "--emotion-seconds", "3"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("dlib", "espeakng_loader")),
        reason="needs the offline extra (dlib-bin, face-recognition-models, espeakng-loader)",
    ),
]


def _build(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *ARGS, *extra],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("subject") / "a"
    _build(out)
    return out


def _gt(out: Path, clip: str) -> dict:
    with np.load(out / "ground_truth" / f"{clip}.npz") as z:
        return {k: z[k] for k in z.files}


def test_files_and_shapes(subject):
    meta = json.loads((subject / "sample_subject.json").read_text())
    assert meta["params"]["seed"] == 0 and meta["params"]["size"] == 128
    assert meta["clips"]["talking"]["frames"] == 100 and meta["clips"]["emotion"]["frames"] == 75
    assert json.loads((subject / "ground_truth" / "README.json").read_text())["ground_truth/<clip>.npz"]
    for clip, n in (("talking", 100), ("emotion", 75)):
        gt = _gt(subject, clip)
        assert gt["intrinsics"].shape == (3, 3)
        assert gt["poses"].shape == (n, 4, 4)
        assert gt["landmarks_2d"].shape == (n, 68, 2)
        assert gt["landmarks_3d"].shape == (68, 3)
        for key in ("mouth_open", "blink", "times", "loudness"):
            assert gt[key].shape == (n,), key
        assert gt["va"].shape == (n, 2)
        assert gt["audio"].shape == (int(n / 25 * 16000),)
        assert str(gt["transcript"])
        # poses are proper rotations within +-10 degrees
        R = gt["poses"][:, :3, :3]
        np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
        assert np.all(np.abs(gt["euler_yaw_pitch_roll"]) < np.deg2rad(10))
        assert np.all((gt["landmarks_2d"] > 0) & (gt["landmarks_2d"] < 128))


def test_pose_and_intrinsics_reproduce_rigid_landmarks(subject):
    gt = _gt(subject, "talking")
    rigid = [27, 28, 29, 30, 36, 39, 42, 45]  # nose bridge and eye corners: untouched by speech and blinks
    X = gt["landmarks_3d"][rigid]
    cam = np.einsum("tij,nj->tni", gt["poses"][:, :3, :3], X) + gt["poses"][:, None, :3, 3]
    uv = np.einsum("ij,tnj->tni", gt["intrinsics"], cam)
    np.testing.assert_allclose(uv[..., :2] / uv[..., 2:], gt["landmarks_2d"][:, rigid], atol=1e-6)


def test_video_decodes_with_audio_in_sync(subject):
    for clip, n in (("talking", 100), ("emotion", 75)):
        info = probe(subject / f"{clip}.mp4")
        assert info.size == (128, 128)
        assert info.video.n_frames == n and info.video.fps == pytest.approx(25.0)
        assert info.audio is not None and abs(info.audio.duration - info.video.duration) <= 1 / 25
    assert len(read_frames(subject / "talking.mp4")) == 100


def test_mouth_follows_the_loudness_of_the_soundtrack(subject):
    gt = _gt(subject, "talking")
    audio = read_audio(subject / "talking.mp4", sr=16000)  # the decoded track, not the stored one
    hop = 16000 // 25
    rms = np.array([np.sqrt(np.mean(audio[i * hop : (i + 1) * hop] ** 2)) for i in range(100)])
    assert np.corrcoef(gt["mouth_open"], rms)[0, 1] > 0.5
    assert gt["mouth_open"].max() > 0.15 and gt["mouth_open"].min() < 0.03


def test_blinks_close_the_eyes_in_the_pixels(subject):
    gt = _gt(subject, "talking")
    closed = np.nonzero(gt["blink"] >= 0.99)[0]
    opened = np.nonzero(gt["blink"] == 0)[0]
    assert len(closed) >= 1
    frames = read_frames(subject / "talking.mp4").astype(np.float64)

    def eye_darkness(i):  # dark pupils and lashes show while the eye is open
        lm = gt["landmarks_2d"][i]
        vals = []
        for a, b in ((36, 42), (42, 48)):
            x0, y0 = np.floor(lm[a:b].min(0)).astype(int)
            x1, y1 = np.ceil(lm[a:b].max(0)).astype(int)
            vals.append(frames[i, y0 : y1 + 1, x0 : x1 + 1].mean())
        return -np.mean(vals)

    assert np.mean([eye_darkness(i) for i in closed]) < np.mean([eye_darkness(i) for i in opened]) - 5


def test_emotion_clip_visits_the_s6_points(subject):
    gt = _gt(subject, "emotion")
    for k, (v, a, _) in enumerate(S6_POINTS):
        held = gt["va_point_index"] == k
        assert held.any(), k
        np.testing.assert_allclose(gt["va"][held], np.broadcast_to([v, a], (held.sum(), 2)), atol=1e-9)
    assert np.all(_gt(subject, "talking")["va"] == 0)
    # expressions differ between points: happy smiles, sad frowns
    names = list(gt["expression_names"])
    ctrl = gt["expression_controls"]
    happy = ctrl[gt["va_point_index"] == 0].mean(0)
    sad = ctrl[gt["va_point_index"] == 4].mean(0)
    assert happy[names.index("smile")] > sad[names.index("smile")] + 0.3
    assert sad[names.index("frown")] > happy[names.index("frown")] + 0.3


def test_rebuild_is_skipped_and_seed_is_deterministic(subject, tmp_path):
    stamp = (subject / "talking.mp4").stat().st_mtime_ns
    res = _build(subject)
    assert "up to date" in res.stdout
    assert (subject / "talking.mp4").stat().st_mtime_ns == stamp

    other = tmp_path / "b"
    _build(other)
    for clip in ("talking", "emotion"):
        a, b = _gt(subject, clip), _gt(other, clip)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{clip}:{key}")

    # another seed moves blinks and head elsewhere (checked on the generator's own tracks)
    sys.path.insert(0, str(REPO_ROOT / "data_scripts"))
    from sample_subject_motion import blink_track, head_track

    b0 = blink_track(100, 25, np.random.default_rng(0))
    assert not np.array_equal(b0, blink_track(100, 25, np.random.default_rng(1)))
    np.testing.assert_array_equal(b0, blink_track(100, 25, np.random.default_rng(0)))
    assert not np.allclose(head_track(100, 25, np.random.default_rng(0)), head_track(100, 25, np.random.default_rng(1)))

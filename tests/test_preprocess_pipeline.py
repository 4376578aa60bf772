"""The preprocessing pipeline end to end on a small sample subject, its resume, and bad inputs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from etlib.config import get_preset
from etlib.io import MediaError, NoAudioStreamError, probe, read_audio, read_frames, write_video
from etlib.preprocess import NoFaceError, SubjectDir, preprocess

QUICK_SHORT = get_preset("smoke").with_overrides(resolution=128)


@pytest.fixture(scope="module")
def processed(small_sample_subject, tmp_path_factory):
    out = tmp_path_factory.mktemp("subject")
    return preprocess(small_sample_subject / "talking.mp4", out, QUICK_SHORT, progress=False)


@pytest.mark.slow
def test_sample_subject_layout_and_ground_truth_targets(processed):
    s = processed
    n = s.n_frames
    assert n == 60  # the smoke preset caps frames
    assert len(list(s.frames.glob("*.jpg"))) == n
    for name in ("face", "mouth", "teeth", "head", "torso", "background"):
        assert len(list(s.mask_dir(name).glob("*.png"))) == n
    assert np.load(s.landmarks).shape == (n, 68, 2)
    assert np.load(s.audio_features).shape[0] == n
    assert np.load(s.va).shape == (n, 2)
    assert len(read_audio(s.audio)) == n * 640
    K, w2c = s.cameras()
    assert w2c.shape == (n, 4, 4) and K[0, 2] == 64
    split = s.read_split()
    assert split["test"][-1] == n - 1 and split["train"] == list(range(n - len(split["test"])))
    assert abs(len(split["train"]) / len(split["test"]) - 10) < 1.5
    meta = s.meta()
    for step in ("frames", "audio", "landmarks", "pose", "masks", "normals", "aus", "va", "split", "report"):
        assert meta["steps"][step]["backend"]
    gt = json.loads(s.report.read_text())["ground_truth"]
    assert gt["landmark_nme_pct"] <= 5.0
    assert gt["rotation_error_deg"] <= 3.0
    assert gt["mouth_iou"] >= 0.6
    assert gt["au45_blink_corr"] is None or gt["au45_blink_corr"] >= 0.7


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_outputs(small_sample_subject, tmp_path):
    video = small_sample_subject / "talking.mp4"
    reference = preprocess(video, tmp_path / "reference", "smoke", progress=False)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "etlib.preprocess", str(video), str(out), "--preset", "smoke", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill it once it is past the audio step
        if (out / "meta.json").exists() and "audio" in json.loads((out / "meta.json").read_text()).get("steps", {}):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    killed = SubjectDir(out)
    assert "report" not in killed.meta().get("steps", {}), "the run finished before it could be killed"
    preprocess(video, out, "smoke", progress=False)
    assert killed.meta()["steps"].keys() == reference.meta()["steps"].keys()
    np.testing.assert_array_equal(np.load(killed.landmarks), np.load(reference.landmarks))
    np.testing.assert_array_equal(np.load(killed.audio_features), np.load(reference.audio_features))
    for i in (0, 30, 59):
        np.testing.assert_array_equal(killed.read_frame(i), reference.read_frame(i))
        np.testing.assert_array_equal(killed.read_mask("mouth", i), reference.read_mask("mouth", i))
    assert not list(out.glob(".*partial"))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="video not found"):
        preprocess(tmp_path / "nope.mp4", tmp_path / "out", "smoke", progress=False)


def test_not_a_video(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("these are not frames")
    with pytest.raises(MediaError, match="not a media file"):
        preprocess(bad, tmp_path / "out", "smoke", progress=False)


def test_no_audio_track(small_sample_subject, tmp_path):
    frames = read_frames(small_sample_subject / "talking.mp4", max_frames=10)
    silent = tmp_path / "silent.mp4"
    write_video(iter(frames), silent, fps=25)
    with pytest.raises(NoAudioStreamError, match="no audio track"):
        preprocess(silent, tmp_path / "out", "smoke", progress=False)
    assert not (tmp_path / "out" / "frames").exists()


def test_faceless_frames_are_listed_and_earlier_steps_kept(small_sample_subject, tmp_path):
    src = small_sample_subject / "talking.mp4"
    frames = read_frames(src, max_frames=40)
    frames[12:15] = 128  # three grey frames
    audio = read_audio(src, sr=16000)[: 40 * 640]
    video = tmp_path / "gap.mp4"
    write_video(iter(frames), video, fps=25, audio=audio, sr=16000)
    out = tmp_path / "out"
    with pytest.raises(NoFaceError, match="12-14"):
        preprocess(video, out, "smoke", progress=False)
    s = SubjectDir(out)
    assert s.step_done("frames") and s.step_done("audio") and not s.step_done("landmarks")
    preprocess(video, out, "smoke", allow_missing_faces=True, steps=["landmarks"], progress=False)
    assert s.meta()["steps"]["landmarks"]["filled_frames"] == "12-14"


def test_30fps_video_with_44k_stereo_audio_is_retimed(small_sample_subject, tmp_path):
    src = small_sample_subject / "talking.mp4"
    frames = read_frames(src, max_frames=50, fps=30)  # 30 fps copy of the first 1.67 s
    audio = read_audio(src, sr=44100)[: int(50 / 30 * 44100)]
    stereo = np.stack([audio, 0.5 * audio], axis=1)
    video = tmp_path / "v30.mp4"
    write_video(iter(frames), video, fps=30, audio=stereo, sr=44100)
    assert abs(probe(video).video.fps - 30) < 0.01 and probe(video).audio.sample_rate == 44100
    s = preprocess(video, tmp_path / "out", "smoke", steps=["frames", "audio"], progress=False)
    meta = s.meta()
    assert meta["retimed_to_25fps"] and meta["fps"] == 25
    assert abs(s.n_frames - 50 / 30 * 25) <= 1
    assert probe(s.audio).audio.sample_rate == 16000 and probe(s.audio).audio.channels == 1


def test_unknown_step_and_wrong_order(small_sample_subject, tmp_path):
    with pytest.raises(ValueError, match="unknown steps"):
        preprocess(small_sample_subject / "talking.mp4", tmp_path / "o", "smoke", steps=["faces"], progress=False)
    with pytest.raises(RuntimeError, match="run it first"):
        preprocess(small_sample_subject / "talking.mp4", tmp_path / "o", "smoke", steps=["pose"], progress=False)


@pytest.mark.slow
def test_small_face_in_a_portrait_hevc_clip_is_found_and_cropped(small_sample_subject, tmp_path):
    """A standing person filmed on a phone: 1080x1920 HEVC, the face about a tenth of the frame's width. At the
    first detection pass (320 px for the longer side) that face is ~18 px wide, far below dlib HOG's ~80 px;
    the detector searches finer scales until it finds it, and the crop window lands on it."""
    from etlib.io._ffmpeg import ffmpeg_exe

    src, video = small_sample_subject / "talking.mp4", tmp_path / "portrait.mp4"
    x, y, side = 610, 540, 240  # where the 192-px sample frame lands, scaled to 240 px (face ~105 px wide)
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), "-t", "2",
           "-vf", f"scale={side}:{side},pad=1080:1920:{x}:{y}:color=0x607080",
           "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-tag:v", "hvc1",
           "-c:a", "aac", str(video)]  # fmt: skip
    subprocess.run(cmd, check=True)
    info = probe(video)
    assert (info.video.width, info.video.height, info.video.codec) == (1080, 1920, "hevc")
    s = preprocess(video, tmp_path / "out", "smoke", steps=["frames", "audio", "landmarks"], progress=False)
    window = s.meta()["crop"]
    face_x, face_y = x + side / 2, y + side * 0.5  # the sample subject's face sits about mid-frame
    assert window["x0"] < face_x < window["x0"] + window["side"]
    assert window["y0"] < face_y < window["y0"] + window["side"]
    assert 150 < window["side"] < 400  # sized to the face (2.2 face boxes), not to the frame
    lm = np.load(s.root / "landmarks.npy")
    assert np.isfinite(lm).all()  # a face on every frame of the crop

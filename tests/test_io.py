"""etlib.io: probing, streaming reads, re-timing, audio conversion, writing with audio, errors, rotation-tagged and
non-square-pixel videos decoded upright at their displayed size."""

from __future__ import annotations

import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

from etlib.io import (
    MediaError,
    NoAudioStreamError,
    NotAVideoError,
    ffmpeg_exe,
    iter_frames,
    probe,
    read_audio,
    read_frames,
    write_video,
    write_wav,
)


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clip30(tmp_path_factory) -> Path:
    """2 s of 64x48 video at 30 fps with 44.1 kHz stereo audio (440 Hz left, 1000 Hz right)."""
    path = tmp_path_factory.mktemp("io") / "clip30.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=30:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100:duration=2",
        "-filter_complex", "[1:a][2:a]join=inputs=2:channel_layout=stereo[a]",
        "-map", "0:v", "-map", "[a]", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path),
    )  # fmt: skip
    return path


def _grey_frames(n: int, h: int = 48, w: int = 64):
    """Frame i is uniformly grey at level 4 * i: its content tells its index."""
    for i in range(n):
        yield np.full((h, w, 3), 4 * i, np.uint8)


def test_probe_reports_size_rate_and_audio(clip30):
    info = probe(clip30)
    assert info.size == (64, 48)
    assert info.video.n_frames == 60
    assert info.video.fps == pytest.approx(30.0, abs=1e-6)
    assert info.video.nominal_fps == pytest.approx(30.0)
    assert not info.video.is_vfr
    assert info.video.duration == pytest.approx(2.0, abs=1e-6)
    assert info.audio.sample_rate == 44100
    assert info.audio.channels == 2
    assert info.audio.duration == pytest.approx(2.0, abs=0.03)
    assert info.duration == pytest.approx(2.0, abs=0.05)


def test_probe_detects_variable_frame_rate(tmp_path):
    path = tmp_path / "vfr.mp4"
    # the first 10 frames 1/30 s apart, the rest 1/10 s apart
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=30:duration=1",
        "-vf", "setpts='if(lt(N,10),N/30,10/30+(N-10)/10)/TB'", "-fps_mode", "vfr",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    info = probe(path)
    assert info.video.is_vfr
    assert info.video.n_frames == 30
    assert info.audio is None
    assert info.video.fps < 20  # 30 frames over about 2.4 s


def test_iter_frames_streams_one_frame_at_a_time(clip30):
    gen = iter_frames(clip30)
    assert isinstance(gen, types.GeneratorType)
    first = next(gen)
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8
    gen.close()  # stopping early ends ffmpeg cleanly
    frames = read_frames(clip30, size=(32, 24), max_frames=7)
    assert frames.shape == (7, 24, 32, 3)
    assert read_frames(clip30, size=40).shape == (60, 40, 40, 3)


def test_write_video_with_audio_keeps_durations_in_sync(tmp_path):
    sr = 16000
    t = np.arange(int(1.7 * sr)) / sr  # longer than the 37 frames (1.48 s): it gets cut
    audio = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    path = tmp_path / "out" / "a.mp4"
    n = write_video(_grey_frames(37), path, fps=25, audio=audio, sr=sr)
    assert n == 37
    info = probe(path)
    assert info.video.codec == "h264" and info.audio.codec == "aac"
    assert info.video.n_frames == 37
    assert abs(info.audio.duration - info.video.duration) <= 1 / 25
    back = read_audio(path, sr=sr)
    assert abs(len(back) - 37 / 25 * sr) <= sr / 25
    spectrum = np.abs(np.fft.rfft(back[2000:18000]))
    assert np.fft.rfftfreq(16000, 1 / sr)[np.argmax(spectrum)] == pytest.approx(300, abs=2)
    frames = read_frames(path)
    levels = frames.reshape(len(frames), -1).mean(axis=1)
    np.testing.assert_allclose(levels, 4 * np.arange(37), atol=2.5)  # lossy but faithful
    assert not list(path.parent.glob(".*tmp*"))  # no temporary left behind


def test_retime_30_to_25_fps_keeps_picture_in_time(tmp_path):
    path = tmp_path / "g30.mp4"
    write_video(_grey_frames(60), path, fps=30)
    frames = read_frames(path, fps=25)
    assert len(frames) == 50  # 2 s at 25 fps
    levels = frames.reshape(50, -1).mean(axis=1) / 4
    # output frame j shows the input frame nearest in time: index j * 30 / 25
    assert np.max(np.abs(levels - np.arange(50) * 30 / 25)) <= 1.0


def test_read_audio_converts_44k_stereo_to_16k_mono(clip30):
    mono = read_audio(clip30, sr=16000)
    assert mono.dtype == np.float32 and mono.ndim == 1
    assert abs(len(mono) - 32000) <= 400
    spectrum = np.abs(np.fft.rfft(mono[1000:17000]))
    freqs = np.fft.rfftfreq(16000, 1 / 16000)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert peaks == pytest.approx([440, 1000], abs=2)  # both channels are in the downmix
    stereo = read_audio(clip30, sr=22050, mono=False)
    assert stereo.shape[1] == 2 and abs(len(stereo) - 44100) <= 600


def test_write_wav_round_trip(tmp_path):
    sr = 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)).astype(np.float32)
    path = write_wav(tmp_path / "x.wav", x, sr)
    y = read_audio(path, sr=sr)
    np.testing.assert_allclose(y, x, atol=1e-4)
    info = probe(path)
    assert info.video is None and info.audio.sample_rate == sr and info.audio.channels == 1


def test_errors_name_the_problem(tmp_path, clip30):
    with pytest.raises(FileNotFoundError, match="no such media file"):
        probe(tmp_path / "missing.mp4")
    with pytest.raises(FileNotFoundError):
        read_audio(tmp_path / "missing.wav")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    with pytest.raises(MediaError, match="not a media file"):
        probe(text)
    wav = write_wav(tmp_path / "tone.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(NotAVideoError, match="no video stream"):
        next(iter_frames(wav))
    silent = tmp_path / "silent.mp4"
    write_video(_grey_frames(5), silent, fps=25)
    with pytest.raises(NoAudioStreamError, match="no audio track"):
        read_audio(silent)
    with pytest.raises(ValueError, match="even frame size"):
        write_video([np.zeros((47, 64, 3), np.uint8)], tmp_path / "odd.mp4", fps=25)


def test_write_video_is_atomic(tmp_path):
    path = tmp_path / "broken.mp4"

    def frames():
        yield from _grey_frames(3)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_video(frames(), path, fps=25)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def _tag_rotation(src: Path, dst: Path, degrees: int) -> None:
    """Copy ``src`` with a display-rotation tag of ``degrees`` counter-clockwise (what phones write)."""
    try:
        _ffmpeg("-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(dst))
    except subprocess.CalledProcessError:  # ffmpeg before 6.1: the old stream tag (clockwise)
        _ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", f"rotate={-degrees % 360}", str(dst))


def test_rotation_tagged_clip_decodes_upright_at_the_displayed_size(tmp_path):
    src = tmp_path / "upright.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=0.4", "-c:v", "libx264", "-qp", "0", str(src))
    upright = read_frames(src).astype(int)
    for degrees, turns in ((90, 1), (-90, -1), (180, 2)):
        tagged = tmp_path / f"rot{degrees}.mp4"
        _tag_rotation(src, tagged, degrees)
        info = probe(tagged)
        assert info.video.coded_size == (96, 64)
        assert info.video.rotation == degrees % 360
        assert info.size == ((64, 96) if degrees % 180 else (96, 64))
        frames = read_frames(tagged).astype(int)
        want = np.rot90(upright, turns, axes=(1, 2))
        assert frames.shape == want.shape
        assert np.abs(frames - want).mean() < 1.0  # the same pixels, turned as every player shows them
        small = next(iter_frames(tagged, size=(32, 48))) if degrees % 180 else next(iter_frames(tagged, size=(48, 32)))
        assert small.shape[:2] == ((48, 32) if degrees % 180 else (32, 48))


def test_non_square_pixels_decode_at_the_displayed_size(tmp_path):
    src = tmp_path / "anamorphic.mp4"  # 96x64 coded, each pixel twice as wide as high: displayed 192x64
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=0.4", "-vf", "setsar=2/1", "-c:v", "libx264",
            str(src))  # fmt: skip
    info = probe(src)
    assert info.video.sar == 2 and info.size == (192, 64)
    assert read_frames(src).shape[1:3] == (64, 192)
    rotated = tmp_path / "anamorphic_rotated.mp4"
    _tag_rotation(src, rotated, 90)
    assert probe(rotated).size == (64, 192) and read_frames(rotated).shape[1:3] == (192, 64)


def test_empty_and_cut_short_files_are_named_for_what_they_are(tmp_path, clip30):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=r"is empty \(0 bytes\)"):
        probe(empty)
    data = clip30.read_bytes()
    moov_last = tmp_path / "cut.mp4"  # libx264 via ffmpeg writes the index (moov atom) at the end
    moov_last.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match="cut short or damaged.*moov atom") as info:
        probe(moov_last)
    assert "@ 0x" not in str(info.value)  # no ffmpeg addresses in a message meant for a person

"""Clapperboard test (issue 11): a white flash and a 1 kHz beep at the same instants stay within one frame
(40 ms at 25 fps) of each other through the preprocessing steps that make ``frames/`` and ``audio.wav``.

The clips are generated here with the bundled ffmpeg: constant 30 fps, variable frame rate (a 60 fps
source thinned to irregular frame intervals, kept with their timestamps), and streams that start at
different times (video late, audio late), as phone and screen recordings do. The synthetic clips have no
face, so the steps are driven directly: the re-timed crop stream of ``step_frames`` and ``step_audio``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from etlib.base import FPS, SAMPLE_RATE
from etlib.config import get_preset
from etlib.io import ffmpeg_exe, probe, read_audio
from etlib.preprocess.crop import CropWindow, iter_cropped_frames
from etlib.preprocess.pipeline import _imwrite, step_audio
from etlib.preprocess.subject import SubjectDir, frame_name

SIZE = 64
DURATION = 4.0
LAG = 0.3  # seconds one stream starts after the other in the *_late clips
EVENTS = np.array([0.5, 1.5, 2.5, 3.5])  # flash and beep onsets (container time), each 0.2 s long
ONE_FRAME = 1 / FPS


def _event(t: str, shift: float) -> str:
    return f"between(mod({t}+{shift},1.0),0.5,0.7)"


def _flash(fps: int, duration: float, shift: float = 0.0) -> str:
    """lavfi source: black frames, white while an event is on (source time + ``shift``)."""
    return f"color=c=black:s={SIZE}x{SIZE}:r={fps}:d={duration},geq=lum='255*{_event('T', shift)}':cb=128:cr=128"


def _beep(rate: int, duration: float, shift: float = 0.0) -> str:
    """lavfi source: a stereo 1 kHz tone while an event is on (source time + ``shift``)."""
    tone = f"0.5*sin(2*PI*1000*t)*{_event('t', shift)}"
    return f"aevalsrc='{tone}|{tone}':s={rate}:d={duration}"


def _ffmpeg(*args: str) -> None:
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def make_clip(folder: Path, kind: str) -> Path:
    """A clapperboard mp4 (H.264 + AAC): ``cfr30``, ``vfr``, ``video_late`` (the picture starts ``LAG`` s
    after the sound) or ``audio_late`` (the sound starts ``LAG`` s after the picture)."""
    out = folder / f"{kind}.mp4"
    enc = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    if kind == "cfr30":
        _ffmpeg("-f", "lavfi", "-i", _flash(30, DURATION), "-f", "lavfi", "-i", _beep(44100, DURATION), *enc, str(out))
    elif kind == "vfr":
        # keep frames n % 6 in {0, 1, 3} of a 60 fps source: intervals of 1, 2 and 3 sixtieths of a second;
        # each event starts on a multiple of 6, so a kept frame shows every flash's onset
        keep = r"select='lt(mod(n\,6)\,2)+eq(mod(n\,6)\,3)'"
        _ffmpeg("-f", "lavfi", "-i", _flash(60, DURATION), "-f", "lavfi", "-i", _beep(48000, DURATION),
                "-vf", keep, "-fps_mode", "vfr", *enc, str(out))  # fmt: skip
    elif kind in ("video_late", "audio_late"):
        video_late = kind == "video_late"
        # the late stream is made LAG shorter with its events LAG earlier, then delayed by LAG (-itsoffset):
        # in container time both streams hold the events at EVENTS
        flash = _flash(30, DURATION - LAG, LAG) if video_late else _flash(30, DURATION)
        beep = _beep(44100, DURATION) if video_late else _beep(44100, DURATION - LAG, LAG)
        v, a = folder / f"{kind}_v.mp4", folder / f"{kind}_a.wav"
        _ffmpeg("-f", "lavfi", "-i", flash, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(v))
        _ffmpeg("-f", "lavfi", "-i", beep, str(a))
        v_in = ["-itsoffset", str(LAG), "-i", str(v)] if video_late else ["-i", str(v)]
        a_in = ["-i", str(a)] if video_late else ["-itsoffset", str(LAG), "-i", str(a)]
        _ffmpeg(*v_in, *a_in, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", str(out))
    else:
        raise ValueError(f"unknown clip kind {kind!r}")
    return out


def flash_onsets(frames: np.ndarray) -> np.ndarray:
    """Seconds (frame index / 25) of the frames where the picture turns white."""
    bright = frames.reshape(len(frames), -1).mean(1) > 128
    return (np.nonzero(bright[1:] & ~bright[:-1])[0] + 1) / FPS


def beep_onsets(wave: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Seconds where the tone starts (peak level over 1 ms blocks crosses 0.1)."""
    block = sr // 1000
    level = np.abs(wave[: len(wave) // block * block]).reshape(-1, block).max(1) > 0.1
    return (np.nonzero(level[1:] & ~level[:-1])[0] + 1) * block / sr


def preprocess_sync_steps(video: Path, root: Path) -> SubjectDir:
    """``frames/`` as ``step_frames`` makes it (the re-timed 25 fps crop stream; the whole frame is the crop,
    since the clip has no face to centre on), then the real ``step_audio``."""
    subject = SubjectDir(root)
    subject.frames.mkdir(parents=True)
    window = CropWindow(0, 0, SIZE, SIZE, SIZE)
    n = 0
    for n, frame in enumerate(iter_cropped_frames(video, window, SIZE, FPS), start=1):
        _imwrite(subject.frames / frame_name(n - 1, "jpg"), frame)
    subject.update_meta(n_frames=n, resolution=SIZE, fps=FPS)
    step_audio(video, subject, get_preset("smoke"), progress=False)
    return subject


@pytest.mark.parametrize("kind", ["cfr30", "vfr", "video_late", "audio_late"])
def test_flash_and_beep_stay_within_one_frame(tmp_path, kind):
    video = make_clip(tmp_path, kind)
    info = probe(video)
    if kind == "vfr":
        assert info.video.is_vfr, "the generated clip must really have a variable frame rate"
        rows = np.diff(np.sort(np.unique(_packet_times(video, "video"))))
        assert rows.max() > 2.5 * rows.min()  # intervals of 1/60 and 3/60 s
    else:
        assert not info.video.is_vfr and info.video.fps == pytest.approx(30, abs=0.01)

    subject = preprocess_sync_steps(video, tmp_path / "subject")
    frames = np.stack([subject.read_frame(i) for i in range(subject.n_frames)])
    wave = read_audio(subject.audio, sr=SAMPLE_RATE)
    assert len(wave) == subject.n_frames * SAMPLE_RATE // int(FPS)  # sound as long as the picture

    flashes, beeps = flash_onsets(frames), beep_onsets(wave)
    assert len(flashes) == len(EVENTS) and len(beeps) == len(EVENTS), (flashes, beeps)
    np.testing.assert_allclose(beeps, EVENTS, atol=0.005)  # the sound is not shifted on its own
    assert np.abs(flashes - beeps).max() <= ONE_FRAME, f"flash {flashes} vs beep {beeps} (s)"


def _packet_times(video: Path, stream: str) -> np.ndarray:
    """Presentation times (s) of a stream's packets (``"video"`` or ``"audio"``), as ``probe`` lists them."""
    from etlib.io.probe import _packet_times as packets

    rows, _ = packets(video, has_video=stream == "video", has_audio=stream == "audio")[stream]
    return rows[:, 0]


def test_audio_late_clip_really_starts_its_sound_late(tmp_path):
    """So that the sync test above checks the silence padded before a late sound track, not a no-op."""
    video = make_clip(tmp_path, "audio_late")
    assert _packet_times(video, "audio").min() > LAG - 0.05
    assert _packet_times(video, "video").min() < 0.01

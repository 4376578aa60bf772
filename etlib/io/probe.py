"""``probe``: what a media file holds (ffprobe's job, done with the bundled ffmpeg).

The header that ``ffmpeg -i`` prints gives codecs, size, sample rate and channels; a packet listing
(``-c copy -f framecrc``, no decoding) gives exact frame counts, per-stream durations and the frame
timestamps from which a variable frame rate is detected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from etlib.io._ffmpeg import MediaError, check_input, ffmpeg_failed, run_ffmpeg

_CHANNEL_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6}
_CHANNEL_LAYOUTS.update({"6.1": 7, "7.1": 8, "5.0(side)": 5, "5.1(side)": 6, "downmix": 2})


@dataclass(frozen=True)
class VideoStreamInfo:
    """The first video stream. ``fps`` is the mean rate of the frame timestamps (frames / span);
    ``nominal_fps`` is the container's declared rate; ``is_vfr`` is True when frame intervals vary."""

    codec: str
    width: int
    height: int
    fps: float
    nominal_fps: float | None
    n_frames: int
    duration: float
    is_vfr: bool


@dataclass(frozen=True)
class AudioStreamInfo:
    """The first audio stream: codec, sample rate (Hz), channel count and duration (s)."""

    codec: str
    sample_rate: int
    channels: int
    duration: float


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found. ``duration`` is the container's (seconds)."""

    path: Path
    duration: float
    video: VideoStreamInfo | None
    audio: AudioStreamInfo | None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the video stream."""
        if self.video is None:
            raise MediaError(f"{self.path} has no video stream")
        return self.video.width, self.video.height


@dataclass(frozen=True)
class _Header:
    duration: float | None
    video: dict | None
    audio: dict | None


def _parse_header(path: Path) -> _Header:
    """Parse the stream lines of ``ffmpeg -i path``."""
    proc = run_ffmpeg(["-i", str(path)])  # exits 1 ("no output file") by design; stderr is the header
    text = proc.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        raise MediaError(f"not a media file ffmpeg can read: {path}\n" + "\n".join(text.strip().splitlines()[-3:]))
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    duration = int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3]) if dur else None
    video = audio = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"Stream #0:(\d+)\S*: Video: (\w+)", line)
        if m and video is None and "attached pic" not in line:
            size = re.search(r", (\d{2,5})x(\d{2,5})", line)
            fps = re.search(r", ([\d.]+k?) fps", line)
            tbr = re.search(r", ([\d.]+k?) tbr", line)
            rate = fps or tbr
            nominal = None
            if rate:
                nominal = float(rate[1][:-1]) * 1000 if rate[1].endswith("k") else float(rate[1])
            video = {"index": int(m[1]), "codec": m[2], "width": int(size[1]) if size else 0}
            video.update(height=int(size[2]) if size else 0, nominal_fps=nominal)
        m = re.match(r"Stream #0:(\d+)\S*: Audio: (\w+)", line)
        if m and audio is None:
            rate = re.search(r", (\d+) Hz", line)
            fields = [f.strip() for f in line.split(",")]
            channels = 0
            for f in fields:
                n = re.fullmatch(r"(\d+) channels(?: \(.*\))?", f)
                channels = int(n[1]) if n else _CHANNEL_LAYOUTS.get(f, channels)
                if channels:
                    break
            audio = {"index": int(m[1]), "codec": m[2], "sample_rate": int(rate[1]) if rate else 0}
            audio["channels"] = channels
    return _Header(duration, video, audio)


def _packet_times(path: Path, has_video: bool, has_audio: bool) -> dict[str, tuple[np.ndarray, float]]:
    """Timestamps (pts, duration) in seconds of every packet of the first video / audio stream, and
    the stream's time base in seconds."""
    maps = (["-map", "0:v:0"] if has_video else []) + (["-map", "0:a:0"] if has_audio else [])
    proc = run_ffmpeg(["-i", str(path), *maps, "-c", "copy", "-f", "framecrc", "-"])
    if proc.returncode != 0:
        raise ffmpeg_failed(f"list the packets of {path}", proc)
    names = (["video"] if has_video else []) + (["audio"] if has_audio else [])
    tbs: dict[int, Fraction] = {}
    rows: dict[int, list[tuple[int, int]]] = {i: [] for i in range(len(names))}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("#tb "):
            idx, tb = line[4:].split(":")
            tbs[int(idx)] = Fraction(tb.strip())
        elif line and not line.startswith("#"):
            parts = [p.strip() for p in line.split(",")]
            rows[int(parts[0])].append((int(parts[2]), int(parts[3])))
    out = {}
    for i, name in enumerate(names):
        arr = np.asarray(rows[i], dtype=np.float64).reshape(-1, 2)
        tb = float(tbs.get(i, Fraction(1)))
        out[name] = (arr * tb, tb)
    return out


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe a media file: video size, frame count, mean and nominal fps, whether the frame rate
    varies, and the audio stream's sample rate, channels and duration.

    Raises FileNotFoundError for a missing file and :class:`MediaError` for a file ffmpeg cannot read.
    """
    path = check_input(path)
    header = _parse_header(path)
    if header.video is None and header.audio is None:
        raise MediaError(f"{path} holds neither a video nor an audio stream")
    packets = _packet_times(path, header.video is not None, header.audio is not None)
    video = audio = None
    if header.video is not None:
        rows, tb = packets["video"]
        pts = np.sort(rows[:, 0])
        n = len(pts)
        last = rows[np.argmax(rows[:, 0]), 1] if n else 0.0
        span = float(pts[-1] - pts[0] + last) if n else 0.0
        deltas = np.diff(pts)
        is_vfr = False
        if len(deltas) > 1:
            med = float(np.median(deltas))
            # a 1-tick jitter comes from rounding to the time base; more than 5 % is a real change
            is_vfr = bool(np.any(np.abs(deltas - med) > max(0.05 * med, 2 * tb)))
        fps = n / span if span > 0 else float(header.video["nominal_fps"] or 0.0)
        video = VideoStreamInfo(
            codec=header.video["codec"],
            width=header.video["width"],
            height=header.video["height"],
            fps=fps,
            nominal_fps=header.video["nominal_fps"],
            n_frames=n,
            duration=span,
            is_vfr=is_vfr,
        )
    if header.audio is not None:
        a = packets["audio"][0]
        adur = float(a[:, 0].max() + a[np.argmax(a[:, 0]), 1] - max(a[:, 0].min(), 0.0)) if len(a) else 0.0
        audio = AudioStreamInfo(
            codec=header.audio["codec"],
            sample_rate=header.audio["sample_rate"],
            channels=header.audio["channels"],
            duration=adur,
        )
    duration = (
        header.duration
        if header.duration is not None
        else max(video.duration if video else 0.0, audio.duration if audio else 0.0)
    )
    return MediaInfo(path=path, duration=float(duration), video=video, audio=audio)

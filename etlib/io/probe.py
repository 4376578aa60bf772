"""``probe``: what a media file holds (ffprobe's job, done with the bundled ffmpeg).

The header that ``ffmpeg -i`` prints gives codecs, size, sample rate and channels; a packet listing
(``-c copy -f framecrc``, no decoding) gives exact frame counts, per-stream durations and the frame
timestamps from which a variable frame rate is detected.

Sizes are the *displayed* ones: phones store pixels sideways with a display-rotation tag (ffmpeg and every
player show them upright), and some cameras store non-square pixels (a sample aspect ratio, SAR, other than
1:1). :func:`probe` reports the upright, square-pixel size, which is what :func:`etlib.io.iter_frames` decodes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from etlib.io._ffmpeg import MediaError, check_input, clean_ffmpeg_line, ffmpeg_failed, run_ffmpeg

_CHANNEL_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6}
_CHANNEL_LAYOUTS.update({"6.1": 7, "7.1": 8, "5.0(side)": 5, "5.1(side)": 6, "downmix": 2})


@dataclass(frozen=True)
class VideoStreamInfo:
    """The first video stream. ``width`` and ``height`` are the displayed size (upright, square pixels);
    ``coded_size`` is how the pixels are stored, ``rotation`` the display rotation in degrees
    (counter-clockwise, a multiple of 90) and ``sar`` the sample aspect ratio. ``fps`` is the mean rate of the
    frame timestamps (frames / span); ``nominal_fps`` is the container's declared rate; ``is_vfr`` is True
    when frame intervals vary."""

    codec: str
    width: int
    height: int
    fps: float
    nominal_fps: float | None
    n_frames: int
    duration: float
    is_vfr: bool
    coded_size: tuple[int, int] = (0, 0)
    rotation: int = 0
    sar: Fraction = Fraction(1)


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


def displayed_size(width: int, height: int, rotation: int = 0, sar: Fraction = Fraction(1)) -> tuple[int, int]:
    """The upright, square-pixel size of ``width`` x ``height`` coded pixels: the width stretched by the
    sample aspect ratio (rounded to an even number, as video encoders need), then both swapped for a quarter
    turn."""
    if sar > 0 and sar != 1:
        width = max(2, 2 * round(width * sar / 2))
    return (height, width) if rotation % 180 == 90 else (width, height)


def _rotation(lines: list[str]) -> int:
    """The display rotation (degrees counter-clockwise, 0/90/180/270) in a stream's side data or metadata
    lines: ``Display Matrix: rotation of -90.00 degrees`` (newer ffmpeg), ``displaymatrix: rotation of ...``
    or ``rotate : 90`` (older ffmpeg; clockwise)."""
    for line in lines:
        m = re.search(r"rotation of (-?[\d.]+) degrees", line, re.IGNORECASE)
        if m:
            return int(round(float(m[1]) / 90.0)) * 90 % 360
    for line in lines:
        m = re.match(r"\s*rotate\s*:\s*(-?\d+)", line)
        if m:
            return -int(round(int(m[1]) / 90.0)) * 90 % 360
    return 0


def _unreadable(path: Path, ffmpeg_text: str) -> str:
    """Why ffmpeg cannot open ``path``, and what to do, from its messages: an empty file, an mp4 cut short
    (its index, the "moov atom", is written last and is missing), or not media at all."""
    reason = next(
        (
            clean_ffmpeg_line(line).split(": ", 1)[-1]
            for line in ffmpeg_text.splitlines()
            if "Error opening input" in line
        ),
        "ffmpeg found no audio or video stream",
    )
    if path.stat().st_size == 0:
        return f"{path} is empty (0 bytes): the file was not written or its copy failed; give the video itself"
    if "moov atom not found" in ffmpeg_text and "misdetection possible" not in ffmpeg_text:
        return (
            f"{path} is cut short or damaged: its index (the mp4 'moov atom') is missing, as after an interrupted "
            "recording, download or copy; copy or export the video again"
        )
    return (
        f"not a media file ffmpeg can read: {path} ({reason}); check that it is the video itself, not another "
        "kind of file with a video's name"
    )


def _parse_header(path: Path) -> _Header:
    """Parse the stream lines of ``ffmpeg -i path`` (a video stream's following lines give its rotation)."""
    proc = run_ffmpeg(["-i", str(path)])  # exits 1 ("no output file") by design; stderr is the header
    text = proc.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        raise MediaError(_unreadable(path, text))
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    duration = int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3]) if dur else None
    video = audio = None
    lines = text.splitlines()
    for k, line in enumerate(lines):
        line = line.strip()
        m = re.match(r"Stream #0:(\d+)\S*: Video: (\w+)", line)
        if m and video is None and "attached pic" not in line:
            following = []
            for later in lines[k + 1 :]:
                if re.match(r"\s*(Stream #|Input #|Output #)", later) or not later.startswith("   "):
                    break
                following.append(later)
            size = re.search(r", (\d{2,5})x(\d{2,5})", line)
            sar_m = re.search(r"\[SAR (\d+):(\d+)", line)
            sar = Fraction(int(sar_m[1]), int(sar_m[2])) if sar_m and int(sar_m[2]) and int(sar_m[1]) else Fraction(1)
            fps = re.search(r", ([\d.]+k?) fps", line)
            tbr = re.search(r", ([\d.]+k?) tbr", line)
            rate = fps or tbr
            nominal = None
            if rate:
                nominal = float(rate[1][:-1]) * 1000 if rate[1].endswith("k") else float(rate[1])
            coded = (int(size[1]), int(size[2])) if size else (0, 0)
            rotation = _rotation(following)
            width, height = displayed_size(*coded, rotation, sar) if size else (0, 0)
            video = {"index": int(m[1]), "codec": m[2], "width": width, "height": height, "nominal_fps": nominal}
            video.update(coded_size=coded, rotation=rotation, sar=sar)
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
            coded_size=header.video["coded_size"],
            rotation=header.video["rotation"],
            sar=header.video["sar"],
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

"""Streaming video reading and writing through the bundled ffmpeg.

Frames travel as raw RGB24 through a pipe, one at a time: a long clip never sits in memory whole. They come
out upright at the displayed size: ffmpeg applies a display-rotation tag (phone clips store pixels sideways),
and non-square pixels are resampled to square ones (:func:`etlib.io.probe.displayed_size`).
Re-timing to a target rate uses ffmpeg's ``fps`` filter, which drops or repeats frames by their
timestamps, so that frame ``i`` of the output shows the picture at time ``i / fps`` and stays in step
with the audio track.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from etlib.io._ffmpeg import (
    NotAVideoError,
    atomic_output,
    check_input,
    ffmpeg_exe,
    ffmpeg_failed,
    run_ffmpeg,
)
from etlib.io.audio import write_wav
from etlib.io.probe import _parse_header


def _output_size(src_w: int, src_h: int, size: int | tuple[int, int] | None) -> tuple[int, int]:
    if size is None:
        return src_w, src_h
    if isinstance(size, int):
        return size, size
    w, h = size
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive (width, height), got {size}")
    return int(w), int(h)


def iter_frames(
    path: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield the frames of a video one by one as ``(H, W, 3) uint8`` RGB arrays.

    Args:
        path: a video file.
        size: resize to ``(width, height)`` (an int means square); None keeps the displayed size (upright,
            square pixels).
        fps: re-time to this constant rate with ffmpeg's fps filter (frames dropped or repeated by
            timestamp, so the picture stays in sync with the audio); None keeps the source frames.
        max_frames: stop after this many frames.
    """
    path = check_input(path)
    header = _parse_header(path)
    if header.video is None:
        raise NotAVideoError(f"not a video: ffmpeg finds no video stream in {path}")
    width, height = _output_size(header.video["width"], header.video["height"], size)
    # ffmpeg turns rotation-tagged frames upright itself (before this filter chain), so after it a frame is
    # the coded size, swapped for a quarter turn; the scale below brings it to the size asked for.
    rotation = header.video["rotation"]
    coded_w, coded_h = header.video["coded_size"]
    upright = (coded_h, coded_w) if rotation % 180 == 90 else (coded_w, coded_h)
    filters = []
    if fps is not None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        filters.append(f"fps={fps!r}")
    if (width, height) != upright:
        filters.append(f"scale={width}:{height}:flags=area")
    if header.video["sar"] != 1:
        filters.append("setsar=1")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path)]
    cmd += ["-map", "0:v:0", "-an", "-sn"]
    if filters:
        cmd += ["-vf", ",".join(filters)]
    if fps is None:
        cmd += ["-fps_mode", "passthrough"]  # one output frame per decoded frame, even when VFR
    if max_frames is not None:
        cmd += ["-frames:v", str(int(max_frames))]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = width * height * 3
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=frame_bytes)
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
        proc.stdout.close()
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise ffmpeg_failed(f"decode {path}", subprocess.CompletedProcess(cmd, proc.returncode, b"", err))
    finally:
        if proc.poll() is None:  # the caller stopped early: end ffmpeg
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream and not stream.closed:
                stream.close()


def read_frames(path: str | os.PathLike, **kwargs) -> np.ndarray:
    """All frames of a (short) video as one ``(T, H, W, 3) uint8`` array; see :func:`iter_frames`."""
    frames = list(iter_frames(path, **kwargs))
    if not frames:
        raise NotAVideoError(f"no frames decoded from {path}")
    return np.stack(frames)


def _as_uint8_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) RGB or (H, W) grey, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        if not np.issubdtype(frame.dtype, np.floating):
            raise ValueError(f"frames must be uint8 or float in [0, 1], got {frame.dtype}")
        frame = np.round(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(frame)


def write_video(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike,
    fps: float,
    audio: np.ndarray | None = None,
    sr: int = 16000,
    *,
    crf: int = 18,
    preset: str = "medium",
    audio_bitrate: str = "128k",
) -> int:
    """Write frames (``(H, W, 3)`` uint8 RGB, or float in [0, 1]) to an mp4 (libx264, yuv420p) and mux
    ``audio`` (float samples in [-1, 1] at ``sr`` Hz, mono ``(N,)`` or ``(N, C)``) in as AAC.

    The audio is padded with silence or cut to the video's length (``n_frames / fps``), so picture
    and sound have the same duration. The file appears atomically (temporary file, then rename).
    Returns the number of frames written.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    it = iter(frames)
    try:
        first = _as_uint8_rgb(next(it))
    except StopIteration:
        raise ValueError(f"no frames to write to {path}") from None
    h, w = first.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {w}x{h}: crop or pad by one pixel")
    with atomic_output(path) as tmp, tempfile.TemporaryDirectory(dir=path.parent) as work:
        video_only = Path(work) / "video.mp4"
        cmd = [ffmpeg_exe(), "-hide_banner", "-y", "-loglevel", "error", "-f", "rawvideo"]
        cmd += ["-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", repr(float(fps)), "-i", "-"]
        cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]
        cmd += ["-movflags", "+faststart", str(video_only if audio is not None else tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        n = 0
        try:
            for frame in _chain(first, it):
                frame = _as_uint8_rgb(frame)
                if frame.shape != first.shape:
                    raise ValueError(f"frame {n} has shape {frame.shape}, the first had {first.shape}")
                proc.stdin.write(frame.tobytes())
                n += 1
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()
            err = proc.stderr.read()
            proc.stderr.close()
            if proc.wait() != 0:
                raise ffmpeg_failed(f"encode {path}", subprocess.CompletedProcess(cmd, proc.returncode, b"", err))
        if audio is not None:
            wav = Path(work) / "audio.wav"
            write_wav(wav, _fit_length(np.asarray(audio, dtype=np.float32), round(n / fps * sr)), sr)
            args = ["-i", str(video_only), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0"]
            args += ["-c:v", "copy", "-c:a", "aac", "-b:a", audio_bitrate, "-movflags", "+faststart", str(tmp)]
            done = run_ffmpeg(args)
            if done.returncode != 0:
                raise ffmpeg_failed(f"mux audio into {path}", done)
    return n


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _fit_length(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Pad with silence or cut ``audio`` (``(N,)`` or ``(N, C)``) to ``n_samples``."""
    if len(audio) >= n_samples:
        return audio[:n_samples]
    pad = [(0, n_samples - len(audio))] + [(0, 0)] * (audio.ndim - 1)
    return np.pad(audio, pad)

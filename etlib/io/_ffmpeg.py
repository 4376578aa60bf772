"""The ffmpeg binary that ships inside ``imageio-ffmpeg`` (no system ffmpeg is assumed), and the
errors that every reader in :mod:`etlib.io` raises."""

from __future__ import annotations

import os
import re
import subprocess
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path


class MediaError(ValueError):
    """A file exists but is not usable media (not a video, no audio, unreadable)."""


class NotAVideoError(MediaError):
    """ffmpeg finds no video stream in the file."""


class NoAudioStreamError(MediaError):
    """ffmpeg finds no audio stream in the file."""


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable bundled with ``imageio-ffmpeg`` (``$IMAGEIO_FFMPEG_EXE`` wins)."""
    try:
        import imageio_ffmpeg
    except ImportError as err:  # pragma: no cover - a core dependency
        raise ImportError("etlib.io needs imageio-ffmpeg: pip install imageio-ffmpeg") from err
    return imageio_ffmpeg.get_ffmpeg_exe()


def check_input(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path, raising FileNotFoundError when it is missing or a folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such media file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"expected a media file, got a folder: {path}")
    return path


def run_ffmpeg(args: list[str], *, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ffmpeg with ``args`` (quiet banner, no interaction) and return the finished process."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-y", *(["-nostdin"] if stdin is None else []), *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, check=False)


def clean_ffmpeg_line(line: str) -> str:
    """An ffmpeg message without its component-and-address prefix (``[in#0 @ 0x55d0...] ``)."""
    return re.sub(r"^\s*(\[[^\]]* @ 0x[0-9a-f]+\]\s*)+", "", line).strip()


def ffmpeg_failed(what: str, proc: subprocess.CompletedProcess) -> MediaError:
    """A MediaError carrying the last lines ffmpeg wrote to stderr."""
    lines = [clean_ffmpeg_line(line) for line in proc.stderr.decode("utf-8", "replace").strip().splitlines()]
    tail = "\n".join(line for line in lines[-6:] if line)
    return MediaError(f"ffmpeg failed to {what} (exit {proc.returncode}):\n{tail}")


@contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path beside ``path`` (same suffix, so ffmpeg picks the format) and move it
    over ``path`` only when the block finishes without an error: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()

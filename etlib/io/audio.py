"""Audio reading (any file ffmpeg can read: wav, mp3, the audio track of a video) and WAV writing."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from etlib.io._ffmpeg import NoAudioStreamError, atomic_output, check_input, ffmpeg_failed, run_ffmpeg


def read_audio(path: str | os.PathLike, sr: int = 16000, mono: bool = True) -> np.ndarray:
    """Decode the first audio stream of ``path``, resampled to ``sr`` Hz, as float32 in [-1, 1].

    Any sample rate and channel count is accepted; ``mono=True`` averages the channels (ffmpeg's
    downmix) and returns ``(N,)``, otherwise ``(N, C)``. Raises FileNotFoundError for a missing file
    and :class:`NoAudioStreamError` for a file without audio.
    """
    from etlib.io.probe import _parse_header

    path = check_input(path)
    header = _parse_header(path)
    if header.audio is None:
        raise NoAudioStreamError(f"no audio track in {path}: pass a file with sound, or a .wav beside it")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    channels = 1 if mono else max(header.audio["channels"], 1)
    # first_pts=0 pads silence before a track that starts after the file does (and trims samples before
    # it), so sample k plays at k / sr on the same clock as the video frames: picture and sound stay in sync
    args = ["-i", str(path), "-map", "0:a:0", "-vn", "-af", "aresample=async=1:first_pts=0"]
    args += ["-ac", str(channels), "-ar", str(int(sr))]
    proc = run_ffmpeg([*args, "-f", "f32le", "-acodec", "pcm_f32le", "-"])
    if proc.returncode != 0:
        raise ffmpeg_failed(f"decode the audio of {path}", proc)
    samples = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    return samples if mono else samples.reshape(-1, channels)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sr: int = 16000) -> Path:
    """Write float samples in [-1, 1] (``(N,)`` mono or ``(N, C)``) as 16-bit PCM WAV, atomically."""
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise ValueError(f"audio must be (N,) or (N, channels), got shape {audio.shape}")
    if np.issubdtype(audio.dtype, np.integer):
        pcm = audio.astype(np.int16)
    else:
        pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    path = Path(path)
    with atomic_output(path) as tmp, wave.open(str(tmp), "wb") as f:
        f.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        f.setsampwidth(2)
        f.setframerate(int(sr))
        f.writeframes(pcm.tobytes())
    return path

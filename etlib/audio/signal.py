"""Waveform conventions shared by every audio feature extractor: mono float samples, 16 kHz, 25 fps frames."""

from __future__ import annotations

import numpy as np
import torch

from etlib.base import SAMPLE_RATE


def as_mono_float(wave: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return ``wave`` as a 1-D float64 array in [-1, 1] (int16 PCM is rescaled)."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(
            f"expected a mono waveform of shape (n_samples,), got shape {wave.shape}; "
            "mix the channels down first, e.g. wave.mean(axis=1)"
        )
    if wave.dtype == np.int16:
        return wave.astype(np.float64) / 32768.0
    if not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(f"waveform dtype {wave.dtype} not understood: pass float samples in [-1, 1] or int16")
    return wave.astype(np.float64)


def check_sample_rate(sr: int) -> None:
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sample rate must be a positive integer number of Hz, got {sr!r}")


def require_16k(sr: int) -> None:
    check_sample_rate(sr)
    if sr != SAMPLE_RATE:
        raise ValueError(
            f"audio features expect {SAMPLE_RATE} Hz audio (80 mel frames a second), got {sr} Hz; "
            f"resample first, e.g. scipy.signal.resample_poly(wave, {SAMPLE_RATE}, {sr})"
        )


def n_video_frames(n_samples: int, sr: int = SAMPLE_RATE, fps: float = 25.0) -> int:
    """Number of whole video frames that ``n_samples`` of audio cover."""
    return int(np.floor(n_samples * fps / sr + 1e-6))

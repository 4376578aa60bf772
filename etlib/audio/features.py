"""Log-mel audio features: the Wav2Lip / lip-sync-expert preprocessing, in numpy and torch.

The offline counterpart of the paper's audio features [22] (HuBERT/DeepSpeech, see README's table) and the audio input of
SyncNet (Eq. 9). Constants follow Wav2Lip's ``hparams.py`` / ``audio.py``: 16 kHz audio, pre-emphasis
0.97, an 800-point STFT with a 200-sample hop (12.5 ms) and an 800-sample Hann window, an 80-band
Slaney mel filterbank from 55 to 7600 Hz, amplitude in dB minus a 20 dB reference level, clipped at
-100 dB and scaled symmetrically to [-4, 4].

That gives 80 mel frames a second: 3.2 mel frames per 25 fps video frame, and 16 mel frames (0.2 s)
per 5-frame SyncNet window. Arrays are ``(n_mels, n_mel_frames)`` like Wav2Lip's ``melspectrogram``.

No librosa or torchaudio: the STFT is ``torch.stft`` with librosa 0.7's defaults as Wav2Lip used them
(``center=True``, reflect padding, periodic Hann window), the filterbank is librosa's Slaney formula.
"""

from __future__ import annotations

import numpy as np
import torch

from etlib.audio.signal import as_mono_float, check_sample_rate, n_video_frames, require_16k
from etlib.base import SAMPLE_RATE

MEL_FPS = 80  # mel frames per second at 16 kHz with a 200-sample hop
SYNC_WINDOW = 16  # mel frames seen by SyncNet: 0.2 s, five 25 fps video frames
MAX_ABS_VALUE = 4.0  # symmetric normalisation range [-4, 4]
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
PREEMPHASIS = 0.97
#: the normalised value of silence (amplitude at or below -100 dB)
SILENCE = -MAX_ABS_VALUE


# Slaney's mel scale: 200/3 Hz a mel below 1 kHz, then logarithmic steps of ln(6.4)/27 a mel.
_SLANEY_HZ_PER_MEL = 200.0 / 3
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    log_part = _SLANEY_MIN_LOG_MEL + np.log(np.maximum(freq, 1e-10) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return np.where(freq >= _SLANEY_MIN_LOG_HZ, log_part, freq / _SLANEY_HZ_PER_MEL)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    log_part = _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (mels - _SLANEY_MIN_LOG_MEL))
    return np.where(mels >= _SLANEY_MIN_LOG_MEL, log_part, _SLANEY_HZ_PER_MEL * mels)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank, shape ``(n_mels, n_fft // 2 + 1)``.

    The same matrix as ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``:
    triangles between ``n_mels + 2`` points evenly spaced on the Slaney mel scale, each scaled by
    ``2 / bandwidth`` so that every filter has the same area.
    """
    check_sample_rate(sr)
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    fft_freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]
    return weights


def preemphasis(wave: np.ndarray, k: float = PREEMPHASIS) -> np.ndarray:
    """``y[n] = x[n] - k x[n-1]`` (``scipy.signal.lfilter([1, -k], [1], x)``, as in Wav2Lip)."""
    out = wave.copy()
    out[1:] -= k * wave[:-1]
    return out


def stft_magnitude(wave: np.ndarray, n_fft: int, hop: int, win: int) -> np.ndarray:
    """``|STFT|``, shape ``(n_fft // 2 + 1, 1 + len(wave) // hop)``; frames centred, reflect-padded."""
    if win > n_fft:
        raise ValueError(f"window length {win} exceeds n_fft {n_fft}")
    if len(wave) <= n_fft // 2:
        raise ValueError(f"waveform too short: {len(wave)} samples, need more than {n_fft // 2} for one STFT frame")
    x = torch.from_numpy(wave)
    window = torch.hann_window(win, periodic=True, dtype=torch.float64, device=x.device)
    spec = torch.stft(
        x,
        n_fft=n_fft,
        hop_length=hop,
        win_length=win,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return spec.abs().numpy()


def log_mel(
    wave: np.ndarray | torch.Tensor,
    sr: int = SAMPLE_RATE,
    n_fft: int = 800,
    hop: int = 200,
    win: int = 800,
    n_mels: int = 80,
    fmin: float = 55.0,
    fmax: float = 7600.0,
) -> np.ndarray:
    """Wav2Lip's normalised log-mel spectrogram, float32 ``(n_mels, 1 + n_samples // hop)`` in [-4, 4].

    ``S = clip(8 (dB(mel(|STFT(preemph(x))|)) - 20 + 100) / 100 - 4, -4, 4)`` with
    ``dB(a) = 20 log10(max(a, 1e-5))``. This is the SyncNet audio input of Eq. 9.
    """
    check_sample_rate(sr)
    x = as_mono_float(wave)
    if not np.all(np.isfinite(x)):
        raise ValueError("waveform contains NaN or infinite samples")
    magnitude = stft_magnitude(preemphasis(x), n_fft=n_fft, hop=hop, win=win)
    mel = mel_filterbank(sr, n_fft, n_mels, fmin, fmax) @ magnitude
    min_level = 10.0 ** (MIN_LEVEL_DB / 20.0)
    db = 20.0 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    normed = 2 * MAX_ABS_VALUE * (db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(normed, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_start(frame_idx: int, fps: float = 25.0) -> int:
    """First mel frame of video frame ``frame_idx``: Wav2Lip's ``int(80 * frame_idx / fps)``."""
    return int(MEL_FPS * (frame_idx / float(fps)))


def _padded_slice(mel: np.ndarray, start: int, length: int) -> np.ndarray:
    """``mel[:, start:start + length]``, filled with silence where it leaves the spectrogram."""
    out = np.full((mel.shape[0], length), SILENCE, dtype=mel.dtype)
    lo, hi = max(start, 0), min(start + length, mel.shape[1])
    if hi > lo:
        out[:, lo - start : hi - start] = mel[:, lo:hi]
    return out


def mel_window_for_frame(mel: np.ndarray, frame_idx: int, fps: float = 25.0, window: int = SYNC_WINDOW) -> np.ndarray:
    """The ``(n_mels, window)`` mel window that starts at video frame ``frame_idx`` (SyncNet's audio
    input for frames ``frame_idx .. frame_idx + 4``). Past the end of the audio it is padded with
    silence (-4)."""
    if mel.ndim != 2:
        raise ValueError(f"mel must be (n_mels, n_mel_frames), got shape {mel.shape}")
    if frame_idx < 0:
        raise ValueError(f"frame index must be >= 0, got {frame_idx}")
    start = mel_start(frame_idx, fps)
    if start >= mel.shape[1]:
        raise ValueError(
            f"frame {frame_idx} starts at mel frame {start}, after the audio's end ({mel.shape[1]} mel frames)"
        )
    return _padded_slice(mel, start, window)


def mel_windows(
    mel: np.ndarray, frame_indices: np.ndarray | list[int], fps: float = 25.0, window: int = SYNC_WINDOW
) -> np.ndarray:
    """Stack of :func:`mel_window_for_frame` for many frames, shape ``(N, n_mels, window)``."""
    return np.stack([mel_window_for_frame(mel, int(i), fps, window) for i in frame_indices])


def per_frame_features(
    wave: np.ndarray | torch.Tensor,
    sr: int = SAMPLE_RATE,
    fps: float = 25.0,
    n_frames: int | None = None,
    window: int = SYNC_WINDOW,
    time_bins: int = 4,
    mel_bands: int = 16,
) -> np.ndarray:
    """Per-video-frame audio features ``(n_frames, time_bins * mel_bands)`` for the talking-head model.

    Choice (the offline stand-in for DeepSpeech/HuBERT features [22]): for frame ``t`` take the
    ``window`` (16, i.e. 200 ms) mel frames centred on the middle of the frame, ``(t + 0.5) / fps``,
    so each frame hears 100 ms before and after it like AD-NeRF/ER-NeRF's 16-step DeepSpeech windows.
    Average-pool that ``80 x 16`` window to ``mel_bands x time_bins`` (default 16 x 4: 5 mel bands and
    50 ms a cell) and flatten band-major: a compact 64-d vector in Wav2Lip's [-4, 4] units. Silence
    pads the window beyond either end of the audio. The model stacks 8 consecutive rows (Sec. 3.2).

    ``n_frames`` defaults to the whole frames the audio covers; more frames are padded with silence.
    """
    require_16k(sr)
    n_mels = 80
    if n_mels % mel_bands or window % time_bins:
        raise ValueError(
            f"mel_bands ({mel_bands}) must divide {n_mels} and time_bins ({time_bins}) must divide window ({window})"
        )
    mel = log_mel(wave, sr=sr)
    total = n_video_frames(len(as_mono_float(wave)), sr, fps) if n_frames is None else int(n_frames)
    if total <= 0:
        raise ValueError(f"need at least one video frame, got n_frames={total}")
    feats = np.empty((total, mel_bands * time_bins), dtype=np.float32)
    for t in range(total):
        centre = int(round(MEL_FPS * (t + 0.5) / fps))
        win = _padded_slice(mel, centre - window // 2, window)
        pooled = win.reshape(mel_bands, n_mels // mel_bands, time_bins, window // time_bins).mean(axis=(1, 3))
        feats[t] = pooled.reshape(-1)
    return feats


def audio_features(
    wave: np.ndarray | torch.Tensor,
    sr: int = SAMPLE_RATE,
    fps: float = 25.0,
    n_frames: int | None = None,
    prefer: str = "auto",
) -> tuple[np.ndarray, str]:
    """Per-video-frame audio features ``(n_frames, dim)`` and the name of the backend that made them.

    HuBERT large (:mod:`etlib.audio.hubert`, ``dim`` 2048) when ``transformers`` and its weights are present
    (``prefer='auto'`` or ``'hubert'``), else the log-mel windows of :func:`per_frame_features` (``dim`` 64,
    ``prefer='logmel'``). The model's audio input size follows ``dim``.
    """
    from etlib.backends import choose

    if prefer not in ("auto", "hubert", "logmel"):
        raise ValueError(f"prefer must be 'auto', 'hubert' or 'logmel', not {prefer!r}")
    if prefer == "hubert" or (prefer == "auto" and choose("audio_features").accelerated):
        from etlib.audio.hubert import hubert_per_frame_features

        return hubert_per_frame_features(wave, sr, fps, n_frames), "HuBERT large (50 Hz, 2 states a frame)"
    return per_frame_features(wave, sr, fps, n_frames), "log-mel windows (etlib.audio.features)"


def _htk_hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def _htk_mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mels, dtype=np.float64) / 2595.0) - 1.0)


def syncnet_mfcc(wave: np.ndarray | torch.Tensor, sr: int = SAMPLE_RATE) -> np.ndarray:
    """MFCCs exactly as ``syncnet_python`` computes them: ``python_speech_features.mfcc(audio, sr)``.

    Input of the pretrained SyncNet v2 evaluator of Sync-E/Sync-C (Tables 1-3). Returns float64
    ``(13, n_frames)``, 100 frames a second (25 ms frames, 10 ms step): pre-emphasis 0.97,
    rectangular frames zero-padded at the end, 512-point power spectrum, 26 HTK-mel triangles on FFT
    bins, log, orthonormal DCT-II, lifter 22, coefficient 0 replaced by the log frame energy.
    ``syncnet_python`` reads the wav with ``scipy.io.wavfile``, so int16 samples are used unscaled
    (floats in [-1, 1] are scaled by 32768 to match).
    """
    require_16k(sr)
    from scipy.fft import dct

    x = as_mono_float(wave) * 32768.0
    x = np.append(x[0], x[1:] - PREEMPHASIS * x[:-1])
    frame_len, step, nfft, nfilt = int(0.025 * sr + 0.5), int(0.01 * sr + 0.5), 512, 26
    n = 1 if len(x) <= frame_len else 1 + int(np.ceil((len(x) - frame_len) / step))
    x = np.concatenate([x, np.zeros((n - 1) * step + frame_len - len(x))])
    frames = x[np.arange(frame_len)[None, :] + step * np.arange(n)[:, None]]
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)

    mel_points = np.linspace(_htk_hz_to_mel(0.0), _htk_hz_to_mel(sr / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * _htk_mel_to_hz(mel_points) / sr)
    k = np.arange(nfft // 2 + 1)[None, :]
    left, centre, right = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    rising = np.where((k >= left) & (k < centre), (k - left) / np.maximum(centre - left, 1e-12), 0.0)
    falling = np.where((k >= centre) & (k < right), (right - k) / np.maximum(right - centre, 1e-12), 0.0)
    feat = power @ (rising + falling).T
    feat = np.log(np.where(feat == 0, np.finfo(float).eps, feat))
    ceps = dct(feat, type=2, axis=1, norm="ortho")[:, :13]
    ceps *= 1 + (22 / 2.0) * np.sin(np.pi * np.arange(13) / 22)
    ceps[:, 0] = np.log(energy)
    return ceps.T

"""Figures of the speech side (notebook 05): TTS waveforms and log-mels, SyncNet training, offset curves, Eq. 9."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plot_speech(wave: np.ndarray, mel: np.ndarray, title: str = "", sr: int = 16000, words=(), axes=None):
    """Waveform over its log-mel spectrogram (Wav2Lip units, [-4, 4]); ``words``: ``(time_s, label)`` marks."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(10, 4), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    t = np.arange(len(wave)) / sr
    axes[0].plot(t, wave, lw=0.5)
    axes[0].set_ylabel("amplitude")
    axes[0].set_title(title, pad=16)
    axes[1].imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(0, mel.shape[1] / 80, 0, mel.shape[0]))
    axes[1].set_ylabel("mel band")
    axes[1].set_xlabel("time (s)")
    for time_s, label in words:
        for ax in axes:
            ax.axvline(time_s, color="c", lw=0.6, alpha=0.7)
        axes[0].text(time_s, axes[0].get_ylim()[1], label, fontsize=7, va="bottom", rotation=30)
    return axes


def plot_syncnet_losses(losses: Sequence[float], name: str = "SyncNet", smooth: int = 20, ax=None):
    """Cosine-BCE loss per iteration and its moving average; ln 2 is chance (similarity 0.5 everywhere)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    losses = np.asarray(losses, dtype=float)
    smooth = max(1, min(smooth, len(losses) // 4))  # short runs (smoke) still get a visible mean
    ax.plot(losses, lw=0.5, alpha=0.5, label="per iteration")
    if len(losses) > smooth > 1:
        ax.plot(
            np.arange(smooth - 1, len(losses)), np.convolve(losses, np.ones(smooth) / smooth, "valid"), label="mean"
        )
    ax.axhline(np.log(2), color="gray", ls="--", lw=0.8, label="chance (ln 2)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cosine-BCE")
    ax.set_title(f"Training {name}")
    ax.legend()
    return ax


def plot_offset_curves(curves: dict, title: str = "", ax=None):
    """Mean embedding distance against AV offset (``syncnet_python``'s curve): ``curves`` maps a label to a
    :class:`~etlib.audio.sync_metrics.SyncScores`. The minimum is Sync-E, its depth below the median Sync-C."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    for label, s in curves.items():
        (line,) = ax.plot(
            s.offsets, s.mean_distances, marker=".", label=f"{label}: offset {s.av_offset}, C={s.sync_c:.3f}"
        )
        ax.axvline(s.av_offset, color=line.get_color(), ls=":", lw=0.8)
    ax.set_xlabel("AV offset (frames)")
    ax.set_ylabel("mean distance")
    names = {s.syncnet for s in curves.values()}
    ax.set_title(title or ", ".join(sorted(names)))
    ax.legend(fontsize=8)
    return ax


def show_crop_gradient(crops: np.ndarray, grad: np.ndarray, title: str = "", axes=None):
    """Five RGB crops ``(5, 3, h, w)`` in [0, 1] above ``|dL_sync / d crop|`` summed over colour (Eq. 9)."""
    import matplotlib.pyplot as plt

    n = len(crops)
    if axes is None:
        _, axes = plt.subplots(2, n, figsize=(2.2 * n, 2.6))
    mag = np.abs(grad).sum(axis=1)
    for i in range(n):
        axes[0, i].imshow(np.clip(crops[i].transpose(1, 2, 0), 0, 1))
        axes[0, i].set_title(f"frame {i}", fontsize=8)
        axes[1, i].imshow(mag[i], cmap="inferno", vmin=0, vmax=mag.max() + 1e-12)
        for ax in axes[:, i]:
            ax.axis("off")
    axes[1, 0].set_title("|gradient|", fontsize=8)
    if title:
        axes[0, 0].figure.suptitle(title)
    return axes

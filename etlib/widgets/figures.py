"""Static figures of the live controls (widget state is lost in an executed notebook) and the checks that
say how much an emotion changes the picture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from etlib.config import S6_POINTS
from etlib.widgets.head import RenderFn


def show_va_plane(
    render_fn: RenderFn, frame_index: int = 0, points: Sequence[tuple[float, float, str]] = S6_POINTS, size=7.0
):
    """The head rendered at each point, placed where the point lies on the valence/arousal plane (what the
    2-D pad shows live); the neutral centre in the middle."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(size, size))
    axis = fig.add_axes((0.06, 0.06, 0.9, 0.9))
    axis.set(xlim=(-1.15, 1.15), ylim=(-1.15, 1.15), aspect="equal", xlabel="valence", ylabel="arousal")
    t = np.linspace(0, 2 * np.pi, 181)
    axis.plot(0.8 * np.cos(t), 0.8 * np.sin(t), color="0.85", lw=1)
    tile = 0.11  # half width of a thumbnail, in valence units
    for v, a, label in [(0.0, 0.0, "neutral"), *points]:
        image = render_fn(v, a, frame_index)
        axis.imshow(image, extent=(v - tile, v + tile, a - tile, a + tile), zorder=2)
        axis.text(v, a - tile - 0.03, f"{label}\n({v:+.2f}, {a:+.2f})", ha="center", va="top", fontsize=6)
    return fig


def show_slider_sweep(
    render_fn: RenderFn, values: Sequence[float] = (-1, -0.5, 0, 0.5, 1), frame_index: int = 0, difference=True
):
    """The head as the valence slider moves (arousal 0) and as the arousal slider moves (valence 0); under
    each render, its absolute difference to the neutral render, all scaled by one gain so that the largest
    difference of the sweep is white (the titles give the mean, in grey levels)."""
    import matplotlib.pyplot as plt

    neutral = render_fn(0.0, 0.0, frame_index).astype(np.float32)
    sweeps = {"valence": [(x, 0.0) for x in values], "arousal": [(0.0, x) for x in values]}
    images = {name: [render_fn(v, a, frame_index) for v, a in vas] for name, vas in sweeps.items()}
    diffs = {name: [np.abs(im.astype(np.float32) - neutral) for im in ims] for name, ims in images.items()}
    gain = 255.0 / max(1.0, max(float(d.max()) for ds in diffs.values() for d in ds))
    n_rows = 4 if difference else 2
    fig, axes = plt.subplots(n_rows, len(values), figsize=(1.6 * len(values), 1.7 * n_rows), squeeze=False)
    for r, name in enumerate(sweeps):
        row = r * (n_rows // 2)
        for c, x in enumerate(values):
            axes[row, c].imshow(images[name][c])
            axes[row, c].set_title(f"{name} {x:+.2f}", fontsize=8)
            if difference:
                d = diffs[name][c]
                axes[row + 1, c].imshow(np.clip(gain * d, 0, 255).astype(np.uint8))
                axes[row + 1, c].set_title(f"|diff| {d.mean():.2g} (x{gain:.0f})", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def show_scrubber_strip(render_fn: RenderFn, frames: Sequence[int], va: tuple[float, float] = (0.0, 0.0)):
    """What the frame/audio scrubber shows: a few frames (pose, background and own audio) at a fixed e."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frames), figsize=(1.7 * len(frames), 2.0), squeeze=False)
    for ax, i in zip(axes[0], frames):
        ax.imshow(render_fn(va[0], va[1], int(i)))
        ax.set_title(f"frame {i}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def mean_abs_change(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean absolute pixel difference of two uint8 images, in grey levels (0-255); over the pixels where the
    (H, W) boolean ``region`` is True when given (e.g. the face mask: the background never changes)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32))
    if region is None:
        return float(diff.mean())
    region = np.asarray(region, bool)
    if region.shape != a.shape[:2]:
        raise ValueError(f"the region's shape {region.shape} is not the images' {a.shape[:2]}")
    if not region.any():
        raise ValueError("the region is empty")
    return float(diff[region].mean())


def show_keyframe_video(video: str | Path, keyframes: str, n_thumbnails: int = 6, fps: float = 25.0):
    """The "emotion keyframes over a typed sentence" result: the valence/arousal path ``keyframes`` over the
    video's length (top) and frames read back from the written mp4 at evenly spaced times (bottom)."""
    import matplotlib.pyplot as plt

    from etlib.io import read_frames
    from etlib.render import parse_va

    frames = read_frames(video)
    path = parse_va(keyframes)
    times = np.arange(len(frames)) / fps
    va = np.array([path(t) for t in times])
    picks = np.linspace(0, len(frames) - 1, n_thumbnails).round().astype(int)
    fig = plt.figure(figsize=(1.6 * n_thumbnails, 4.2))
    grid = fig.add_gridspec(2, n_thumbnails, height_ratios=(1, 1.2))
    curve = fig.add_subplot(grid[0, :])
    curve.plot(times, va[:, 0], label="valence")
    curve.plot(times, va[:, 1], label="arousal")
    curve.vlines(times[picks], -1, 1, color="0.8", lw=0.8)
    curve.set(ylim=(-1.05, 1.05), xlabel="time (s)", xlim=(0, times[-1] if len(times) > 1 else 1))
    curve.legend(fontsize=7, loc="upper right")
    for k, i in enumerate(picks):
        ax = fig.add_subplot(grid[1, k])
        ax.imshow(frames[i])
        ax.set_title(f"{times[i]:.2f} s  ({va[i, 0]:+.2f}, {va[i, 1]:+.2f})", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return fig

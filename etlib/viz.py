"""Figures the notebooks show (kept here so no notebook carries plotting logic of its own)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from etlib.config import PRESETS, Preset


def plot_presets(presets: Mapping[str, Preset] = PRESETS, ax=None):
    """Iterations per training stage for each preset (log scale): one code path, three sizes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.6))
    stages = list(next(iter(presets.values())).iterations.as_dict())
    width = 0.8 / len(presets)
    x = np.arange(len(stages))
    for k, (name, preset) in enumerate(presets.items()):
        its = [max(v, 1) for v in preset.iterations.as_dict().values()]
        ax.bar(x + k * width, its, width, label=f"{name} ({preset.resolution}px)")
    ax.set_xticks(x + width * (len(presets) - 1) / 2, [s.replace("_", "\n") for s in stages])
    ax.set_yscale("log")
    ax.set_ylabel("iterations")
    ax.set_title("Training iterations per stage and preset")
    ax.legend()
    return ax


def show_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None, ax=None, title=""):
    """A list of dicts drawn as a matplotlib table (readable in executed notebooks and exported HTML)."""
    import matplotlib.pyplot as plt

    columns = list(columns or rows[0].keys())
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    if ax is None:
        _, ax = plt.subplots(figsize=(min(16, 2.2 * len(columns) + 2), 0.32 * len(rows) + 0.8))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=columns, loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(columns))))
    if title:
        ax.set_title(title)
    return ax


def plot_va_points(points, ax=None, radius_circles=(0.5, 0.8)):
    """The valence/arousal plane with labelled points (e.g. the 12 points of Sec. S6)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.6))
    t = np.linspace(0, 2 * np.pi, 200)
    for r in radius_circles:
        ax.plot(r * np.cos(t), r * np.sin(t), color="0.85", lw=1)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.axvline(0, color="0.7", lw=0.8)
    for v, a, label in points:
        ax.scatter([v], [a], s=30)
        ax.annotate(label, (v, a), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="valence", ylabel="arousal", aspect="equal")
    ax.set_title("valence / arousal")
    return ax

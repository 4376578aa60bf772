"""Figures of the evaluation (notebook 10, ``python -m etlib.evaluation``): Tables 1-4 drawn as figures, the
head at the 12 S6 points, the judge's valence/arousal against the targets, SyncNet's offset curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etlib.config import S6_POINTS


def plot_table(table, ax=None):
    """A :class:`etlib.evaluation.paper_tables.Table` as a matplotlib table (its formatted cells, ``table.cells()``:
    the markdown cells without the backends)."""
    from etlib.viz.core import show_table

    headers, rows = table.cells()
    return show_table(rows, headers, ax=ax, title=table.title)


def show_reconstructions(result1: dict, n: int = 4, axes=None):
    """Table 1's frames: the truth and both rows' renders for ``n`` of the test frames it kept (``shown``: spread
    over the block)."""
    import matplotlib.pyplot as plt

    truth, renders = result1["truth"], result1["renders"]
    picks = np.linspace(0, len(truth) - 1, min(n, len(truth))).round().astype(int)
    lines = [("truth", truth), *renders.items()]
    if axes is None:
        _, axes = plt.subplots(len(lines), len(picks), figsize=(1.8 * len(picks), 1.9 * len(lines)), squeeze=False)
    for r, (name, frames) in enumerate(lines):
        for c, k in enumerate(picks):
            axes[r][c].imshow(frames[k])
            axes[r][c].set_title(f"{name if c == 0 else ''}\nframe {result1['shown'][k]}", fontsize=7)
            axes[r][c].axis("off")
    return axes


def show_emotion_renders(result3: dict, row: str | None = None, axes=None):
    """The middle frame of each S6 point's segment (what Table 3 keeps of its clips, one frame a point), for the
    Table 3 row ``row`` (default: both rows)."""
    import matplotlib.pyplot as plt

    renders = result3["renders"] if row is None else {row: result3["renders"][row]}
    if axes is None:
        _, axes = plt.subplots(len(renders), 12, figsize=(14, 1.5 * len(renders) + 0.4), squeeze=False)
    for r, (name, frames) in enumerate(renders.items()):
        for p, (v, a, label) in enumerate(S6_POINTS):
            ax = axes[r][p]
            ax.imshow(frames[p])
            ax.set_title(f"{label}\n{v:+.2f},{a:+.2f}", fontsize=6)
            ax.axis("off")
        axes[r][0].text(-0.1, 0.5, name.split(" (")[0], transform=axes[r][0].transAxes, ha="right", fontsize=7)
    return axes


def plot_judged_va(result3: dict, ax=None):
    """The judge's valence/arousal of every frame against the 12 targets (lines join a frame to its target)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.6))
    theta = np.linspace(0, 2 * np.pi, 200)
    for radius in (0.5, 0.8):
        ax.plot(radius * np.cos(theta), radius * np.sin(theta), color="0.85", lw=0.8)
    targets = result3["targets"]
    ax.scatter(targets[:, 0], targets[:, 1], marker="x", color="k", s=50, label="target (S6)", zorder=3)
    for (name, judged), colour in zip(result3["judged"].items(), ("tab:red", "tab:blue")):
        va = judged["va"]
        ax.scatter(va[:, 0], va[:, 1], s=10, color=colour, alpha=0.6, label=name)
        for p, t in zip(va, targets):
            ax.plot([t[0], p[0]], [t[1], p[1]], color=colour, lw=0.3, alpha=0.3)
    ax.axhline(0, color="0.7", lw=0.5)
    ax.axvline(0, color="0.7", lw=0.5)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="valence", ylabel="arousal", aspect="equal")
    ax.set_title("Judged V/A of the renders (Table 3)", fontsize=9)
    ax.legend(fontsize=6, loc="lower left")
    return ax


def plot_sync_curves(results: dict, ax=None):
    """SyncNet's mean distance against the audio-video offset for every clip scored (minimum = Sync-E,
    median minus minimum = Sync-C); empty with a note when no SyncNet was available."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    curves = []
    for row in results["table1"]["rows"] + results["table3"]["rows"]:
        if row.get("mean_distances"):
            curves.append((f"{row['Method']} ({'T1' if row in results['table1']['rows'] else 'T3'})", row))
    curves += [(f"{name} (T2)", clip) for name, clip in results["table2"]["clips"].items()]
    drawn = 0
    for name, row in curves:
        d = row.get("mean_distances")
        if d:
            vshift = (len(d) - 1) // 2
            ax.plot(vshift - np.arange(len(d)), d, lw=1, label=name)
            drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no SyncNet for this subject:\nSync-E/C unavailable", ha="center", va="center")
    else:
        ax.legend(fontsize=6)
    ax.set(xlabel="offset (frames)", ylabel="mean embedding distance")
    ax.set_title("SyncNet distance by offset", fontsize=9)
    return ax


def save_evaluation_plots(ev, out: str | Path) -> dict[str, Path]:
    """Write the evaluation's figures as PNGs under ``out``; returns name -> path."""
    import matplotlib.pyplot as plt

    out = Path(out)
    paths: dict[str, Path] = {}

    def save(name: str, fig) -> None:
        fig.tight_layout()
        paths[name] = out / name
        fig.savefig(paths[name], dpi=100)
        plt.close(fig)

    for key, table in ev.tables.items():
        fig, ax = plt.subplots(figsize=(min(14, 1.3 * len(table.columns) + 1.5), 0.3 * len(table.rows) + 0.9))
        plot_table(table, ax)
        save(f"{key}.png", fig)
    r1, r3 = ev.results["table1"], ev.results["table3"]
    show_reconstructions(r1)
    save("reconstructions.png", plt.gcf())
    show_emotion_renders(r3)
    save("emotion_renders.png", plt.gcf())
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    plot_judged_va(r3, ax)
    save("emotion_va.png", fig)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    plot_sync_curves(ev.results, ax)
    save("sync_offsets.png", fig)
    return paths

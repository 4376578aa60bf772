"""Figures and tables of the real-footage benchmark (issue 11, ``benchmarks/real_footage.py``).

* :func:`contact_sheet`: ground truth beside the render for some test frames, and frames of the emotion
  sweep labelled with their valence/arousal, as one PNG (drawn on a bare Figure: no pyplot state).
* :func:`self_check_rows`: the preprocessing self-checks of several clips (``report.json``), one row each,
  with the issue's targets marked, for :func:`etlib.viz.core.show_table` or a printout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

#: Done-when targets of issue 11 for the preprocessing self-checks.
TARGETS = {"face_share": 0.98, "reprojection_iod_pct": 6.0, "pose_jitter_deg": 0.5}


def pick_evenly(n_items: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n_items)`` (first and last included; fewer if n_items < k)."""
    if n_items <= 0 or k <= 0:
        return []
    return sorted(set(np.linspace(0, n_items - 1, min(k, n_items)).round().astype(int).tolist()))


def contact_sheet(
    truth: Sequence[np.ndarray],
    renders: Sequence[np.ndarray],
    sweep: Sequence[np.ndarray] = (),
    *,
    frame_labels: Sequence[str] | None = None,
    sweep_labels: Sequence[str] | None = None,
    title: str = "",
    out: str | Path | None = None,
    dpi: int = 110,
):
    """One figure: row 1 the ground-truth test frames, row 2 their renders, row 3 (if given) sweep frames.

    Args:
        truth / renders: (H, W, 3) uint8 (or float in [0, 1]) images, paired by position.
        sweep: frames of the emotion sweep (any count; they fill the third row).
        frame_labels / sweep_labels: a caption per column (e.g. ``"frame 142"``, ``"v=+0.80 a=+0.00"``).
        out: write a PNG here (parent folders made) and return its Path; None returns the Figure.
    """
    from matplotlib.figure import Figure

    if len(truth) != len(renders):
        raise ValueError(f"got {len(truth)} ground-truth frames but {len(renders)} renders; pair them one to one")
    if not len(truth) and not len(sweep):
        raise ValueError("nothing to draw: give test frames (truth and renders) or sweep frames")
    rows = [("ground truth", list(truth), frame_labels), ("render", list(renders), frame_labels)] if truth else []
    if len(sweep):
        rows.append(("emotion sweep", list(sweep), sweep_labels))
    cols = max(len(images) for _, images, _ in rows)
    fig = Figure(figsize=(1.6 * cols, 1.75 * len(rows) + (0.35 if title else 0)))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (name, images, labels) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(images):
                continue
            ax.imshow(_as_uint8(images[c]))
            caption = labels[c] if labels is not None and c < len(labels) else ""
            ax.set_title(caption, fontsize=6)
        axes[r][0].text(-0.06, 0.5, name, transform=axes[r][0].transAxes, rotation=90, va="center", ha="right")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if out is None:
        return fig
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def _as_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def self_check_rows(clips: Mapping[str, Mapping], targets: Mapping[str, float] = TARGETS) -> list[dict[str, str]]:
    """One row per clip from ``{clip: {"self_checks": {...}}}`` (the benchmark's summary), each figure with
    a check mark against the issue's target (face share at least, reprojection and jitter at most)."""
    rows = []
    for name, clip in clips.items():
        checks = clip.get("self_checks") or {}
        row = {"clip": name}
        if clip.get("error"):
            row["error"] = str(clip["error"])[:60]
        for key, target in targets.items():
            value = checks.get(key)
            if value is None:
                row[key] = "-"
                continue
            ok = value >= target if key == "face_share" else value <= target
            row[key] = f"{value:.3g} {'ok' if ok else 'MISS'}"
        for key in ("mouth_sound_corr", "mouth_sound_lag_s", "seconds"):
            if checks.get(key) is not None:
                row[key] = f"{checks[key]:.3g}"
        rows.append(row)
    return rows

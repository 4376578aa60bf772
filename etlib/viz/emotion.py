"""Figures of notebooks 03 (the lip-aligned emotional face generator g_LEF, Sec. 3.3.1, S2)
and 04 (seamless-cloning augmentation, Sec. S4.1).

Offline generator (03a): :func:`plot_generated_pairs`, :func:`plot_au_heatmap`, :func:`plot_offline_pipeline`,
:func:`plot_va_shift`. Neural g_LEF (03b): :func:`plot_lef_losses`, :func:`plot_lef_samples`. Cloning (04):
:func:`plot_cloning_rows`, :func:`plot_seam_zoom`, :func:`plot_emotion_targets`. What they draw is computed by
:mod:`etlib.evaluation.generator_demos` (frames, generated rows, Eq. 8's measures, the g_LEF demo, cloning rows).
The subject-level check (``python -m etlib.evaluation.generator_check``): :func:`plot_cloning_rows` and :func:`plot_s6_rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from etlib.base import LIP_POINTS, face_box
from etlib.config import GENERATOR, S6_POINTS, GeneratorWeights
from etlib.emoface.cloning import CloningRow
from etlib.emoface.expression import AU_DESCRIPTIONS, AU_NAMES, expression_weights, va_to_aus
from etlib.emoface.lef_train import LEF_TERMS
from etlib.emoface.offline import (
    face_frame,
    landmark_motion,
    lip_lock_weight,
)

# ----------------------------------------------------------------------------------------------
# 03 (a): the offline generator at the 12 points of Sec. S6
# ----------------------------------------------------------------------------------------------


def _face_view(image: np.ndarray, landmarks: np.ndarray, margin: float = 0.3) -> tuple[slice, slice]:
    """Row/column slices of a square around the face (clipped to the image)."""
    x0, y0, x1, y1 = face_box(landmarks, margin=margin)
    h, w = image.shape[:2]
    return slice(max(int(y0), 0), min(int(y1), h)), slice(max(int(x0), 0), min(int(x1), w))


def plot_generated_pairs(rows: Sequence, pairs_per_line: int = 2, show_lips: bool = True):
    """Fig. 2 for every S6 point (``rows`` of :func:`etlib.evaluation.generator_demos.generate_at_points`): (source,
    generated) side by side, the lip landmarks of both drawn in lime
    (they coincide when the lips are kept); ``pairs_per_line`` points per figure row."""
    import matplotlib.pyplot as plt

    lines = -(-len(rows) // pairs_per_line)
    fig, axes = plt.subplots(lines, 2 * pairs_per_line, figsize=(3.9 * pairs_per_line, 2.05 * lines), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, row in enumerate(rows):
        ys, xs = _face_view(row.source, row.source_landmarks)
        for col, (img, lm, title) in enumerate(
            (
                (row.source, row.source_landmarks, "source I"),
                (
                    row.generated.image,
                    row.generated.landmarks68,
                    f"e=({row.valence:+.2f}, {row.arousal:+.2f}) {row.label}",
                ),
            )
        ):
            ax = axes[k // pairs_per_line, 2 * (k % pairs_per_line) + col]
            ax.imshow(img[ys, xs])
            if show_lips:
                lips = lm[list(LIP_POINTS)] - [xs.start, ys.start]
                ax.scatter(lips[:, 0], lips[:, 1], s=0.8, c="lime", linewidths=0)
            ax.set_title(title, fontsize=8)
    fig.suptitle("Offline g_LEF at the 12 points of Sec. S6 (lime: lip landmarks)", fontsize=10)
    fig.tight_layout()
    return axes


def plot_au_heatmap(points=S6_POINTS, ax=None):
    """The action units (0-5) the offline generator derives from each ``e`` (circumplex -> EMFACS blend)."""
    import matplotlib.pyplot as plt

    table = np.array([[va_to_aus(v, a)[name] for name in AU_NAMES] for v, a, _ in points])
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.32 * len(points) + 1.6))
    im = ax.imshow(table, cmap="magma", vmin=0, vmax=5, aspect="auto")
    ax.set_xticks(range(len(AU_NAMES)), [f"{n}\n{AU_DESCRIPTIONS[n]}" for n in AU_NAMES], fontsize=6, rotation=90)
    ax.set_yticks(range(len(points)), [f"({v:+.2f}, {a:+.2f}) {label}" for v, a, label in points], fontsize=7)
    for i, j in zip(*np.nonzero(table > 0.05)):
        ax.text(j, i, f"{table[i, j]:.1f}", ha="center", va="center", fontsize=6, color="w" if table[i, j] < 3 else "k")
    plt.colorbar(im, ax=ax, label="AU intensity (0-5)")
    ax.set_title("valence/arousal -> action units (offline g_LEF, step 1)")
    return ax


def plot_offline_pipeline(generator, image: np.ndarray, landmarks: np.ndarray, valence: float, arousal: float):
    """The offline generator's steps on one face: prototype weights of ``e``, its action units, the landmark
    motion (arrows x3), the warp strength with the lips locked, and the result."""
    import matplotlib.pyplot as plt

    lm = np.asarray(landmarks, np.float64)
    out = generator(image, lm, valence, arousal)
    aus = va_to_aus(valence, arousal)
    delta, _ = landmark_motion(lm, aus, generator.gain)
    ys, xs = _face_view(image, lm)
    offset = np.array([xs.start, ys.start])
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.4), gridspec_kw={"width_ratios": [1, 1.2, 1, 1, 1]})
    weights = {k: w for k, w in expression_weights(valence, arousal).items() if w > 0}
    axes[0].bar(list(weights), list(weights.values()), color="tab:purple")
    axes[0].set_title(f"1. e=({valence:+.2f}, {arousal:+.2f}): prototype blend", fontsize=8)
    axes[0].tick_params(labelsize=7)
    active = [n for n in AU_NAMES if aus[n] > 0.05]
    axes[1].barh(active, [aus[n] for n in active], color="tab:orange")
    axes[1].set_yticks(range(len(active)), [f"{n} {AU_DESCRIPTIONS[n]}" for n in active], fontsize=7)
    axes[1].set_xlim(0, 5)
    axes[1].set_title("2. action units (0-5)", fontsize=8)
    axes[2].imshow(image[ys, xs])
    moving = np.linalg.norm(delta, axis=1) > 1e-6
    p = lm - offset
    axes[2].quiver(
        p[moving, 0],
        p[moving, 1],
        3 * delta[moving, 0],
        -3 * delta[moving, 1],
        color="cyan",
        scale=1,
        scale_units="xy",
        angles="xy",
        width=0.006,
    )
    axes[2].scatter(p[list(LIP_POINTS), 0], p[list(LIP_POINTS), 1], s=2, c="lime")
    axes[2].set_title("3. landmark motion x3 (lips lime: pinned)", fontsize=8)
    strength = np.linalg.norm(out.flow, axis=-1)
    lock = lip_lock_weight(lm, image.shape[:2], generator.lip_falloff * face_frame(lm)[2])
    axes[3].imshow(strength[ys, xs], cmap="viridis")
    axes[3].contour(lock[ys, xs], levels=[0.01], colors="r", linewidths=0.8)
    axes[3].set_title(f"4. warp |flow| px (max {strength.max():.1f}); red: lip lock", fontsize=8)
    axes[4].imshow(out.image[ys, xs])
    axes[4].set_title("5. generated I_E", fontsize=8)
    for ax in axes[2:]:
        ax.axis("off")
    fig.tight_layout()
    return axes


def plot_va_shift(rows: Sequence, source_va: np.ndarray, generated_va: np.ndarray, judge_name: str, ax=None):
    """The judge's valence/arousal of each source (grey) and its generated face (coloured arrow head),
    against the target ``e`` (star of the same colour)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.4, 5.4))
    t = np.linspace(0, 2 * np.pi, 200)
    for r in (0.5, 0.8):
        ax.plot(r * np.cos(t), r * np.sin(t), color="0.88", lw=1)
    ax.axhline(0, color="0.75", lw=0.8)
    ax.axvline(0, color="0.75", lw=0.8)
    colours = plt.cm.tab20(np.linspace(0, 1, len(rows)))
    for row, src, gen, c in zip(rows, source_va, generated_va, colours):
        ax.scatter([row.valence], [row.arousal], marker="*", s=90, color=c, edgecolor="k", linewidths=0.4)
        ax.scatter([src[0]], [src[1]], s=14, color="0.5")
        ax.annotate("", xy=gen, xytext=src, arrowprops={"arrowstyle": "->", "color": c, "lw": 1.2})
    ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="valence", ylabel="arousal", aspect="equal")
    ax.set_title(f"judge: source (grey) -> generated (arrow); target *\n{judge_name}", fontsize=8)
    return ax


# ----------------------------------------------------------------------------------------------
# 03 (b): the neural g_LEF at a tiny size
# ----------------------------------------------------------------------------------------------


def plot_lef_losses(
    history: Sequence[dict[str, float]], weights: GeneratorWeights = GENERATOR, smooth: int = 5, ax=None
):
    """The weighted terms of Eq. 7 (lambda_i * L_i, the paper's weights) and their total over training steps,
    with a running mean of ``smooth`` steps (raw total in grey)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.8))
    steps = np.array([h["step"] for h in history])
    kernel = np.ones(max(1, min(smooth, len(history)))) / max(1, min(smooth, len(history)))
    ax.plot(steps, [h["total"] for h in history], color="0.8", lw=0.8)
    for term in [t for t in LEF_TERMS if t in history[0]] + ["total"]:
        lam = getattr(weights, LEF_TERMS[term]) if term in LEF_TERMS else 1.0
        values = lam * np.array([h[term] for h in history])
        smoothed = np.convolve(values, kernel, mode="valid")
        label = "total L (Eq. 7)" if term == "total" else f"{lam:g} x L_{term}"
        ax.plot(steps[len(steps) - len(smoothed) :], smoothed, label=label, lw=2.2 if term == "total" else 1.2)
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="weighted loss")
    ax.legend(fontsize=7, ncol=3)
    ax.set_title("g_LEF training: the terms of Eq. 7 with the paper's weights (1, 5, 0.03, 0.2, 1.5)", fontsize=9)
    return ax


@torch.no_grad()
def plot_lef_samples(demo, emotions: Sequence[tuple[float, float, str]], n_sources: int = 3):
    """``demo``: :func:`etlib.evaluation.generator_demos.build_lef_demo`'s. Rows of: source crop I, its reconstruction G(W), and g_LEF's I_E for each ``(v, a, label)``; lime dots:
    the source's lip landmarks, red: the lip detector's on each image."""
    import matplotlib.pyplot as plt

    from etlib.emoface.stylegan2 import to_unit

    model, data = demo.model, demo.data
    model.eval()
    n = min(n_sources, len(data))
    cols = 2 + len(emotions)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 2.0 * n), squeeze=False)
    recon = to_unit(model.generator.synthesis(data.ws[:n])).clamp(0, 1)
    outputs = []
    for v, a, _ in emotions:
        e = torch.tensor([[v, a]], dtype=data.ws.dtype, device=data.ws.device).expand(n, -1)
        outputs.append(model(data.ws[:n], e, data.lips[:n]).image.clamp(0, 1))
    panels = [("source I", data.images[:n]), ("G(W)", recon)] + [
        (f"I_E ({v:+.1f}, {a:+.1f})\n{label}", img) for (v, a, label), img in zip(emotions, outputs)
    ]
    for c, (title, batch) in enumerate(panels):
        found = demo.detector(batch).cpu().numpy()
        for r in range(n):
            ax = axes[r, c]
            ax.imshow(batch[r].permute(1, 2, 0).cpu().numpy())
            src = data.lips[r].cpu().numpy()
            ax.scatter(src[:, 0], src[:, 1], s=3, c="lime", linewidths=0)
            ax.scatter(found[r, :, 0], found[r, :, 1], s=3, c="red", linewidths=0)
            ax.axis("off")
            if r == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return axes


# ----------------------------------------------------------------------------------------------
# 04: seamless cloning (Sec. S4.1, Fig. S4)
# ----------------------------------------------------------------------------------------------


def _draw_rects(ax, rects, offset, colour) -> None:
    import matplotlib.patches as patches

    for x0, y0, x1, y1 in rects.values():
        ax.add_patch(
            patches.Rectangle(
                (x0 - offset[0] - 0.5, y0 - offset[1] - 0.5), x1 - x0, y1 - y0, fill=False, ec=colour, lw=0.9
            )
        )


def plot_cloning_rows(rows: Sequence[CloningRow]):
    """Fig. S4: (a) source, (b) generated, (c) cut-and-paste with its rectangles, (d) seamless cloning, and
    (e) how much (d) differs from (a) (the emotion transferred, amplified x4)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 5, figsize=(14, 2.9 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        ys, xs = _face_view(row.source, row.source_landmarks, margin=0.2)
        diff = np.abs(row.seamless.image.astype(np.float32) - row.source.astype(np.float32)).sum(-1)
        panels = [
            ("(a) source", row.source),
            (f"(b) generated, e=({row.valence:+.1f}, {row.arousal:+.1f}) {row.label}", row.generated.image),
            (f"(c) cut-and-paste: seam energy {row.energy('paste', 'ratio'):.2f}x", row.paste.image),
            (f"(d) seamless cloning: {row.energy('seamless', 'ratio'):.2f}x", row.seamless.image),
        ]
        for ax, (title, img) in zip(ax_row, panels):
            ax.imshow(img[ys, xs])
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        _draw_rects(ax_row[2], row.paste.rects, (xs.start, ys.start), "red")
        ax_row[4].imshow(np.clip(4 * diff[ys, xs] / 255.0, 0, 1), cmap="magma")
        _draw_rects(ax_row[4], row.seamless.rects, (xs.start, ys.start), "cyan")
        ax_row[4].set_title("(e) |(d) - (a)| x4", fontsize=8)
        ax_row[4].axis("off")
    fig.suptitle(
        "Sec. S4.1 / Fig. S4 (seam energy: gradient energy across the rectangle edges vs the source's)", fontsize=9
    )
    fig.tight_layout()
    return axes


def plot_seam_zoom(rows: Sequence[CloningRow], region: str = "eye_right", pad: int = 6):
    """Magnified crops around one cloned rectangle: source (the rectangle dashed), cut-and-paste and seamless
    cloning (nearest neighbour, so seams show as they are)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 2.6 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        if region not in row.paste.rects:
            raise ValueError(f"unknown region {region!r}; regions: {sorted(row.paste.rects)}")
        x0, y0, x1, y1 = row.paste.rects[region]
        h, w = row.source.shape[:2]
        ys, xs = slice(max(y0 - pad, 0), min(y1 + pad, h)), slice(max(x0 - pad, 0), min(x1 + pad, w))
        for ax, (title, img) in zip(
            ax_row, (("source", row.source), ("cut-and-paste", row.paste.image), ("seamless", row.seamless.image))
        ):
            ax.imshow(img[ys, xs], interpolation="nearest")
            if title == "source":  # outline on the source only: on the composites it would hide the seam
                _draw_rects(ax, {region: row.paste.rects[region]}, (xs.start, ys.start), "yellow")
                ax.patches[-1].set_linestyle("--")
            ax.set_title(f"{title} ({row.label}, {region})", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return axes


def plot_emotion_targets(
    target_maker: Callable, subject, indices: Sequence[int], emotions: Sequence[tuple[float, float]]
):
    """What the emotion stage trains on: frames of the processed subject (the preset's resolution) and the
    target maker's image for the ``(valence, arousal)`` paired with each."""
    import matplotlib.pyplot as plt

    from etlib.preprocess.subject import SubjectDir

    s = subject if isinstance(subject, SubjectDir) else SubjectDir(subject)
    landmarks = np.load(s.landmarks)
    fig, axes = plt.subplots(2, len(indices), figsize=(2.3 * len(indices), 4.8), squeeze=False)
    for k, (i, va) in enumerate(zip(indices, emotions)):
        frame = s.read_frame(i)
        image, _ = target_maker(frame, landmarks[i], np.asarray(va, np.float32))
        axes[0, k].imshow(frame)
        axes[0, k].set_title(f"frame {i}", fontsize=8)
        axes[1, k].imshow(image)
        axes[1, k].set_title(f"target e=({va[0]:+.2f}, {va[1]:+.2f})", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"emotion-stage targets at {frame.shape[0]} px: {getattr(target_maker, 'name', '')}", fontsize=8)
    fig.tight_layout()
    return axes


def plot_s6_rows(
    rows: Sequence[CloningRow], judged_va: dict[str, np.ndarray] | None = None, title: str = "", diff_gain: float = 4.0
):
    """Fig. 2 as rows: one S6 point a row, (source, generated, seamless clone, ``|generated - source|`` x
    ``diff_gain``) around the face; lime dots: the lip landmarks of source and generated.

    ``judged_va`` (``{"source"|"generated"|"clone": [N, 2]}``, optional) puts the judge's (valence, arousal) of
    each image in its title, next to the target's.
    """
    import matplotlib.pyplot as plt

    judged_va = judged_va or {}
    fig, axes = plt.subplots(len(rows), 4, figsize=(7.6, 1.95 * len(rows)), squeeze=False)
    for k, (ax_row, row) in enumerate(zip(axes, rows)):
        ys, xs = _face_view(row.source, row.source_landmarks, margin=0.2)
        diff = np.abs(row.generated.image.astype(np.float32) - row.source.astype(np.float32)).sum(-1) / 255.0
        panels = (
            ("source", row.source, row.source_landmarks),
            ("generated", row.generated.image, row.generated.landmarks68),
            ("clone", row.seamless.image, None),
        )
        for ax, (kind, img, lm) in zip(ax_row, panels):
            ax.imshow(img[ys, xs])
            if lm is not None:
                lips = np.asarray(lm)[list(LIP_POINTS)] - [xs.start, ys.start]
                ax.scatter(lips[:, 0], lips[:, 1], s=0.8, c="lime", linewidths=0)
            va = judged_va.get(kind)
            ax.set_title(kind if va is None else f"{kind}: judge ({va[k][0]:+.2f}, {va[k][1]:+.2f})", fontsize=7)
        ax_row[3].imshow(np.clip(diff_gain * diff[ys, xs], 0, 1), cmap="magma")
        ax_row[3].set_title(f"|gen - src| x{diff_gain:g}", fontsize=7)
        ax_row[0].set_ylabel(f"e=({row.valence:+.2f}, {row.arousal:+.2f})\n{row.label}", fontsize=7)
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / len(rows)) if title else None)
    return axes

"""Figures of the training notebooks (06-09): loss curves, renders against the truth, the layers of
Eqs. S9-S10 (Fig. S3), attention maps (Fig. S7) and the head across the valence/arousal plane."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def plot_losses(run_dir: str | Path, stages: Sequence[str] | None = None, axes=None):
    """Loss (and its terms) against iteration, one panel per stage, from ``RUN/losses.csv``."""
    import matplotlib.pyplot as plt

    lines = (Path(run_dir) / "losses.csv").read_text().splitlines()
    keys = lines[0].split(",")
    rows = [dict(zip(keys, line.split(","))) for line in lines[1:]]
    stages = list(stages or dict.fromkeys(r["stage"] for r in rows))
    if axes is None:
        _, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3), squeeze=False)
        axes = axes[0]
    for ax, stage in zip(axes, stages):
        mine = [r for r in rows if r["stage"] == stage]
        it = [float(r["iteration"]) for r in mine]
        for key in keys[2:]:
            values = [float(r[key]) if r.get(key) else np.nan for r in mine]
            if not np.all(np.isnan(values)):
                ax.plot(it, values, lw=1.2 if key == "loss" else 0.7, label=key)
        ax.set_yscale("log")
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=6)
    return axes


def _img(t: torch.Tensor) -> np.ndarray:
    return t.detach().clamp(0, 1).cpu().numpy()


def show_layer_renders(model, data, ids: Sequence[int], layer: str = "mouth", deform: bool = True, axes=None):
    """Truth (masked as the stage sees it) beside the render of one layer, for a few frames."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(2, len(ids), figsize=(2.2 * len(ids), 4.6), squeeze=False)
    with torch.no_grad():
        for k, i in enumerate(ids):
            s = data.sample(i)
            if layer == "mouth":
                out = model.render_layer(model.mouth_layer(s.cond, deform), s.camera)
                truth = s.image * s.mouth_mask
            else:
                out = model.render_layer(model.face_layer(s.cond, deform, emotion=False), s.camera)
                truth = s.image * s.face_mask
            axes[0][k].imshow(_img(truth))
            axes[1][k].imshow(_img(out.color))
            axes[0][k].set_title(f"frame {i}", fontsize=8)
    for ax in np.ravel(axes):
        ax.axis("off")
    axes[0][0].text(-0.1, 0.5, "truth", transform=axes[0][0].transAxes, rotation=90, va="center", ha="right")
    axes[1][0].text(-0.1, 0.5, "render", transform=axes[1][0].transAxes, rotation=90, va="center", ha="right")
    return axes


def show_normals(model, data, i: int, axes=None):
    """The face layer's rendered normal map beside the template target N^F_mask (Eq. 11)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(7.5, 2.6))
    s = data.sample(i)
    with torch.no_grad():
        out = model.render_layer(model.face_layer(s.cond, True, emotion=False), s.camera, normals=True)
    n = torch.nn.functional.normalize(out.normal, dim=-1) * (out.alpha > 0.05)
    for ax, img, title in zip(
        axes, [s.image, (n + 1) / 2, (s.normal * s.face_mask + 1) / 2], ["frame", "rendered N^F", "target N^F_mask"]
    ):
        ax.imshow(_img(img))
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    return axes


def show_attention_maps(model, data, i: int, axes=None):
    """Fig. S7: the render and the face Gaussians' attention to audio (A_a), action units (A_u) and
    valence/arousal (A_e), each splatted like colour."""
    import matplotlib.pyplot as plt

    s = data.sample(i)
    with torch.no_grad():
        out = model(s.camera, s.cond, s.background, attention_maps=True)
    names = list(model.face_layer(s.cond).attention)
    feats = out.face.features
    if axes is None:
        _, axes = plt.subplots(1, 1 + len(names), figsize=(2.6 * (1 + len(names)), 2.6))
    axes[0].imshow(_img(out.image))
    axes[0].set_title("render", fontsize=8)
    labels = {"audio": "A_a (audio)", "au": "A_u (action units)", "emotion": "A_e (valence/arousal)"}
    for k, name in enumerate(names):
        m = feats[..., k].cpu().numpy()
        axes[k + 1].imshow(m / max(m.max(), 1e-8), cmap="inferno")
        axes[k + 1].set_title(labels.get(name, name), fontsize=8)
    for ax in axes:
        ax.axis("off")
    return axes


def show_composition(model, data, i: int, axes=None):
    """Fig. S3: C_inside-mouth, A_inside-mouth, C_face, A_face, C_background and the frame of Eq. S10."""
    import matplotlib.pyplot as plt

    s = data.sample(i)
    with torch.no_grad():
        out = model(s.camera, s.cond, s.background)
    panels = [
        (out.mouth.color, "C_inside-mouth"),
        (out.mouth.alpha.expand(-1, -1, 3), "A_inside-mouth"),
        (out.face.color, "C_face"),
        (out.face.alpha.expand(-1, -1, 3), "A_face"),
        (s.background, "C_background"),
        (out.mouth_background, "C_mouth-bg (S9)"),
        (out.image, "frame (S10)"),
        (s.image, "truth"),
    ]
    if axes is None:
        _, axes = plt.subplots(2, 4, figsize=(9, 4.8))
    for ax, (img, title) in zip(np.ravel(axes), panels):
        ax.imshow(_img(img))
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    return axes


def show_emotion_grid(model, data, i: int, points, axes=None, zoom: bool = True):
    """The head of frame ``i`` rendered at each valence/arousal point (e.g. the 12 of Sec. S6); ``zoom`` crops
    each render to the face (its landmarks' box grown by 40 %), where an expression is a few pixels."""
    import matplotlib.pyplot as plt

    from etlib.base import face_box

    rows_cols = (slice(None), slice(None))
    if zoom:
        x0, y0, x1, y1 = face_box(data.landmarks[i], margin=0.2)
        size = data.resolution
        rows_cols = (slice(max(int(y0), 0), min(int(y1) + 1, size)), slice(max(int(x0), 0), min(int(x1) + 1, size)))

    n = len(points)
    cols = min(6, n)
    rows = (n + cols - 1) // cols
    if axes is None:
        _, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    s = data.sample(i)
    with torch.no_grad():
        for ax, point in zip(np.ravel(axes), points):
            v, a = point[0], point[1]
            cond = data.condition(i, va=np.array([v, a], np.float32))
            ax.imshow(_img(model(s.camera, cond, s.background).image)[rows_cols])
            ax.set_title(f"V {v:+.2f} A {a:+.2f}" + (f"\n{point[2]}" if len(point) > 2 else ""), fontsize=7)
    for ax in np.ravel(axes):
        ax.axis("off")
    return axes


def plot_lip_motion(trace: dict, ax=None):
    """``etlib.train.run_metrics.lip_motion``: the lower lip's motion from ``f_F`` over the frames, beside the true
    mouth opening (both in pixels, the motion centred)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.4))
    ax.plot(trace["opening_px"] - trace["opening_px"].mean(), lw=1, label="true mouth opening (centred)")
    ax.plot(trace["motion_px"], lw=1, label="lower-lip motion from f_F")
    ax.set_xlabel("test frame")
    ax.set_ylabel("pixels")
    ax.set_title(
        f"f_F follows the speech: r = {trace['correlation']:.2f} ({trace['gaussians']} lip Gaussians)", fontsize=9
    )
    ax.legend(fontsize=7, loc="upper right")
    return ax


def plot_emotion_visibility(report: dict, sheet: np.ndarray):
    """The contact sheet of :func:`etlib.evaluation.emotion_visibility.contact_sheet` (targets above, renders below) and, per S6
    point, how much the targets and the renders change the face (grey levels) with the landmark-motion cosine."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 5.6))
    top = fig.add_axes((0.0, 0.42, 1.0, 0.58))
    top.imshow(sheet)
    top.axis("off")
    ax = fig.add_axes((0.06, 0.06, 0.9, 0.3))
    labels = [p.split(" (")[0] + "\n" + p.split(" (")[1].rstrip(")") for p in report["points"]]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, report["targets"]["face_change_per_point"], 0.4, label="targets vs frame")
    renders = report.get("renders")
    if renders:
        ax.bar(x + 0.2, renders["face_change_per_point"], 0.4, label="renders vs render at (0, 0)")
        for k, c in enumerate(renders["landmark_motion_cosine_per_point"]):
            if c is not None:
                ax.text(k + 0.2, renders["face_change_per_point"][k] + 0.1, f"{c:.2f}", ha="center", fontsize=7)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("face change\n(grey levels)")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(
        "change of the face region per S6 point (numbers: cosine of the landmark motion, renders vs targets)",
        fontsize=9,
    )
    return fig

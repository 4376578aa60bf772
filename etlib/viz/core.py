"""Course-wide figures: presets, tables, the valence/arousal plane, processed subjects."""

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


def show_subject_frames(subject, indices: Sequence[int] | None = None, axes=None):
    """Rows of (frame + landmarks, masks, background C_bg, normal map) for some frames of a processed subject.

    Mask colours: face blue, inside mouth green, teeth white, torso brown.
    """
    import matplotlib.pyplot as plt

    from etlib.preprocess.subject import SubjectDir

    s = subject if isinstance(subject, SubjectDir) else SubjectDir(subject)
    n = s.n_frames
    indices = list(indices) if indices is not None else [0, n // 3, 2 * n // 3]
    landmarks = np.load(s.landmarks)
    if axes is None:
        _, axes = plt.subplots(len(indices), 4, figsize=(10, 2.6 * len(indices)), squeeze=False)
    for row, i in zip(axes, indices):
        frame = s.read_frame(i)
        masks = np.zeros_like(frame)
        masks[s.read_mask("torso", i)] = (120, 60, 0)
        masks[s.read_mask("face", i)] = (40, 80, 255)
        masks[s.read_mask("mouth", i)] = (0, 200, 0)
        masks[s.read_mask("teeth", i)] = (255, 255, 255)
        normal = s.read_normal(i)
        panels = [frame, masks, s.read_bg(i), np.where(normal == 0, 0.5, (normal + 1) / 2)]
        titles = [f"frame {i} + landmarks", "face / mouth / teeth / torso", "C_background", "normal map"]
        for ax, img, title in zip(row, panels, titles):
            ax.imshow(img)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        row[0].scatter(landmarks[i, :, 0], landmarks[i, :, 1], s=3, c="lime")
    return axes


def plot_subject_signals(subject, fps: float = 25.0):
    """Head pose, mouth opening against loudness, blink (AU45) and valence/arousal over a subject's frames: the
    judge's per-frame readings and the emotion track the frames are conditioned on
    (:func:`etlib.train.data.emotion_track`)."""
    import matplotlib.pyplot as plt
    from scipy.spatial.transform import Rotation

    from etlib.io import read_audio
    from etlib.preprocess.report import loudness_envelope, mouth_opening
    from etlib.preprocess.subject import SubjectDir
    from etlib.train.data import emotion_track

    s = subject if isinstance(subject, SubjectDir) else SubjectDir(subject)
    _, w2c = s.cameras()
    t = np.arange(len(w2c)) / fps
    euler = Rotation.from_matrix(w2c[:, :3, :3]).as_euler("xyz", degrees=True)
    euler -= np.median(euler, axis=0)
    names, aus = s.read_au()
    va = np.load(s.va)
    fig, axes = plt.subplots(4, 1, figsize=(10, 8), sharex=True)
    for k, label in enumerate(("pitch", "yaw", "roll")):
        axes[0].plot(t, euler[:, k], label=label, lw=0.9)
    axes[0].set_ylabel("head rotation (deg)")
    axes[0].legend(fontsize=7, ncol=3)
    mouth = mouth_opening(np.load(s.landmarks))
    loud = loudness_envelope(read_audio(s.audio), len(t))
    axes[1].plot(t, mouth / max(mouth.max(), 1e-6), label="mouth opening", lw=0.9)
    axes[1].plot(t, (loud - loud.min()) / max(np.ptp(loud), 1e-6), label="loudness", lw=0.9, alpha=0.7)
    axes[1].legend(fontsize=7)
    axes[2].plot(t, aus[:, names.index("AU45_r")], label="AU45 (blink)", lw=0.9)
    axes[2].plot(t, aus[:, names.index("AU26_r")], label="AU26 (jaw drop)", lw=0.9)
    axes[2].set_ylabel("AU (0-5)")
    axes[2].legend(fontsize=7)
    track = emotion_track(va, fps)  # what the frames are conditioned on
    for k, (label, colour) in enumerate((("valence", "C0"), ("arousal", "C1"))):
        axes[3].plot(t, va[:, k], color=colour, lw=0.6, alpha=0.45, label=f"{label}, judge per frame")
        axes[3].plot(t, track[:, k], color=colour, lw=1.4, label=f"{label}, emotion track")
    axes[3].set_ylim(-1, 1)
    axes[3].legend(fontsize=7)
    axes[3].set_xlabel("seconds")
    fig.tight_layout()
    return axes

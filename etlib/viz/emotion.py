"""Figures and measurements of notebooks 03 (the lip-aligned emotional face generator g_LEF, Sec. 3.3.1, S2)
and 04 (seamless-cloning augmentation, Sec. S4.1).

Offline generator (03a): :func:`subject_faces` -> :func:`generate_at_points` -> :func:`judge_va`,
:func:`va_agreement` (Eqs. S17-S18), :func:`lip_alignment` (what L_ll and L_lp of Eq. 8 measure) and the plots.
Neural g_LEF (03b): :func:`face_crops`, :func:`build_lef_demo`, :func:`plot_lef_losses`, :func:`plot_lef_samples`.
Cloning (04): :func:`cloning_rows`, :func:`boundary_energy_rows`, :func:`plot_cloning_rows`, :func:`plot_seam_zoom`,
:func:`plot_emotion_targets`.
The subject-level check (``python -m etlib.evaluation.generator_check``): :func:`plot_cloning_rows` and :func:`plot_s6_rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from etlib.base import LIP_POINTS, face_box
from etlib.config import GENERATOR, S6_POINTS, GeneratorWeights
from etlib.emoface.cloning import CloningRow, compose_emotional_face
from etlib.emoface.expression import AU_DESCRIPTIONS, AU_NAMES, expression_weights, va_to_aus
from etlib.emoface.judge import crop_face
from etlib.emoface.offline import (
    GeneratedFace,
    face_frame,
    landmark_motion,
    lip_lock_weight,
    lip_opening,
    lip_rect_mask,
)

# Re-exported: the notebooks score faces through this module.
from etlib.emoface.scoring import emotion_scores, judge_faces, judge_va, va_agreement  # noqa: F401

#: Landmarks an expression should move (brows 17-26, eyes 36-47), to contrast with the pinned lips.
UPPER_FACE_POINTS = tuple(range(17, 27)) + tuple(range(36, 48))
#: The two settings of Fig. S4: (valence, arousal, label).
FIG_S4_SETTINGS: tuple[tuple[float, float, str], ...] = ((0.6, 0.2, "happy"), (-0.8, 0.4, "angry"))
#: The five terms of Eq. 7 (S6) as the trainer names them, with the paper's weight field.
LEF_TERMS = {
    "lip_landmark": "lambda1_lip_landmark",
    "lip_pixel": "lambda2_lip_pixel",
    "regularization": "lambda3_regularization",
    "emotion": "lambda4_emotion",
    "identity": "lambda5_identity",
}


# ----------------------------------------------------------------------------------------------
# The subject's faces at a generator-friendly resolution
# ----------------------------------------------------------------------------------------------


@dataclass
class FaceSamples:
    """Frames of the subject's video cropped like the processed subject: ``images [N, S, S, 3]`` uint8,
    ``landmarks [N, 68, 2]`` (x, y) pixels of ``images``, ``indices`` the frame numbers (25 fps)."""

    images: np.ndarray
    landmarks: np.ndarray
    indices: list[int]
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def take(self, n: int) -> FaceSamples:
        """The first ``n`` faces."""
        return FaceSamples(self.images[:n], self.landmarks[:n], self.indices[:n], self.boxes[:n])


def subject_faces(ctx, n: int, size: int = 256, detector=None) -> FaceSamples:
    """``n`` frames spread over the subject's video, cropped with the subject's window at ``size`` pixels
    (sharper than the preset's training resolution), with 68 landmarks detected on them.

    ``ctx`` is the notebook's :class:`etlib.course.NotebookContext` (its source video and processed subject).
    A frame where the detector finds no face is replaced by the next one.
    """
    from etlib.io import iter_frames
    from etlib.preprocess import SubjectDir
    from etlib.preprocess.crop import CropWindow

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    subject = SubjectDir(ctx.subject_dir)
    crop = subject.meta().get("crop")
    if crop is None:
        raise FileNotFoundError(
            f"{subject.root} has no crop window in meta.json: run notebook 01 (preprocessing) first"
        )
    window = CropWindow(**crop)
    if detector is None:
        from etlib.preprocess.landmarks import DlibLandmarks

        detector = DlibLandmarks()
    targets = list(np.linspace(0, subject.n_frames - 1, n + 2)[1:-1].round().astype(int)) if n > 1 else [0]
    images, landmarks, indices, boxes = [], [], [], []
    for i, frame in enumerate(iter_frames(ctx.source_video(), fps=25)):
        if len(indices) == n:
            break
        if i < targets[len(indices)]:
            continue
        image = window.apply(frame, size)
        found = detector(image)
        if found.landmarks is None:
            continue  # try the next frame
        images.append(image)
        landmarks.append(np.asarray(found.landmarks, np.float32))
        indices.append(i)
        boxes.append(found.box)
    if len(indices) < n:
        raise ValueError(f"found a face on only {len(indices)} of the {n} frames asked for in {ctx.source_video()}")
    return FaceSamples(np.stack(images), np.stack(landmarks), indices, boxes)


# ----------------------------------------------------------------------------------------------
# 03 (a): the offline generator at the 12 points of Sec. S6
# ----------------------------------------------------------------------------------------------


@dataclass
class GeneratedRow:
    """One source frame and the generator's face for one target ``(valence, arousal)``."""

    valence: float
    arousal: float
    label: str
    source: np.ndarray
    source_landmarks: np.ndarray
    generated: GeneratedFace
    source_box: tuple[float, float, float, float] | None = None


def generate_at_points(generator, faces: FaceSamples, points=S6_POINTS) -> list[GeneratedRow]:
    """The generator applied at every ``(valence, arousal, label)`` point, cycling through the source faces."""
    from tqdm.auto import tqdm

    rows = []
    for k, (v, a, label) in enumerate(tqdm(points, desc="generating", leave=False)):
        j = k % len(faces)
        out = generator(faces.images[j], faces.landmarks[j], v, a)
        box = faces.boxes[j] if faces.boxes else None
        rows.append(GeneratedRow(v, a, label, faces.images[j], faces.landmarks[j], out, box))
    return rows


def va_table(rows: Sequence[GeneratedRow], source_va: np.ndarray, generated_va: np.ndarray) -> list[dict[str, str]]:
    """A table row per point: target ``e``, the judge's (valence, arousal) of the source and of the generated face."""
    return [
        {
            "target e": f"({r.valence:+.2f}, {r.arousal:+.2f}) {r.label}",
            "judge(source)": f"({s[0]:+.2f}, {s[1]:+.2f})",
            "judge(generated)": f"({g[0]:+.2f}, {g[1]:+.2f})",
            "moved by": f"({g[0] - s[0]:+.2f}, {g[1] - s[1]:+.2f})",
        }
        for r, s, g in zip(rows, source_va, generated_va)
    ]


def lip_alignment(detector, rows: Sequence[GeneratedRow]) -> dict[str, np.ndarray]:
    """What Eq. 8 asks of a lip-aligned generator, measured on its outputs.

    The landmark detector ``D_l`` is run on the source ``I`` and on the generated ``I_E``; per row:

    * ``lip_shift_px``: mean distance of the 20 lip landmarks (48-67) between ``D_l(I_E)`` and ``D_l(I)``
      (the quantity L_ll penalises), and ``lip_shift_iod_pct`` the same in % of the inter-ocular distance;
    * ``upper_shift_px``: the same for brows and eyes, which an expression *should* move;
    * ``lip_pixel_mse``: ``mean(M_l * (I_E - I))^2`` over the lip rectangle M_l, intensities in [0, 1] (L_lp);
    * ``lip_opening_change_px``: mean change of the gaps between the inner lips (:func:`lip_opening`), the part of
      the lips the audio drives: the offline generator moves the lip corners for smiles and frowns, not the gap.
    """
    lip, upper, iod, pixel, opening = [], [], [], [], []
    for row in rows:
        src = detector(row.source, row.source_box)
        gen = detector(row.generated.image, src.box)
        if src.landmarks is None or gen.landmarks is None:
            raise ValueError("the landmark detector lost the face on a source or generated image")
        shift = np.linalg.norm(np.asarray(gen.landmarks, np.float64) - src.landmarks, axis=1)
        lip.append(shift[list(LIP_POINTS)].mean())
        opening.append(np.abs(lip_opening(gen.landmarks) - lip_opening(src.landmarks)).mean())
        upper.append(shift[list(UPPER_FACE_POINTS)].mean())
        iod.append(face_frame(np.asarray(src.landmarks, np.float64))[2])
        mask = lip_rect_mask(np.asarray(src.landmarks, np.float64), row.source.shape[:2])
        diff = (row.generated.image.astype(np.float64) - row.source.astype(np.float64)) / 255.0
        pixel.append(float((diff[mask] ** 2).mean()))
    lip, iod = np.array(lip), np.array(iod)
    return {
        "lip_shift_px": lip,
        "lip_shift_iod_pct": 100 * lip / iod,
        "upper_shift_px": np.array(upper),
        "lip_pixel_mse": np.array(pixel),
        "lip_opening_change_px": np.array(opening),
    }


def _face_view(image: np.ndarray, landmarks: np.ndarray, margin: float = 0.3) -> tuple[slice, slice]:
    """Row/column slices of a square around the face (clipped to the image)."""
    x0, y0, x1, y1 = face_box(landmarks, margin=margin)
    h, w = image.shape[:2]
    return slice(max(int(y0), 0), min(int(y1), h)), slice(max(int(x0), 0), min(int(x1), w))


def plot_generated_pairs(rows: Sequence[GeneratedRow], pairs_per_line: int = 2, show_lips: bool = True):
    """Fig. 2 for every S6 point: (source, generated) side by side, the lip landmarks of both drawn in lime
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


def plot_va_shift(
    rows: Sequence[GeneratedRow], source_va: np.ndarray, generated_va: np.ndarray, judge_name: str, ax=None
):
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


def face_crops(faces: FaceSamples, size: int, margin: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Square face crops at g_LEF's resolution (the role of FFHQ alignment) and their lip landmarks.

    Returns ``images [N, 3, size, size]`` in [0, 1] and ``lips [N, 20, 2]`` (x, y) pixels of the crops.
    """
    crops, lips = [], []
    for image, lm in zip(faces.images, faces.landmarks):
        x0, y0, x1, y1 = face_box(lm, margin=margin)
        crops.append(crop_face(image, lm, margin=margin, size=size))
        # crop_face cuts [floor(x0), floor(x0) + round(side)); map the landmarks the same way
        side = max(int(round(x1 - x0)), 1)
        lips.append((lm[list(LIP_POINTS)] - [np.floor(x0), np.floor(y0)] + 0.5) * size / side - 0.5)
    images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255)
    return images, torch.tensor(np.stack(lips), dtype=torch.float32)


def fit_generator_to_faces(generator, images: torch.Tensor, steps: int, lr: float = 0.02, latent_lr: float = 0.05):
    """Fit a StyleGAN2's synthesis network and one W+ code per image jointly to ``images`` (an auto-decoder),
    by the multi-scale pixel MSE; returns the codes ``W [N, num_ws, D]`` and the loss history.

    Offline stand-in for "pretrained FFHQ StyleGAN2 + W+ inversion" (Sec. S2.1): a generator that has
    never seen a face cannot invert one, so the tiny g_LEF first learns the subject's crops.
    """
    from tqdm.auto import tqdm

    from etlib.emoface.stylegan2 import multiscale_pixel_loss, to_unit

    with torch.no_grad():
        start = generator.w_plus(generator.latent_avg[None].expand(images.shape[0], -1))
        ws = (start + 0.1 * torch.randn(start.shape, generator=torch.Generator().manual_seed(0)).to(start)).clone()
    ws.requires_grad_(True)
    optimizer = torch.optim.Adam(
        [{"params": generator.synthesis_parameters(), "lr": lr}, {"params": [ws], "lr": latent_lr}]
    )
    history = []
    for _ in tqdm(range(steps), desc="fit tiny StyleGAN2", leave=False):
        loss = multiscale_pixel_loss(to_unit(generator.synthesis(ws)), images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    return ws.detach(), history


@dataclass
class LEFDemo:
    """What notebook 03 (b) trains: g_LEF, its data, the differentiable lip detector and judge of Eq. 7."""

    model: torch.nn.Module
    data: object  # etlib.emoface.lef_train.LEFTrainingData
    detector: torch.nn.Module
    judge: torch.nn.Module
    pretrained: bool
    notes: list[str]
    fit_history: list[float] = field(default_factory=list)
    detector_history: list[float] = field(default_factory=list)


def build_lef_demo(
    faces: FaceSamples,
    pretrained: bool,
    size: int = 32,
    width: int = 32,
    fit_steps: int = 100,
    detector_steps: int = 150,
    inversion_steps: int = 300,
    device: str = "cpu",
    generator_path=None,
    emostyle_path=None,
    config=None,
) -> LEFDemo:
    """g_LEF ready for :func:`etlib.emoface.lef_train.train_lef` on the subject's faces.

    ``pretrained=True`` (StyleGAN2 FFHQ and EmoStyle present, ``backends.choose("face_generator").accelerated``):
    the paper's g_LEF from those weights (``generator_path``/``emostyle_path``/``config`` override the registry's,
    for tests), sources inverted into W+ (:func:`etlib.emoface.stylegan2.invert`). Otherwise a tiny g_LEF
    (``LEFConfig.tiny(size, width)``) whose StyleGAN2 is first fitted to the crops (:func:`fit_generator_to_faces`).

    The lip detector ``D_l`` is FAN when its weights are present, else a soft-argmax CNN trained here on the
    crops' dlib lip landmarks; the judge is :func:`etlib.emoface.judge.get_judge`. VGGFace2 (L_id) has no
    differentiable offline counterpart, so ``train_lef`` gets ``identity=None`` and drops that term.
    """
    from etlib.emoface.judge import get_judge
    from etlib.emoface.lef import LEFConfig, LipAlignedEmotionalFaceGenerator
    from etlib.emoface.lef_train import LEFTrainingData, SoftArgmaxLipDetector, train_lip_detector
    from etlib.emoface.stylegan2 import invert
    from etlib.weights import is_present

    notes: list[str] = []
    if pretrained:
        model = LipAlignedEmotionalFaceGenerator.from_pretrained(generator_path, emostyle_path, config)
        size = model.generator.size
        notes.append(f"pretrained g_LEF: StyleGAN2 {size}px + EmoStyle EmoExtract; E and M_lip start fresh")
    else:
        torch.manual_seed(0)
        model = LipAlignedEmotionalFaceGenerator.build(config or LEFConfig.tiny(size, width))
        size = model.generator.size
        notes.append(
            f"tiny g_LEF ({size}px, width {model.generator.style_dim}) from scratch: NOT the paper's pretrained "
            "model (StyleGAN2 FFHQ / EmoStyle weights are absent)"
        )
    model = model.to(device)
    images, lips = face_crops(faces, size)
    images, lips = images.to(device), lips.to(device)
    fit_history: list[float] = []
    if pretrained:
        ws = invert(model.generator, images, steps=inversion_steps)
    else:
        ws, fit_history = fit_generator_to_faces(model.generator, images, fit_steps)
        notes.append(
            f"its StyleGAN2 was first fitted to the {len(images)} crops for {fit_steps} steps (stands in for FFHQ)"
        )
    detector_history: list[float] = []
    if is_present("fan_2d_68"):
        from etlib.emoface.lef_train import FANLipDetector

        detector = FANLipDetector.from_registry().to(device)
        notes.append("D_l: FAN (face-alignment 2DFAN4), soft-argmax")
    else:
        torch.manual_seed(0)
        detector = SoftArgmaxLipDetector(16).to(device)
        detector_history = train_lip_detector(detector, images, lips, steps=detector_steps, batch_size=8)
        notes.append(
            f"D_l: soft-argmax CNN trained {detector_steps} steps on the crops' dlib lip landmarks (FAN absent)"
        )
    judge = get_judge(device=device)
    notes.append(f"L_emo judge: {judge.name}; L_id dropped (no differentiable VGGFace2 offline)")
    return LEFDemo(
        model, LEFTrainingData(images, ws, lips), detector, judge, pretrained, notes, fit_history, detector_history
    )


def loss_drop(history: Sequence[dict[str, float]], window: int = 5, weights: GeneratorWeights = GENERATOR) -> dict:
    """``{term: (first, last)}``: the weighted terms of Eq. 7 (and ``total``) averaged over the first and the
    last ``window`` steps."""
    if len(history) < 2:
        raise ValueError("need at least two steps of history")
    window = max(1, min(window, len(history) // 2))
    out = {}
    for term in [t for t in LEF_TERMS if t in history[0]] + ["total"]:
        lam = getattr(weights, LEF_TERMS[term]) if term in LEF_TERMS else 1.0
        first = lam * float(np.mean([h[term] for h in history[:window]]))
        last = lam * float(np.mean([h[term] for h in history[-window:]]))
        out[term] = (first, last)
    return out


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
def plot_lef_samples(demo: LEFDemo, emotions: Sequence[tuple[float, float, str]], n_sources: int = 3):
    """Rows of: source crop I, its reconstruction G(W), and g_LEF's I_E for each ``(v, a, label)``; lime dots:
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


def cloning_rows(generator, faces: FaceSamples, settings=FIG_S4_SETTINGS, first: int = 0) -> list[CloningRow]:
    """Generate, paste and seamlessly clone for each ``(valence, arousal, label)``, sources taken in turn
    from ``faces`` starting at ``first``."""
    rows = []
    for k, (v, a, label) in enumerate(settings):
        j = (first + k) % len(faces)
        out = generator(faces.images[j], faces.landmarks[j], v, a)
        paste = compose_emotional_face(faces.images[j], out.image, out.landmarks68, method="paste")
        seamless = compose_emotional_face(faces.images[j], out.image, out.landmarks68, method="seamless")
        rows.append(CloningRow(v, a, label, faces.images[j], faces.landmarks[j], out, paste, seamless))
    return rows


def boundary_energy_rows(rows: Sequence[CloningRow]) -> list[dict[str, object]]:
    """A table row per composite pair: the seam energy excess and ratio of paste and seamless cloning."""
    table = []
    for row in rows:
        table.append(
            {
                "e": f"({row.valence:+.2f}, {row.arousal:+.2f}) {row.label}",
                "paste excess": f"{row.energy('paste'):.2e}",
                "seamless excess": f"{row.energy('seamless'):.2e}",
                "paste ratio": f"{row.energy('paste', 'ratio'):.3f}",
                "seamless ratio": f"{row.energy('seamless', 'ratio'):.3f}",
            }
        )
    return table


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

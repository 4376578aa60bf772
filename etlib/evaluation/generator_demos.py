"""Running the emotional face generators on a subject's frames for notebooks 03 (g_LEF, Sec. 3.3.1, S2) and 04
(seamless cloning, Sec. S4.1): the frames and crops they start from, the generated rows, what Eq. 8 measures on
them, the tiny neural g_LEF demo and the cloning rows. The figures of these are :mod:`etlib.viz.emotion`'s.

Offline generator (03a): :func:`subject_faces` -> :func:`generate_at_points` -> the judge
(:func:`etlib.emoface.scoring.judge_va`, :func:`~etlib.emoface.scoring.va_agreement`, Eqs. S17-S18) and
:func:`lip_alignment` (what L_ll and L_lp of Eq. 8 measure). Neural g_LEF (03b): :func:`face_crops`,
:func:`build_lef_demo`, :func:`loss_drop`. Cloning (04): :func:`cloning_rows`, :func:`boundary_energy_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from etlib.base import LIP_POINTS, face_box
from etlib.config import GENERATOR, S6_POINTS, GeneratorWeights
from etlib.emoface.cloning import CloningRow, compose_emotional_face
from etlib.emoface.judge import crop_face
from etlib.emoface.lef_train import LEF_TERMS
from etlib.emoface.offline import GeneratedFace, face_frame, lip_opening, lip_rect_mask

#: Landmarks an expression should move (brows 17-26, eyes 36-47), to contrast with the pinned lips.
UPPER_FACE_POINTS = tuple(range(17, 27)) + tuple(range(36, 48))


#: The two settings of Fig. S4: (valence, arousal, label).
FIG_S4_SETTINGS: tuple[tuple[float, float, str], ...] = ((0.6, 0.2, "happy"), (-0.8, 0.4, "angry"))


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

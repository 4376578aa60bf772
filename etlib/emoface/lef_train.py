"""Training g_LEF: the losses of Eq. 7 / Eqs. S1-S6 and a resumable trainer (Sec. 3.3.1, S1, S2.2).

    L = l1 L_ll + l2 L_lp + l3 L_reg + l4 L_emo + l5 L_id                                      (Eq. 7 / S6)

with the paper's weights ``etlib.config.GENERATOR`` (1, 5, 0.03, 0.2, 1.5):

* ``L_ll = ||L^_l - L_l||^2`` (S1): lip landmarks of ``I_E`` against those of ``I``, found by a
  *differentiable* lip detector ``lip_detector(images) -> [B, 20, 2]`` pixels (:class:`FANLipDetector`
  with FAN's weights; :class:`SoftArgmaxLipDetector` trained here otherwise);
* ``L_lp = ||M_l (.) (I_E - I)||^2`` (S2): pixels inside the rectangle around the source lips;
* ``L_reg = ||d_l||^2`` (S3);
* ``L_emo = ||judge(I_E) - e||^2`` (S4): any differentiable judge (``etlib.emoface.judge``: EmoNet, FER);
* ``L_id = ||VF(I_E) - VF(I)||_1`` (S5): any identity embedder (VGGFace2 in the paper).

Norms are averaged (PyTorch's ``mse_loss`` / ``l1_loss``, as EmoStyle's code does) so the weights do
not depend on the resolution; landmark coordinates are divided by the image size first; L_emo sums the
squares of the valence and arousal errors and averages over the batch (as ``etlib.emoface.judge``).

The trainer trains E and M_lip and fine-tunes the StyleGAN2 synthesis network with Adam at
``OPTIMIZER.generator_lr`` (1e-4), EmoExtract and the mapping network frozen; the paper runs 10 epochs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from etlib.config import GENERATOR, OPTIMIZER, GeneratorWeights
from etlib.emoface.lef import N_LIP, LEFOutput, LipAlignedEmotionalFaceGenerator, select_lips

LipDetector = Callable[[torch.Tensor], torch.Tensor]
Judge = Callable[[torch.Tensor], object]
IdentityEmbedder = Callable[[torch.Tensor], torch.Tensor]

# ----------------------------------------------------------------------------------------------
# Losses (Eqs. S1-S5)
# ----------------------------------------------------------------------------------------------


#: The five terms of Eq. 7 (S6) as the trainer names them, with the paper's weight field.
LEF_TERMS = {
    "lip_landmark": "lambda1_lip_landmark",
    "lip_pixel": "lambda2_lip_pixel",
    "regularization": "lambda3_regularization",
    "emotion": "lambda4_emotion",
    "identity": "lambda5_identity",
}


def lip_landmark_loss(predicted: torch.Tensor, target: torch.Tensor, image_size: int) -> torch.Tensor:
    """Eq. S1: ``L_ll = ||L^_l - L_l||^2`` on lip landmarks ``[B, 20, 2]`` (pixels / ``image_size``)."""
    predicted, target = select_lips(predicted), select_lips(target)
    if predicted.shape != target.shape:
        raise ValueError(f"landmark shapes differ: {tuple(predicted.shape)} vs {tuple(target.shape)}")
    return F.mse_loss(predicted / image_size, target / image_size)


def lip_box_mask(lips: torch.Tensor, height: int, width: int, margin: float = 0.1) -> torch.Tensor:
    """The rectangular lip mask ``M_l`` of Eq. S2: the lip landmarks' bounding box, grown by ``margin`` of
    its size on each side. Returns ``[B, 1, height, width]`` of 0/1."""
    lips = select_lips(lips).detach()
    lo, hi = lips.amin(dim=1), lips.amax(dim=1)  # [B, 2] (x, y)
    pad = (hi - lo) * margin
    lo, hi = lo - pad, hi + pad
    xs = torch.arange(width, device=lips.device, dtype=lips.dtype)
    ys = torch.arange(height, device=lips.device, dtype=lips.dtype)
    in_x = (xs[None, :] >= lo[:, 0:1]) & (xs[None, :] <= hi[:, 0:1])  # [B, W]
    in_y = (ys[None, :] >= lo[:, 1:2]) & (ys[None, :] <= hi[:, 1:2])  # [B, H]
    return (in_y[:, :, None] & in_x[:, None, :]).to(lips.dtype)[:, None]


def lip_pixel_loss(output: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. S2: ``L_lp = ||M_l (.) (I_E - I)||^2``, the mean squared error over the masked pixels."""
    if output.shape != source.shape:
        raise ValueError(f"I_E {tuple(output.shape)} and I {tuple(source.shape)} must have the same shape")
    squared = (mask * (output - source)).pow(2).sum()
    return squared / (mask.sum() * output.shape[1]).clamp_min(1.0)


def regularization_loss(d_lip: torch.Tensor) -> torch.Tensor:
    """Eq. S3: ``L_reg = ||d_l||^2`` (mean square), keeps the lip modification small."""
    return d_lip.pow(2).mean()


def valence_arousal(judged: object) -> torch.Tensor:
    """``[B, 2]`` from a judge's output: an object with ``.valence``/``.arousal`` (``etlib.emoface.judge``),
    a dict with those keys (EmoNet), a ``(valence, arousal)`` pair or a ``[B, 2]`` tensor."""
    if hasattr(judged, "valence") and hasattr(judged, "arousal"):
        v, a = judged.valence, judged.arousal
    elif isinstance(judged, dict) and "valence" in judged:
        v, a = judged["valence"], judged["arousal"]
    elif isinstance(judged, (tuple, list)) and len(judged) == 2:
        v, a = judged
    elif torch.is_tensor(judged) and judged.ndim == 2 and judged.shape[1] == 2:
        return judged
    else:
        raise ValueError(f"cannot read valence/arousal from a {type(judged).__name__}")
    return torch.stack((v.reshape(-1), a.reshape(-1)), dim=-1)


def emotion_loss(judge: Judge, images: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Eq. S4: ``L_emo = ||EmoNet(I_E) - e||^2`` (summed over valence and arousal, averaged over the batch,
    as ``etlib.emoface.judge`` does) with any differentiable judge on [0, 1] images."""
    # The judge sees the image as it would be saved: clamped to [0, 1].
    va = valence_arousal(judge(images.clamp(0, 1)))
    if va.shape != e.shape:
        raise ValueError(f"judge gave {tuple(va.shape)} valence/arousal, target e is {tuple(e.shape)}")
    return (va - e.to(va)).pow(2).sum(dim=-1).mean()


def identity_loss(
    embedder: IdentityEmbedder, output: torch.Tensor, source: torch.Tensor | None = None, source_embedding=None
) -> torch.Tensor:
    """Eq. S5: ``L_id = ||VF(I_E) - VF(I)||_1`` (``source_embedding`` may be precomputed)."""
    if source_embedding is None:
        if source is None:
            raise ValueError("identity_loss needs the source image or its embedding")
        with torch.no_grad():
            source_embedding = embedder(source)
    return F.l1_loss(embedder(output), source_embedding.detach())


def lef_losses(
    out: LEFOutput,
    source: torch.Tensor,
    e: torch.Tensor,
    source_lips: torch.Tensor,
    lip_detector: LipDetector | None,
    judge: Judge | None = None,
    identity: IdentityEmbedder | None = None,
    weights: GeneratorWeights = GENERATOR,
    source_embedding: torch.Tensor | None = None,
    lip_margin: float = 0.1,
) -> dict[str, torch.Tensor]:
    """Eq. 7 / S6: every term and ``total``. A term whose model is ``None`` (or whose weight is 0) is
    left out of the dict and of the total."""
    size = out.image.shape[-1]
    terms: dict[str, torch.Tensor] = {}
    if lip_detector is not None and weights.lambda1_lip_landmark:
        terms["lip_landmark"] = lip_landmark_loss(lip_detector(out.image), source_lips, size)
    if weights.lambda2_lip_pixel:
        mask = lip_box_mask(source_lips, size, size, lip_margin)
        terms["lip_pixel"] = lip_pixel_loss(out.image, source, mask)
    if weights.lambda3_regularization:
        terms["regularization"] = regularization_loss(out.d_lip)
    if judge is not None and weights.lambda4_emotion:
        terms["emotion"] = emotion_loss(judge, out.image, e)
    if identity is not None and weights.lambda5_identity:
        terms["identity"] = identity_loss(identity, out.image, source, source_embedding)
    lam = {
        "lip_landmark": weights.lambda1_lip_landmark,
        "lip_pixel": weights.lambda2_lip_pixel,
        "regularization": weights.lambda3_regularization,
        "emotion": weights.lambda4_emotion,
        "identity": weights.lambda5_identity,
    }
    terms["total"] = sum((lam[k] * v for k, v in terms.items()), out.image.new_zeros(()))
    return terms


# ----------------------------------------------------------------------------------------------
# Differentiable lip detectors
# ----------------------------------------------------------------------------------------------


def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Expected ``(x, y)`` (in heatmap pixels) under the spatial softmax of ``logits [B, K, h, w]``."""
    b, k, h, w = logits.shape
    prob = logits.flatten(2).softmax(-1).view(b, k, h, w)
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    return torch.stack(((prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)), dim=-1)


class SoftArgmaxLipDetector(nn.Module):
    """A small CNN lip detector: coordinate channels + convolutions -> 20 heatmaps at half resolution ->
    soft-argmax -> ``[B, 20, 2]`` pixels. Differentiable, so it can serve L_ll (Eq. S1) when FAN's weights
    are absent; train it with :func:`train_lip_detector` on images with known lip landmarks."""

    def __init__(self, width: int = 32, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature
        self.net = nn.Sequential(
            nn.Conv2d(5, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=4, dilation=4),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, N_LIP, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        ys = torch.linspace(-1, 1, h, device=images.device, dtype=images.dtype)
        xs = torch.linspace(-1, 1, w, device=images.device, dtype=images.dtype)
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))[None].expand(b, -1, -1, -1)
        logits = self.net(torch.cat((images, coords), dim=1)) / self.temperature
        pts = soft_argmax(logits)  # half-resolution pixels
        scale = torch.tensor([w / logits.shape[-1], h / logits.shape[-2]], dtype=pts.dtype, device=pts.device)
        return (pts + 0.5) * scale - 0.5


def train_lip_detector(
    detector: nn.Module,
    images: torch.Tensor,
    lips: torch.Tensor,
    steps: int = 200,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Fit ``detector`` to ``(images [N,3,H,W], lips [N,20,2] pixels)`` by the landmark MSE; returns losses."""
    lips = select_lips(lips)
    if images.shape[0] != lips.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {lips.shape[0]} landmark sets")
    rng = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(detector.parameters(), lr=lr)
    history = []
    for _ in tqdm(range(steps), desc="lip detector", disable=not progress, leave=False):
        idx = torch.randint(images.shape[0], (min(batch_size, images.shape[0]),), generator=rng)
        loss = lip_landmark_loss(detector(images[idx]), lips[idx], images.shape[-1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    return history


class FANLipDetector(nn.Module):
    """FAN [7] (face-alignment's 2DFAN4 TorchScript network) as a differentiable lip detector.

    The face-aligned image is resized to FAN's 256x256 input; the 20 lip heatmaps (64x64) are turned into
    coordinates by a soft-argmax (sharpened by ``beta``) instead of face-alignment's non-differentiable
    arg-max, and mapped back to the image's pixels. The image is taken as FAN's face crop, which suits
    the aligned face crops g_LEF generates.
    """

    def __init__(self, fan: nn.Module, beta: float = 50.0):
        super().__init__()
        self.fan, self.beta = fan, beta
        self.fan.requires_grad_(False)

    @classmethod
    def from_registry(cls, beta: float = 50.0) -> FANLipDetector:
        """Load ``fan_2d_68`` (raises ``WeightsMissingError`` naming the file and how to fetch it)."""
        from etlib.weights import ensure

        return cls(torch.jit.load(str(ensure("fan_2d_68")), map_location="cpu").eval(), beta)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        inp = F.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False)
        heatmaps = self.fan(inp)
        heatmaps = heatmaps[-1] if isinstance(heatmaps, (list, tuple)) else heatmaps
        pts = soft_argmax(self.beta * heatmaps[:, 48:68])
        scale = torch.tensor([w / heatmaps.shape[-1], h / heatmaps.shape[-2]], dtype=pts.dtype, device=pts.device)
        return (pts + 0.5) * scale - 0.5


# ----------------------------------------------------------------------------------------------
# Synthetic lips (smoke runs and tests without face data)
# ----------------------------------------------------------------------------------------------


def mouth_landmarks(center: torch.Tensor, half_width: torch.Tensor, opening: torch.Tensor) -> torch.Tensor:
    """20 lip points in the 68-point order on two ellipses: outer 48-59 (left corner, clockwise in image
    coordinates over the upper lip), inner 60-67. ``center [B, 2]``, ``half_width``/``opening`` ``[B]``."""
    outer_t = torch.linspace(0, 2 * math.pi, 13)[:-1]
    inner_t = torch.linspace(0, 2 * math.pi, 9)[:-1]
    outer_h = half_width * 0.35 + opening
    inner_w, inner_h = half_width * 0.7, opening

    def ellipse(t: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # angle 0 = left corner; increasing t goes over the top (y decreases) first
        return torch.stack((-a[:, None] * torch.cos(t), -b[:, None] * torch.sin(t)), dim=-1)

    pts = torch.cat((ellipse(outer_t, half_width, outer_h), ellipse(inner_t, inner_w, inner_h)), dim=1)
    return pts + center[:, None, :]


def render_mouths(lips: torch.Tensor, size: int, skin=(0.85, 0.65, 0.55), lip=(0.7, 0.15, 0.2)) -> torch.Tensor:
    """Draw soft ellipse mouths with the given lip points on skin: ``[B, 3, size, size]`` in [0, 1]."""
    lips = select_lips(lips)
    center = lips[:, :12].mean(1)
    a_out = (lips[:, :12, 0].amax(1) - lips[:, :12, 0].amin(1)) / 2
    b_out = (lips[:, :12, 1].amax(1) - lips[:, :12, 1].amin(1)) / 2
    a_in = (lips[:, 12:, 0].amax(1) - lips[:, 12:, 0].amin(1)) / 2
    b_in = (lips[:, 12:, 1].amax(1) - lips[:, 12:, 1].amin(1)) / 2
    grid = torch.arange(size, dtype=lips.dtype)
    dx = grid[None, None, :] - center[:, 0, None, None]
    dy = grid[None, :, None] - center[:, 1, None, None]

    def inside(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        r = (dx / a[:, None, None].clamp_min(0.5)) ** 2 + (dy / b[:, None, None].clamp_min(0.5)) ** 2
        return torch.sigmoid((1 - r) * 6)

    outer, inner = inside(a_out, b_out), inside(a_in, b_in)
    skin_t, lip_t = torch.tensor(skin)[None, :, None, None], torch.tensor(lip)[None, :, None, None]
    image = skin_t * (1 - outer[:, None]) + lip_t * outer[:, None]
    return image * (1 - 0.9 * inner[:, None])  # dark mouth opening


def synthetic_mouth_batch(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random mouths: images ``[n, 3, size, size]`` and their lip landmarks ``[n, 20, 2]`` pixels."""
    rng = torch.Generator().manual_seed(seed)
    center = size * (0.5 + 0.1 * (torch.rand(n, 2, generator=rng) - 0.5))
    center[:, 1] += 0.15 * size
    half_width = size * (0.18 + 0.08 * torch.rand(n, generator=rng))
    opening = size * (0.01 + 0.08 * torch.rand(n, generator=rng))
    lips = mouth_landmarks(center, half_width, opening)
    return render_mouths(lips, size), lips


# ----------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------


@dataclass
class LEFTrainingData:
    """Source images with what g_LEF needs of them (computed once: inversion and detection are slow).

    ``images [N, 3, S, S]`` in [0, 1] at the generator's resolution, ``ws [N, num_ws, D]`` their W+
    inversions, ``lips [N, 20, 2]`` the detector's lip landmarks on them (pixels).
    """

    images: torch.Tensor
    ws: torch.Tensor
    lips: torch.Tensor

    def __post_init__(self) -> None:
        self.lips = select_lips(self.lips)
        n = self.images.shape[0]
        if self.ws.shape[0] != n or self.lips.shape[0] != n:
            raise ValueError(
                f"images ({n}), ws ({self.ws.shape[0]}) and lips ({self.lips.shape[0]}) must have one row per image"
            )
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, S, S], got {tuple(self.images.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]


def sample_emotions(n: int, generator: torch.Generator, radius: float = 1.0) -> torch.Tensor:
    """Random target valence/arousal, uniform in the disc of ``radius`` (the circumplex)."""
    r = radius * torch.rand(n, generator=generator).sqrt()
    t = 2 * math.pi * torch.rand(n, generator=generator)
    return torch.stack((r * torch.cos(t), r * torch.sin(t)), dim=-1)


def save_lef_checkpoint(path: str | Path, model: LipAlignedEmotionalFaceGenerator, optimizer, step: int, history):
    """Write the trained parts (E, M_lip, synthesis network), the optimiser and the loss history."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {"step": step, "model": model.trainable_state_dict(), "optimizer": optimizer.state_dict(), "history": history},
        tmp,
    )
    tmp.replace(path)  # never leave a half-written checkpoint
    return path


def load_lef_checkpoint(path: str | Path, model: LipAlignedEmotionalFaceGenerator, optimizer=None) -> dict:
    """Restore a :func:`save_lef_checkpoint` file into ``model`` (and ``optimizer``); returns the file's dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"g_LEF checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "step" not in ckpt:
        raise ValueError(f"{path} is not a g_LEF training checkpoint (needs 'model' and 'step')")
    expected = model.trainable_state_dict()
    missing = [k for k in expected if k not in ckpt["model"]]
    wrong = [k for k, v in expected.items() if k in ckpt["model"] and ckpt["model"][k].shape != v.shape]
    if missing or wrong:
        raise ValueError(f"{path} does not fit this g_LEF: missing {missing[:5]}, shape mismatch {wrong[:5]}")
    model.load_state_dict(ckpt["model"], strict=False)
    if optimizer is not None and "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt


def train_lef(
    model: LipAlignedEmotionalFaceGenerator,
    data: LEFTrainingData,
    lip_detector: LipDetector | None,
    judge: Judge | None = None,
    identity: IdentityEmbedder | None = None,
    steps: int | None = None,
    batch_size: int = 4,
    lr: float = OPTIMIZER.generator_lr,
    weights: GeneratorWeights = GENERATOR,
    emotions: torch.Tensor | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 100,
    resume: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train g_LEF with Eq. 7 (Adam on E, M_lip and the StyleGAN2 synthesis network).

    Args:
        data: sources (:class:`LEFTrainingData`).
        lip_detector, judge, identity: the differentiable models of L_ll, L_emo, L_id (``None`` drops the term).
        steps: optimiser steps; default ``OPTIMIZER.generator_epochs`` (10) epochs of ``batch_size``.
        emotions: fixed target ``e`` per source ``[N, 2]``; default a fresh random ``e`` per sample and step.
        checkpoint_path: written every ``checkpoint_every`` steps and at the end; with ``resume`` an existing
            file is loaded and training continues from its step (the batches and targets of each step
            depend only on ``seed`` and the step, so a resumed run matches an uninterrupted one).

    Returns:
        The loss history: one dict per step with every term, ``total`` and ``step``.
    """
    n = len(data)
    if steps is None:
        steps = OPTIMIZER.generator_epochs * math.ceil(n / batch_size)
    if emotions is not None and emotions.shape != (n, 2):
        raise ValueError(f"emotions must be [{n}, 2], got {tuple(emotions.shape)}")
    model.freeze_pretrained()
    for frozen in (lip_detector, judge, identity):  # pretrained judges of the losses are never trained here
        if isinstance(frozen, nn.Module):
            frozen.requires_grad_(False)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=lr)
    history: list[dict[str, float]] = []
    start = 0
    if checkpoint_path is not None and resume and Path(checkpoint_path).is_file():
        ckpt = load_lef_checkpoint(checkpoint_path, model, optimizer)
        start, history = int(ckpt["step"]), list(ckpt.get("history", []))
    source_embeddings = None
    if identity is not None and weights.lambda5_identity:
        with torch.no_grad():
            source_embeddings = identity(data.images)

    model.train()
    bar = tqdm(range(start, steps), desc="g_LEF", disable=not progress, initial=start, total=steps)
    for step in bar:
        rng = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randperm(n, generator=rng)[: min(batch_size, n)]
        e = (emotions[idx] if emotions is not None else sample_emotions(len(idx), rng)).to(data.ws)
        out = model(data.ws[idx], e, data.lips[idx])
        terms = lef_losses(
            out,
            data.images[idx],
            e,
            data.lips[idx],
            lip_detector,
            judge,
            identity,
            weights,
            None if source_embeddings is None else source_embeddings[idx],
        )
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        record = {k: float(v.detach()) for k, v in terms.items()}
        record["step"] = step
        history.append(record)
        bar.set_postfix(loss=f"{record['total']:.4f}")
        done = step + 1
        if checkpoint_path is not None and (done % checkpoint_every == 0 or done == steps):
            save_lef_checkpoint(checkpoint_path, model, optimizer, done, history)
    return history

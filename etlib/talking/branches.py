"""The three manipulation networks of EmoTalkingGaussian (Sec. 3.2, Eqs. 3-5).

* :class:`MouthBranch` ``f_M`` (Eq. 3): ``δm = f_M(H_M(mu) ⊕ a)``, position offsets of the inside-mouth Gaussians.
* :class:`FaceBranch` ``f_F`` (Eq. 4): ``δu = f_F(H_F(mu) ⊕ a_r ⊕ u_r)`` with ``a_r = A_a ⊙ a``,
  ``u_r = A_u ⊙ u``; offsets of position, scale and rotation of the face Gaussians. With
  ``with_emotion=True`` it is the paper's "Combined face b." ablation (Tab. 4): ``f_F`` also takes
  ``e_r = A_e ⊙ e`` and there is no emotion branch.
* :class:`EmotionBranch` ``f_E`` (Eq. 5): ``δe = f_E(H_E(mu + Δmu_u) ⊕ e_r)`` with ``e_r = A_e ⊙ e``
  evaluated at the face-deformed position.

Every branch owns its tri-plane hash encoder and (for audio) its :class:`AudioEncoder`, as in
TalkingGaussian. Output layers start near zero, so a fresh branch leaves the canonical Gaussians in place.
Offsets are returned, not applied: ``theta = theta_C + δ`` is the model's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from etlib.config import HashGridSettings
from etlib.encoders.triplane import TriPlaneEncoder
from etlib.talking.attention import MLP, AudioEncoder, RegionAttention, as_condition

#: Std of the output layers' initial weights: offsets start at ~0 while gradients still flow.
OUTPUT_INIT_STD = 1e-4
#: TalkingGaussian scales position offsets by 1e-2 (the head lives in a box of half-width 0.15).
POSITION_OFFSET_SCALE = 1e-2
#: Valence and arousal.
VA_DIM = 2


@dataclass
class Deformation:
    """Offsets of one branch for N Gaussians, plus the attention maps it used (Fig. S7)."""

    d_xyz: torch.Tensor  # (N, 3)
    d_scale: torch.Tensor | None = None  # (N, 3), added to the (log-)scales
    d_rotation: torch.Tensor | None = None  # (N, 4), added to the quaternions
    attention: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (N, cond_dim)


def _check_positions(mu: torch.Tensor) -> None:
    if mu.ndim != 2 or mu.shape[1] != 3:
        raise ValueError(f"expected canonical positions of shape (N, 3), got {tuple(mu.shape)}")


def _init_output(mlp: MLP) -> None:
    nn.init.normal_(mlp.output_layer.weight, std=OUTPUT_INIT_STD)


def _split_offsets(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Network output ``(N, 10)`` -> ``Δmu`` (scaled), ``Δs``, ``Δq``."""
    return h[:, :3] * POSITION_OFFSET_SCALE, h[:, 3:6], h[:, 6:10]


class MouthBranch(nn.Module):
    """``f_M`` (Eq. 3): inside-mouth position offsets from ``H_M(mu) ⊕ a``.

    Args:
        audio_in_dim, audio_window, audio_frames: shape ``(T, C, W)`` of the audio input window.
        audio_dim: size of the encoded audio feature ``a``.
        hidden, n_layers: of the offset MLP (TalkingGaussian: 32, 3).
        hash_grid: tri-plane settings (base resolution of the mouth); ``encoder`` overrides them.
    """

    def __init__(
        self,
        audio_in_dim: int,
        audio_window: int = 16,
        audio_frames: int = 8,
        audio_dim: int = 32,
        hidden: int = 32,
        n_layers: int = 3,
        hash_grid: HashGridSettings | None = None,
        encoder: TriPlaneEncoder | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.encoder = encoder or TriPlaneEncoder.from_settings(hash_grid, "mouth", backend)
        self.audio = AudioEncoder(audio_in_dim, audio_dim, audio_window, audio_frames)
        self.in_dim = self.encoder.n_output_dims + audio_dim
        self.net = MLP(self.in_dim, 3, hidden, n_layers)
        _init_output(self.net)
        # The inside of the mouth mostly opens vertically: TalkingGaussian damps x and z by 5.
        self.register_buffer("axis_scale", torch.tensor([0.2, 1.0, 0.2]) * POSITION_OFFSET_SCALE, False)

    def forward(self, mu: torch.Tensor, audio: torch.Tensor) -> Deformation:
        """``mu``: (N, 3) canonical positions; ``audio``: (T, C, W) feature window of the frame."""
        _check_positions(mu)
        a = as_condition(self.audio(audio), self.audio.dim_out, "encoded audio")
        h = torch.cat([self.encoder(mu), a.expand(mu.shape[0], -1)], dim=-1)
        return Deformation(d_xyz=self.net(h) * self.axis_scale)


class FaceBranch(nn.Module):
    """``f_F`` (Eq. 4): face offsets ``Δmu, Δs, Δq`` from ``H_F(mu) ⊕ A_a ⊙ a ⊕ A_u ⊙ u`` (⊕ ``A_e ⊙ e``).

    Args:
        audio_in_dim, audio_window, audio_frames, audio_dim: as :class:`MouthBranch`.
        au_dim: number of (upper-face) action units in ``u``.
        with_emotion: the "Combined face b." ablation (Tab. 4): valence/arousal ``e`` also enter ``f_F``.
        hidden, n_layers: of the offset MLP (TalkingGaussian: 64, 3).
    """

    def __init__(
        self,
        audio_in_dim: int,
        au_dim: int,
        audio_window: int = 16,
        audio_frames: int = 8,
        audio_dim: int = 32,
        hidden: int = 64,
        n_layers: int = 3,
        with_emotion: bool = False,
        hash_grid: HashGridSettings | None = None,
        encoder: TriPlaneEncoder | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.encoder = encoder or TriPlaneEncoder.from_settings(hash_grid, "face", backend)
        enc_dim = self.encoder.n_output_dims
        self.audio = AudioEncoder(audio_in_dim, audio_dim, audio_window, audio_frames)
        self.au_dim, self.with_emotion = au_dim, with_emotion
        self.audio_attention = RegionAttention(enc_dim, audio_dim, hidden=32, activation="none")
        self.au_attention = RegionAttention(enc_dim, au_dim, hidden=16, activation="relu")
        self.emotion_attention = (
            RegionAttention(enc_dim, VA_DIM, hidden=16, activation="relu") if with_emotion else None
        )
        self.in_dim = enc_dim + audio_dim + au_dim + (VA_DIM if with_emotion else 0)
        self.net = MLP(self.in_dim, 10, hidden, n_layers)
        _init_output(self.net)

    def forward(
        self, mu: torch.Tensor, audio: torch.Tensor, au: torch.Tensor, va: torch.Tensor | None = None
    ) -> Deformation:
        """``mu``: (N, 3); ``audio``: (T, C, W) window; ``au``: (au_dim,); ``va``: (2,) (ablation only)."""
        _check_positions(mu)
        if self.with_emotion and va is None:
            raise ValueError("this combined face branch (with_emotion=True) needs valence/arousal `va`")
        if not self.with_emotion and va is not None:
            raise ValueError("valence/arousal go to the emotion branch; build FaceBranch(with_emotion=True)")
        feats = self.encoder(mu)
        a_r, att_a = self.audio_attention(feats, self.audio(audio))
        u_r, att_u = self.au_attention(feats, au)
        parts, attention = [feats, a_r, u_r], {"audio": att_a, "au": att_u}
        if self.emotion_attention is not None:
            e_r, att_e = self.emotion_attention(feats, va)
            parts.append(e_r)
            attention["emotion"] = att_e
        d_xyz, d_scale, d_rot = _split_offsets(self.net(torch.cat(parts, dim=-1)))
        return Deformation(d_xyz, d_scale, d_rot, attention)


class EmotionBranch(nn.Module):
    """``f_E`` (Eq. 5): emotion offsets from ``H_E(mu + Δmu_u) ⊕ A_e ⊙ e``, ``e`` = (valence, arousal).

    Args:
        hidden, n_layers: of the offset MLP (as ``f_F``: 64, 3).
        attention_hidden: width of the map ``A_e``'s MLP.
        attention_init_bias: initial bias of ``A_e`` (see :class:`RegionAttention`), so ``e`` reaches the offset
            MLP from the first step: a bias-free ReLU map starts near 0 and ``f_E`` then learns a V/A-independent
            correction. 3 (``A_e ≈ 3``: two inputs beside ~24 hash features need the weight) rather than 1: in the quick
            preset's 250 emotion steps 1 gives a V/A response of ~0.9 grey levels, 3 gives ~2.2, bias-free 0.15.
            ``None`` is TalkingGaussian's bias-free map.
        anchored: offsets measured from ``e = (0, 0)``: ``δ_e = f_E(H_E ⊕ A_e ⊙ e) - f_E(H_E ⊕ 0)``, so f_E moves
            nothing at the origin. For valence/arousal read relative to the subject's resting face (the offline
            generator's targets, ``state["va_origin"]``), where ``(0, 0)`` *is* the face f_F already renders: without
            the anchor f_E also learns an emotion-independent correction of f_F on the training frames, which moved
            the lips of unseen frames (sample subject, quick: LMD 0.52 px with f_E, 0.49 without). Eq. 5 as written
            when False (the paper's absolute EmoNet labels, where (0, 0) is a neutral face, not the subject's rest).
    """

    def __init__(
        self,
        hidden: int = 64,
        n_layers: int = 3,
        attention_hidden: int = 16,
        attention_init_bias: float | None = 3.0,
        hash_grid: HashGridSettings | None = None,
        encoder: TriPlaneEncoder | None = None,
        backend: str = "auto",
        anchored: bool = False,
    ) -> None:
        super().__init__()
        self.anchored = bool(anchored)
        self.encoder = encoder or TriPlaneEncoder.from_settings(hash_grid, "face", backend)
        enc_dim = self.encoder.n_output_dims
        self.emotion_attention = RegionAttention(
            enc_dim, VA_DIM, hidden=attention_hidden, activation="relu", init_bias=attention_init_bias
        )
        self.in_dim = enc_dim + VA_DIM
        self.net = MLP(self.in_dim, 10, hidden, n_layers)
        _init_output(self.net)

    def forward(self, mu: torch.Tensor, d_xyz_face: torch.Tensor, va: torch.Tensor) -> Deformation:
        """``mu``, ``d_xyz_face``: (N, 3) canonical positions and ``f_F``'s ``Δmu_u``; ``va``: (2,)."""
        _check_positions(mu)
        if d_xyz_face.shape != mu.shape:
            raise ValueError(f"d_xyz_face must match mu's shape {tuple(mu.shape)}, got {tuple(d_xyz_face.shape)}")
        return self.from_features(self.encoder(mu + d_xyz_face), va)

    def from_features(self, feats: torch.Tensor, va: torch.Tensor) -> Deformation:
        """The part of Eq. 5 that ``e`` enters: ``A_e ⊙ e`` and the offset MLP, given ``feats = H_E(mu + Δmu_u)``.

        The encoding does not depend on ``e``, so a renderer that only changes valence/arousal computes it once
        per frame and calls this alone (:meth:`~etlib.talking.model.EmoTalkingGaussian.prepare_frame`).
        """
        e_r, att_e = self.emotion_attention(feats, va)
        h = self.net(torch.cat([feats, e_r], dim=-1))
        if self.anchored:  # A_e ⊙ 0 = 0: the offsets at the origin, subtracted (see the class docstring)
            h = h - self.net(torch.cat([feats, torch.zeros_like(e_r)], dim=-1))
        d_xyz, d_scale, d_rot = _split_offsets(h)
        return Deformation(d_xyz, d_scale, d_rot, {"emotion": att_e})

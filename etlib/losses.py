"""The loss terms of the paper's stages (Eqs. 10-17, S11-S16): L1, D-SSIM, LPIPS, normal L1, TV, ||dn||; and the
lips' box that the CPU presets weight once more in the face-network stage (``Preset.lip_region_l1``).

Images are (H, W, 3) or (B, H, W, 3) float tensors in [0, 1] (the rasterizer's layout).
LPIPS needs its AlexNet backbone weights; without them :class:`LPIPSLoss` is *unavailable* and the
stages drop the term and say so (never replaced by another loss under its name).
"""

from __future__ import annotations

import torch
from torch import Tensor

from etlib.base import LIP_POINTS


def _bchw(img: Tensor) -> Tensor:
    if img.dim() == 3:
        img = img[None]
    if img.dim() != 4 or img.shape[-1] not in (1, 3):
        raise ValueError(f"expected (H, W, C) or (B, H, W, C) images, got {tuple(img.shape)}")
    return img.permute(0, 3, 1, 2)


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error."""
    return (pred - target).abs().mean()


def ssim(pred: Tensor, target: Tensor, window: int = 11) -> Tensor:
    """SSIM (Wang et al. 2004) of [0, 1] images, from pytorch-msssim (Gaussian window 11, sigma 1.5)."""
    from pytorch_msssim import ssim as _ssim

    p, t = _bchw(pred), _bchw(target)
    if min(p.shape[-2:]) < window:
        raise ValueError(f"images of {tuple(p.shape[-2:])} px are smaller than the SSIM window ({window})")
    return _ssim(p, t, data_range=1.0, size_average=True, win_size=window)


def d_ssim(pred: Tensor, target: Tensor) -> Tensor:
    """The D-SSIM term of Eq. 10: ``1 - SSIM``."""
    return 1.0 - ssim(pred, target)


def normal_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """L1 between rendered and target normal maps (Eqs. 11, 14, 17), over ``mask`` pixels when given."""
    diff = (pred - target).abs().sum(-1)
    if mask is None:
        return diff.mean() / 3
    mask = mask.reshape(diff.shape).to(diff.dtype)
    return (diff * mask).sum() / (3 * mask.sum().clamp(min=1.0))


def total_variation(img: Tensor) -> Tensor:
    """L_tv: mean absolute difference of neighbouring pixels (spatial smoothness of normal maps)."""
    x = _bchw(img)
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def lip_box(landmarks: Tensor, size: int, pad: float = 0.25) -> tuple[slice, slice]:
    """Rows and columns of the lips' bounding box in a ``size`` x ``size`` frame, grown by ``pad`` of its
    width and height on every side (TalkingGaussian's ``lips_rect``). ``landmarks``: (68, 2) pixel (x, y)."""
    lips = landmarks[list(LIP_POINTS)].detach().float()
    lo, hi = lips.min(0).values, lips.max(0).values
    grow = (hi - lo) * pad
    x0, y0 = (lo - grow).floor().clamp(0, size - 1).long().tolist()
    x1, y1 = (hi + grow).ceil().clamp(1, size).long().tolist()
    return slice(y0, max(y1, y0 + 1)), slice(x0, max(x1, x0 + 1))


def changed_region(target: Tensor, source: Tensor, threshold: float = 2 / 255, grow: int = 2) -> Tensor:
    """``[H, W, 1]`` float mask of the pixels where ``target`` differs from ``source`` (both ``[H, W, 3]`` in
    [0, 1]) by more than ``threshold`` in any channel, grown by ``grow`` pixels: where an emotion target
    changed the frame (the generator's warp after seamless cloning, S4.1)."""
    changed = ((target - source).abs().amax(dim=-1) > threshold).float()[None, None]
    if grow > 0:
        changed = torch.nn.functional.max_pool2d(changed, 2 * grow + 1, stride=1, padding=grow)
    return changed[0, 0, :, :, None]


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error over the pixels of ``mask`` (``[H, W, 1]``); 0 when the mask is empty."""
    weight = mask.expand_as(pred)
    return ((pred - target).abs() * weight).sum() / weight.sum().clamp_min(1.0)


def residual_norm(dn: Tensor) -> Tensor:
    """``||dn||_2^2`` of Eq. 11, averaged over Gaussians so its weight does not depend on their number."""
    return (dn**2).sum(-1).mean()


class LPIPSLoss(torch.nn.Module):
    """LPIPS (Zhang et al. 2018) with the AlexNet backbone, when the ``lpips`` package, torchvision and the
    weights (``lpips_alexnet``, ``lpips_alex_linear`` in the etlib cache) are all present.

    ``available`` says whether it runs; ``reason`` why not. Calling an unavailable loss raises.
    """

    def __init__(self) -> None:
        super().__init__()
        from etlib.metrics.image import load_lpips_network, lpips_status

        self.available, self.reason = lpips_status()
        self._net = load_lpips_network() if self.available else None

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if not self.available:
            raise RuntimeError(f"LPIPS is unavailable here: {self.reason}")
        return self._net(_bchw(pred) * 2 - 1, _bchw(target) * 2 - 1).mean()

"""Real spherical harmonics for view-dependent colour (3DGS: degree 0..3, 1/4/9/16 coefficients).

The basis is Sloan's "Efficient Spherical Harmonic Evaluation" (JCGT 2013), the same polynomial forms
and constants as 3DGS and gsplat (``gsplat.cuda._torch_impl._eval_sh_bases_fast``), so SH coefficients
are interchangeable with theirs (and with 3DGS PLY files).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: The degree-0 basis value; ``rgb = SH0 * f_dc + 0.5`` for a Gaussian without higher bands.
SH_C0 = 0.28209479177387814


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients of a degree: (degree + 1)^2."""
    if not 0 <= degree <= 4:
        raise ValueError(f"SH degree must be in 0..4, got {degree}")
    return (degree + 1) ** 2


def sh_degree_from_bases(k: int) -> int:
    """Inverse of :func:`num_sh_bases`."""
    degree = round(k**0.5) - 1
    if (degree + 1) ** 2 != k:
        raise ValueError(f"{k} is not a number of SH coefficients (1, 4, 9, 16 or 25)")
    return degree


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis values (..., (degree+1)^2) at unit directions (..., 3)."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-0.48860251190292 * y, 0.48860251190292 * z, -0.48860251190292 * x]
    if degree >= 2:
        z2 = z * z
        c1, s1 = x * x - y * y, 2 * x * y
        b = -1.092548430592079 * z
        out += [0.5462742152960395 * s1, b * y, 0.9461746957575601 * z2 - 0.3153915652525201, b * x,
                0.5462742152960395 * c1]  # fmt: skip
    if degree >= 3:
        c2, s2 = x * c1 - y * s1, x * s1 + y * c1
        tc = -2.285228997322329 * z2 + 0.4570457994644658
        tb = 1.445305721320277 * z
        out += [-0.5900435899266435 * s2, tb * s1, tc * y, z * (1.865881662950577 * z2 - 1.119528997770346),
                tc * x, tb * c1, -0.5900435899266435 * c2]  # fmt: skip
    if degree >= 4:
        c3, s3 = x * c2 - y * s2, x * s2 + y * c2
        td = z * (-4.683325804901025 * z2 + 2.007139630671868)
        tc4 = 3.31161143515146 * z2 - 0.47308734787878
        tb4 = -1.770130769779931 * z
        p20 = 1.984313483298443 * z2 * (1.865881662950577 * z2 - 1.119528997770346) - 1.006230589874905 * (
            0.9461746957575601 * z2 - 0.3153915652525201
        )
        out += [0.6258357354491763 * s3, tb4 * s2, tc4 * s1, td * y, p20, td * x, tc4 * c1, tb4 * c2,
                0.6258357354491763 * c3]  # fmt: skip
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Colour (..., 3) of SH coefficients (..., K, 3) seen along ``dirs`` (..., 3) (normalised here),
    using the first ``(degree+1)^2`` of the K coefficients (3DGS raises the degree during training)."""
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k:
        raise ValueError(f"sh_degree={degree} needs {k} coefficients, got {coeffs.shape[-2]}")
    bases = sh_bases(degree, F.normalize(dirs, dim=-1))
    return (bases[..., None] * coeffs[..., :k, :]).sum(dim=-2)


def sh_to_rgb(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """3DGS's activation: ``max(eval_sh + 0.5, 0)``."""
    return torch.clamp_min(eval_sh(degree, dirs, coeffs) + 0.5, 0.0)


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """Degree-0 coefficient that renders as ``rgb``."""
    return (rgb - 0.5) / SH_C0

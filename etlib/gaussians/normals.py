"""Per-Gaussian normals (Sec. 3.1, after GaussianShader [28]).

A flat Gaussian's normal is the axis of its smallest scale. It is oriented towards the camera, a learned
residual ``dn`` refines it, and the result is normalised: ``n = normalize(flip(axis_min) + dn)``. The
rasterizer composites these (rotated into camera space) like colour to give the normal map of Eq. 11.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from etlib.gaussians.projection import quat_to_rotmat


def shortest_axis(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space unit axis (N,3) of each Gaussian's smallest scale (sign arbitrary)."""
    R = quat_to_rotmat(quats)  # columns are the Gaussian's axes
    idx = scales.argmin(dim=-1)  # (N,)
    return torch.gather(R, 2, idx[:, None, None].expand(-1, 3, 1)).squeeze(-1)


def gaussian_normals(
    means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, dn: Tensor | None = None
) -> Tensor:
    """World-space normals (C,N,3), one set per camera (C,4,4 world-to-camera).

    The smallest-scale axis is flipped to face each camera (``n . (campos - mu) >= 0``, GaussianShader's
    ``flip_align_view``), then ``dn`` (N,3) is added and the sum normalised.
    """
    if viewmats.dim() == 2:
        viewmats = viewmats[None]
    axis = shortest_axis(quats, scales)  # (N,3)
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    campos = -(R.transpose(1, 2) @ t[..., None]).squeeze(-1)  # (C,3)
    to_cam = campos[:, None, :] - means[None]  # (C,N,3)
    sign = torch.where((axis[None] * to_cam).sum(-1, keepdim=True) >= 0, 1.0, -1.0).to(axis)
    n = axis[None] * sign
    if dn is not None:
        n = n + dn[None]
    return F.normalize(n, dim=-1)

"""Projection of 3-D Gaussians to the image plane (EWA splatting, the step before Eqs. 1-2).

Mirrors gsplat's fused projection (``gsplat.cuda._torch_impl._fully_fused_projection`` and its CUDA
kernel): world-to-camera transform, the pinhole Jacobian with 3DGS's frustum clamp, a 0.3 px
low-pass added to the 2-D covariance, conics (inverse covariances), per-axis pixel radii and culling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

#: 3DGS skips a Gaussian at a pixel where its alpha is below this (Common.h in gsplat / 3DGS).
ALPHA_THRESHOLD = 1.0 / 255.0


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) from quaternions (..., 4) in wxyz order (normalised here)."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return R.reshape(quats.shape[:-1] + (3, 3))


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariances ``Sigma = R S S^T R^T`` (..., 3, 3) (Sec. 3.1: "derived from s and q")."""
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


@dataclass
class Projection:
    """Per camera and Gaussian: 2-D means (C,N,2) in pixels, conics (C,N,3) = upper triangle
    ``(a, b, c)`` of the inverse 2-D covariance, camera-space depths (C,N), integer pixel radii (C,N,2)
    (0 = culled) and camera-space means (C,N,3)."""

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor
    means_cam: Tensor

    @property
    def visible(self) -> Tensor:
        """(C,N) bool: the Gaussian touches the image of that camera."""
        return (self.radii > 0).all(dim=-1)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    opacities: Tensor | None = None,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Projection:
    """Project N Gaussians into C pinhole cameras.

    Args:
        means (N,3), quats (N,4 wxyz, any norm), scales (N,3) (activated, not log): the Gaussians.
        viewmats (C,4,4) world-to-camera, Ks (C,3,3): the cameras.
        opacities: (N,) activated opacities. When given, radii use gsplat's opacity-aware extent
            ``min(3.33, sqrt(2 log(255 o)))`` sigmas and Gaussians with ``o < 1/255`` are culled (exact:
            a pixel outside that box has alpha < 1/255 and is skipped anyway). When None, radii are
            3.33 sigmas, as in ``gsplat.cuda._torch_impl._fully_fused_projection``.
        eps2d: low-pass filter added to the 2-D covariance (0.3 px, 3DGS).
    """
    if means.shape[-1] != 3 or means.dim() != 2:
        raise ValueError(f"means must be (N, 3), got {tuple(means.shape)}")
    R = viewmats[:, :3, :3]  # (C,3,3)
    t = viewmats[:, :3, 3]  # (C,3)
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # (C,N,3)
    M = quat_to_rotmat(quats) * scales[..., None, :]  # (N,3,3): Sigma = M M^T
    M_c = torch.einsum("cij,njk->cnik", R, M)  # camera-space factor (C,N,3,3)

    tx, ty, tz = means_c.unbind(-1)
    # Keep the division finite at z = 0 (such Gaussians are culled; this only avoids NaN gradients).
    tz = torch.where(tz.abs() < 1e-9, torch.full_like(tz, 1e-9), tz)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    # 3DGS clamps the Jacobian's x/z, y/z to 1.3x the field of view to keep off-screen Gaussians sane.
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    txc = tz * torch.clamp(tx / tz, min=-lim_x_neg, max=lim_x_pos)
    tyc = tz * torch.clamp(ty / tz, min=-lim_y_neg, max=lim_y_pos)
    zeros = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zeros, -fx * txc / tz**2, zeros, fy / tz, -fy * tyc / tz**2], dim=-1)
    J = J.reshape(tz.shape + (2, 3))
    JM = J @ M_c  # (C,N,2,3)
    cov2d = JM @ JM.transpose(-1, -2)  # (C,N,2,2)  = J R Sigma R^T J^T
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)

    a = cov2d[..., 0, 0] + eps2d
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    c = cov2d[..., 1, 1] + eps2d
    det = (a * c - b * b).clamp(min=1e-10)
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    with torch.no_grad():
        extend = torch.full_like(tz, 3.33)
        valid = (det > 0) & (tz > near_plane) & (tz < far_plane)
        if opacities is not None:
            op = opacities.detach().reshape(1, -1).to(tz)
            valid = valid & (op >= ALPHA_THRESHOLD)
            extend = torch.minimum(extend, torch.sqrt(2.0 * torch.log(op.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD)))
        radius = torch.stack([torch.ceil(extend * a.sqrt()), torch.ceil(extend * c.sqrt())], dim=-1)
        mx, my = means2d.detach().unbind(-1)
        inside = (
            (mx + radius[..., 0] > 0) & (mx - radius[..., 0] < width)
            & (my + radius[..., 1] > 0) & (my - radius[..., 1] < height)
        )  # fmt: skip
        keep = valid & inside & torch.isfinite(radius).all(-1)
        radii = torch.where(keep[..., None], radius, torch.zeros_like(radius)).int()
    return Projection(means2d, conics, tz, radii, means_c)


def tile_grid(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """Number of tiles along x and y."""
    return math.ceil(width / tile_size), math.ceil(height / tile_size)

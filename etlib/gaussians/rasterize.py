"""``rasterize``: one entry point, two backends (gsplat's CUDA kernels, etlib's tiled PyTorch code).

Renders colour and opacity (Eqs. 1-2 / S7-S8), the expected depth, a camera-space normal map (Sec. 3.1)
and any per-Gaussian feature vectors (e.g. attention weights, Fig. S7), all composited with the same
weights ``w_i = alpha_i prod_{j<i}(1 - alpha_j)``, and returns what densification needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from etlib.gaussians.camera import Camera, stack_cameras
from etlib.gaussians.compositor import composite_dense_reference, composite_tiles
from etlib.gaussians.projection import Projection, project_gaussians, tile_grid
from etlib.gaussians.sh import sh_to_rgb
from etlib.gaussians.tiles import intersect_tiles

Backend = Literal["auto", "gsplat", "torch"]
#: Default tile side of the torch backend (8: about 2x faster than 16 on a CPU, same image).
TORCH_TILE_SIZE = 8


@dataclass
class RenderOutput:
    """What :func:`rasterize` returns. Shapes are (H,W,·) for one camera and (C,H,W,·) for a list.

    Attributes:
        color: (…,H,W,D) ``sum_i c_i w_i + (1 - A) * background`` (Eq. 1; D = 3 for RGB).
        alpha: (…,H,W,1) accumulated opacity ``A = sum_i w_i`` (Eq. 2).
        depth: (…,H,W,1) expected camera-space z, ``sum_i z_i w_i / A`` (gsplat's "ED" mode; 0 where
            nothing was drawn). The alpha-weighted sum is ``depth * alpha``.
        normal: (…,H,W,3) camera-space normal map ``sum_i n_i w_i`` (not renormalised; background 0),
            or None when no normals were given.
        features: (…,H,W,F) ``sum_i f_i w_i`` of the per-Gaussian ``features``, or None.
        meta: densification inputs in gsplat's (non-packed) format: ``means2d`` (C,N,2, grad retained),
            ``radii`` (C,N,2) int, ``visibility`` (C,N) bool, ``depths``, ``conics``, ``opacities``,
            ``gaussian_ids`` (None: not packed), ``width``, ``height``, ``n_cameras``, ``backend``.
    """

    color: Tensor
    alpha: Tensor
    depth: Tensor
    normal: Tensor | None = None
    features: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def choose_backend(means: Tensor, backend: Backend = "auto") -> str:
    """``gsplat`` for CUDA tensors when its extension loads, else ``torch``."""
    if backend not in ("auto", "gsplat", "torch"):
        raise ValueError(f"backend must be 'auto', 'gsplat' or 'torch', got {backend!r}")
    if backend == "gsplat" and not means.is_cuda:
        raise ValueError("backend='gsplat' needs CUDA tensors; move the Gaussians to a GPU or use backend='torch'")
    if backend != "auto":
        return backend
    if means.is_cuda:
        from etlib.backends import gsplat_cuda_available

        if gsplat_cuda_available():
            return "gsplat"
    return "torch"


def _per_camera(x: Tensor, C: int, N: int, name: str, trailing: int = 1) -> Tensor:
    """Broadcast an (N,…) per-Gaussian tensor to (C,N,…); accept (C,N,…) as is."""
    if x.dim() == 1 + trailing and x.shape[0] == N:
        return x[None].expand((C,) + tuple(x.shape))
    if x.dim() == 2 + trailing and x.shape[:2] == (C, N):
        return x
    raise ValueError(f"{name} must be (N, ...) or (C, N, ...) with N={N}, C={C}; got {tuple(x.shape)}")


def _check_inputs(means, quats, scales, opacities) -> Tensor:
    N = means.shape[0] if means.dim() == 2 else -1
    if means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be (N, 3), got {tuple(means.shape)}")
    if quats.shape != (N, 4):
        raise ValueError(f"quats must be (N, 4) wxyz, got {tuple(quats.shape)}")
    if scales.shape != (N, 3):
        raise ValueError(f"scales must be (N, 3) (activated, not log), got {tuple(scales.shape)}")
    if opacities.shape not in ((N,), (N, 1)):
        raise ValueError(f"opacities must be (N,) or (N, 1) in [0, 1], got {tuple(opacities.shape)}")
    return opacities.reshape(N)


def _colours(colors: Tensor, sh_degree: int | None, means: Tensor, viewmats: Tensor, C: int) -> Tensor:
    """(C,N,D) colours: given directly, or evaluated from SH coefficients per camera (3DGS activation)."""
    N = means.shape[0]
    if sh_degree is None:
        return _per_camera(colors, C, N, "colors (RGB; pass sh_degree for SH coefficients)")
    if colors.dim() not in (3, 4) or colors.shape[-1] != 3:
        raise ValueError(f"with sh_degree set, colors must be SH coefficients (N, K, 3), got {tuple(colors.shape)}")
    coeffs = _per_camera(colors, C, N, "colors (SH)", trailing=2)
    campos = torch.linalg.inv(viewmats)[:, :3, 3]  # (C,3)
    dirs = means[None] - campos[:, None, :]
    return sh_to_rgb(sh_degree, dirs, coeffs)


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    cameras: Camera | Sequence[Camera],
    *,
    normals: Tensor | None = None,
    features: Tensor | None = None,
    sh_degree: int | None = None,
    background: Tensor | float | Sequence[float] | None = None,
    backend: Backend = "auto",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int | None = None,
    max_chunk_elements: int = 1 << 19,
) -> RenderOutput:
    """Render N 3-D Gaussians into one or several cameras (Eqs. 1-2).

    Args:
        means (N,3), quats (N,4, wxyz, any norm), scales (N,3, activated), opacities (N,) or (N,1) in [0,1].
        colors: RGB (or any D channels) per Gaussian, (N,D) or per camera (C,N,D); or, with ``sh_degree``,
            SH coefficients (N,K,3) turned into RGB with 3DGS's ``max(SH + 0.5, 0)``.
        cameras: a :class:`Camera` (outputs (H,W,·)) or a list sharing one size (outputs (C,H,W,·)).
        normals: world-space per-Gaussian normals (N,3) or (C,N,3), e.g. from
            :func:`etlib.gaussians.gaussian_normals`; rendered in camera space. None: no normal map.
        features: any per-Gaussian vectors (N,F) or (C,N,F) to composite (attention, labels...).
        background: colour behind the Gaussians (scalar, (D,) or (C,D)); default black.
        backend: "gsplat" (CUDA), "torch" (etlib's tiled rasterizer; any device) or "auto" (gsplat for
            CUDA tensors when it loads). Note gsplat clamps alpha at 0.999, the torch backend at 0.99 (3DGS).
        near_plane, far_plane, eps2d: as in 3DGS / gsplat.
        tile_size: pixels per tile side; None picks 16 for gsplat (its tested value) and
            :data:`TORCH_TILE_SIZE` for the torch backend (smaller tiles waste fewer pixel-Gaussian
            pairs on a CPU; see benchmarks/rasterizer.py). The image does not depend on it.
        max_chunk_elements: torch backend's memory bound, (tiles x Gaussians x pixels) entries per batch
            (2^19 keeps each buffer in cache; the backward keeps two such buffers per batch).
    """
    opac = _check_inputs(means, quats, scales, opacities)
    N = means.shape[0]
    viewmats, Ks, width, height, batched = stack_cameras(cameras)
    viewmats = viewmats.to(device=means.device, dtype=means.dtype)
    Ks = Ks.to(device=means.device, dtype=means.dtype)
    C = viewmats.shape[0]
    rgb = _colours(colors, sh_degree, means, viewmats, C)
    D = rgb.shape[-1]

    extra = []  # per-camera channels composited along with colour (camera-space normals, features)
    if normals is not None:
        n_world = _per_camera(normals, C, N, "normals")
        extra.append(torch.einsum("cij,cnj->cni", viewmats[:, :3, :3], n_world))
    if features is not None:
        extra.append(_per_camera(features, C, N, "features"))

    bg = torch.zeros(C, D, dtype=means.dtype, device=means.device)
    if background is not None:
        bg = bg + torch.as_tensor(background, dtype=means.dtype, device=means.device)

    which = choose_backend(means, backend)
    if tile_size is None:
        tile_size = 16 if which == "gsplat" else TORCH_TILE_SIZE
    if tile_size < 1:
        raise ValueError(f"tile_size must be a positive number of pixels, got {tile_size}")
    if which == "gsplat":
        channels, alpha, depth, meta = _render_gsplat(
            means, quats, scales, opac, torch.cat([rgb] + extra, -1), viewmats, Ks, width, height, bg,
            near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, tile_size=tile_size,
        )  # fmt: skip
    else:
        channels, alpha, depth, meta = _render_torch(
            means, quats, scales, opac, torch.cat([rgb] + extra, -1), viewmats, Ks, width, height, bg,
            near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, tile_size=tile_size,
            max_chunk_elements=max_chunk_elements,
        )  # fmt: skip
    if meta["means2d"].requires_grad:
        meta["means2d"].retain_grad()

    color, rest = channels[..., :D], channels[..., D:]
    normal = feats = None
    if normals is not None:
        normal, rest = rest[..., :3], rest[..., 3:]
    if features is not None:
        feats = rest
    out = RenderOutput(color, alpha, depth, normal, feats, meta)
    if not batched:
        for name in ("color", "alpha", "depth", "normal", "features"):
            value = getattr(out, name)
            if value is not None:
                setattr(out, name, value[0])
    return out


def _meta(proj_means2d, radii, depths, conics, opacities, width, height, C, backend, **extra) -> dict:
    return {
        "means2d": proj_means2d,
        "radii": radii,
        "visibility": (radii > 0).all(dim=-1),
        "depths": depths,
        "conics": conics,
        "opacities": opacities,
        "gaussian_ids": None,
        "camera_ids": None,
        "width": width,
        "height": height,
        "n_cameras": C,
        "n_batches": 1,
        "backend": backend,
        **extra,
    }


def _render_torch(means, quats, scales, opac, channels, viewmats, Ks, width, height, bg, *, near_plane,
                  far_plane, eps2d, tile_size, max_chunk_elements):  # fmt: skip
    """etlib's CPU path: project, intersect tiles, composite per tile."""
    C = viewmats.shape[0]
    proj = project_gaussians(means, quats, scales, viewmats, Ks, width, height, opacities=opac,
                             eps2d=eps2d, near_plane=near_plane, far_plane=far_plane)  # fmt: skip
    tiles_x, tiles_y = tile_grid(width, height, tile_size)
    isect = intersect_tiles(proj.means2d, proj.radii, proj.depths, tile_size, tiles_x, tiles_y)
    opac_c = opac[None].expand(C, -1)
    stacked = torch.cat([channels, proj.depths[..., None]], dim=-1)
    out, alpha = composite_tiles(proj.means2d, proj.conics, opac_c, stacked, isect, width, height,
                                 max_chunk_elements=max_chunk_elements)  # fmt: skip
    D = channels.shape[-1]
    image = out[..., :D] + (1 - alpha) * torch.cat([bg, bg.new_zeros(C, D - bg.shape[-1])], -1)[:, None, None]
    depth = out[..., D:] / alpha.clamp(min=1e-10)
    meta = _meta(proj.means2d, proj.radii, proj.depths, proj.conics, opac_c, width, height, C, "torch",
                 tile_size=tile_size, tile_width=tiles_x, tile_height=tiles_y,
                 tiles_per_gauss=isect.tiles_per_gauss, n_intersections=len(isect.flat_ids))  # fmt: skip
    return image, alpha, depth, meta


def _render_gsplat(means, quats, scales, opac, channels, viewmats, Ks, width, height, bg, *, near_plane,
                   far_plane, eps2d, tile_size):  # fmt: skip
    """CUDA path: ``gsplat.rasterization`` with everything as feature channels and "RGB+ED" depth."""
    from gsplat import rasterization

    C, _, D = channels.shape
    backgrounds = torch.cat([bg, bg.new_zeros(C, D - bg.shape[-1])], -1)
    render, alpha, gmeta = rasterization(
        means, quats, scales, opac, channels, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=None, packed=False,
        tile_size=tile_size, backgrounds=backgrounds, render_mode="RGB+ED",
    )  # fmt: skip
    meta = _meta(gmeta["means2d"], gmeta["radii"], gmeta["depths"], gmeta["conics"], gmeta["opacities"],
                 width, height, C, "gsplat", tile_size=tile_size, tile_width=gmeta["tile_width"],
                 tile_height=gmeta["tile_height"], tiles_per_gauss=gmeta["tiles_per_gauss"])  # fmt: skip
    return render[..., :D], alpha, render[..., D:], meta


def rasterize_dense_reference(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    cameras: Camera | Sequence[Camera],
    *,
    normals: Tensor | None = None,
    features: Tensor | None = None,
    sh_degree: int | None = None,
    background: Tensor | float | Sequence[float] | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> RenderOutput:
    """The oracle: same inputs and outputs as :func:`rasterize`, but Eqs. 1-2 evaluated for every pixel
    against every Gaussian (no tiles, no pixel boxes). O(pixels x Gaussians); for tests and benchmarks."""
    opac = _check_inputs(means, quats, scales, opacities)
    N = means.shape[0]
    viewmats, Ks, width, height, batched = stack_cameras(cameras)
    viewmats = viewmats.to(device=means.device, dtype=means.dtype)
    Ks = Ks.to(device=means.device, dtype=means.dtype)
    C = viewmats.shape[0]
    rgb = _colours(colors, sh_degree, means, viewmats, C)
    D = rgb.shape[-1]
    proj: Projection = project_gaussians(means, quats, scales, viewmats, Ks, width, height,
                                         eps2d=eps2d, near_plane=near_plane, far_plane=far_plane)  # fmt: skip
    parts = [rgb, proj.depths[..., None]]
    if normals is not None:
        parts.append(torch.einsum("cij,cnj->cni", viewmats[:, :3, :3], _per_camera(normals, C, N, "normals")))
    if features is not None:
        parts.append(_per_camera(features, C, N, "features"))
    opac_c = opac[None].expand(C, -1)
    out, alpha = composite_dense_reference(proj.means2d, proj.conics, opac_c, torch.cat(parts, -1),
                                           proj.visible, proj.depths, width, height)  # fmt: skip
    bg = torch.zeros(C, D, dtype=means.dtype, device=means.device)
    if background is not None:
        bg = bg + torch.as_tensor(background, dtype=means.dtype, device=means.device)
    color = out[..., :D] + (1 - alpha) * bg[:, None, None]
    depth = out[..., D : D + 1] / alpha.clamp(min=1e-10)
    rest = out[..., D + 1 :]
    normal = feats = None
    if normals is not None:
        normal, rest = rest[..., :3], rest[..., 3:]
    if features is not None:
        feats = rest
    meta = _meta(proj.means2d, proj.radii, proj.depths, proj.conics, opac_c, width, height, C, "dense")
    out_ = RenderOutput(color, alpha, depth, normal, feats, meta)
    if not batched:
        for name in ("color", "alpha", "depth", "normal", "features"):
            value = getattr(out_, name)
            if value is not None:
                setattr(out_, name, value[0])
    return out_

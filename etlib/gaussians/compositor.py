"""Alpha compositing of projected Gaussians, Eqs. 1-2 (S7-S8): the tiled PyTorch compositor and a dense
per-pixel reference used as its oracle.

Both follow 3DGS's conventions: pixel centres at half-integers, ``alpha_i = min(0.99, o_i G_i(x))``,
contributions with ``alpha_i < 1/255`` are skipped, and a pixel stops at the first Gaussian that would
bring its transmittance to ``<= 1e-4`` (that Gaussian is left out, as in gsplat's kernels).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from etlib.gaussians.projection import ALPHA_THRESHOLD
from etlib.gaussians.tiles import TileIntersections

#: 3DGS clamps per-Gaussian alpha here (gsplat's kernels use 0.999).
ALPHA_MAX = 0.99
#: A pixel is finished once its transmittance would fall to this.
TRANSMITTANCE_MIN = 1e-4
_LOG_T_MIN = math.log(TRANSMITTANCE_MIN)


def _pixel_monomials(tile_size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(P,6) ``[u^2, uv, v^2, u, v, 1]`` of the pixel centres of a tile, relative to the tile centre."""
    r = torch.arange(tile_size, dtype=dtype, device=device) + 0.5 - tile_size / 2
    v, u = torch.meshgrid(r, r, indexing="ij")  # row-major pixels: v = y, u = x
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([u * u, u * v, v * v, u, v, torch.ones_like(u)], dim=-1)


class _CompositeTiles(torch.autograd.Function):
    """Front-to-back compositing of a batch of tiles, with a hand-written backward.

    Input ``expo`` (T,L,6) are *negated* quadratic coefficients, so that ``o_i G_i = exp(expo . m)`` at
    a pixel with monomials ``m``; ``feat`` (T,L,D) are the channels to composite. Output (T,P,D).
    Forward works in place on (T,L,P) buffers; backward reuses the saved ``alpha`` and weights ``w``:

    ``dL/dalpha_i = g.f_i T_i - (1 - alpha_i)^-1 sum_{k>i} (g.f_k) w_k`` (3DGS's backward, vectorised
    with a reverse cumulative sum over the depth-sorted list).
    """

    @staticmethod
    def forward(ctx, expo: Tensor, feat: Tensor, monomials: Tensor) -> Tensor:
        # Buffers are reused in place: on a CPU, fresh (T,L,P) allocations cost more than the arithmetic.
        alpha = torch.matmul(expo, monomials.T).exp_().clamp_(max=ALPHA_MAX)  # (T,L,P)
        alpha = torch.threshold_(alpha, ALPHA_THRESHOLD, 0.0)  # skip alpha < 1/255
        log_one_minus = torch.rsub(alpha, 1.0).log_()  # log(1 - alpha_j)
        log_t = torch.cumsum(log_one_minus, dim=1)  # log prod_{j<=i} (1 - alpha_j)
        # A pixel stops before the Gaussian that takes T to <= 1e-4: -inf there gives weight exp(-inf) = 0.
        torch.threshold_(log_t, _LOG_T_MIN, -math.inf)
        weights = log_t.sub_(log_one_minus).exp_().mul_(alpha)  # alpha_i T_i, T_i = prod_{j<i} (1 - alpha_j)
        del log_one_minus
        ctx.save_for_backward(alpha, weights, feat, monomials)
        return torch.bmm(weights.transpose(1, 2), feat)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        alpha, weights, feat, monomials = ctx.saved_tensors
        grad_feat = torch.bmm(weights, grad_out)  # (T,L,D)
        grad_s = torch.bmm(feat, grad_out.transpose(1, 2)).mul_(weights)  # (g . f_i) w_i, (T,L,P)
        behind = torch.cumsum(grad_s, dim=1)
        total = behind[:, -1:].clone()
        behind.neg_().add_(total).mul_(alpha).div_(torch.rsub(alpha, 1.0))  # alpha_i/(1-alpha_i) sum_{k>i}
        grad_s.sub_(behind)  # dL/d(expo . m) = alpha_i dL/dalpha_i
        del behind
        grad_s.masked_fill_(alpha >= ALPHA_MAX, 0.0)  # clamped alphas pass no gradient
        grad_expo = torch.matmul(grad_s, monomials)  # (T,L,6)
        return grad_expo, grad_feat, None


def _exponent_coefficients(mean_local: Tensor, conic: Tensor, log_opacity: Tensor) -> Tensor:
    """(...,6) coefficients ``e`` with ``e . [u^2, uv, v^2, u, v, 1] = log(o) - sigma(u, v)`` where
    ``sigma = 0.5 a dx^2 + b dx dy + 0.5 c dy^2`` (the exponent of G_i) and ``d = (u, v) - mean``.

    Expanding the quadratic turns the exponent of a whole batch into one matrix product, and folding
    ``log(o)`` in gives ``alpha = o G = exp(e . m)``. Means are relative to the tile centre, so the terms
    stay small and float32 keeps ~1e-5 accuracy."""
    mu, mv = mean_local.unbind(-1)
    a, b, c = conic.unbind(-1)
    lin_u = a * mu + b * mv  # Sigma^-1 mean
    lin_v = b * mu + c * mv
    const = log_opacity - 0.5 * (mu * lin_u + mv * lin_v)
    return torch.stack([-0.5 * a, -b, -0.5 * c, lin_u, lin_v, const], dim=-1)


def composite_tiles(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    features: Tensor,
    isect: TileIntersections,
    width: int,
    height: int,
    *,
    max_chunk_elements: int = 1 << 19,
) -> tuple[Tensor, Tensor]:
    """Composite C images front to back, tile by tile (Eqs. 1-2).

    Tiles are batched: tiles with similar list lengths are padded to a common length L and processed
    together as (tiles, L, pixels) tensors, at most ``max_chunk_elements`` entries at a time, so memory
    stays bounded. Differentiable (a hand-written backward per batch, autograd elsewhere).

    Args:
        means2d (C,N,2), conics (C,N,3), opacities (C,N): the projection (see ``project_gaussians``).
        features (C,N,D): what to composite (colour, depth, normals, anything).
        isect: tile lists from ``intersect_tiles``.

    Returns:
        ``(features (C,H,W,D), alpha (C,H,W,1))``: ``sum_i f_i w_i`` and ``sum_i w_i``, where
        ``w_i = alpha_i prod_{j<i} (1 - alpha_j)``.
    """
    C, N, D = features.shape
    device, dtype = features.device, features.dtype
    ts = isect.tile_size
    P = ts * ts
    n_tiles_all = C * isect.tiles_x * isect.tiles_y

    # One row per (camera, Gaussian): [mean(2), conic(3), log opacity, features(D), 1] (the trailing 1
    # composites to alpha), plus a transparent padding row (log opacity -1e4).
    log_opac = torch.log(opacities.clamp(min=1e-10)).reshape(C * N, 1)
    rows = torch.cat(
        [means2d.reshape(C * N, 2), conics.reshape(C * N, 3), log_opac, features.reshape(C * N, D),
         features.new_ones(C * N, 1)], dim=1,
    )  # fmt: skip
    pad_row = rows.new_zeros(1, rows.shape[1])
    pad_row[0, 5] = -1e4
    rows = torch.cat([rows, pad_row])
    flat_ids = torch.cat([isect.flat_ids, isect.flat_ids.new_tensor([C * N])])  # last: the padding row
    pad_pos = len(isect.flat_ids)

    # Batches: tiles sorted by list length, so padding each batch to its first tile's length wastes little.
    counts = isect.tile_counts
    active = torch.nonzero(counts > 0).squeeze(1)
    active = active[torch.argsort(counts[active], descending=True, stable=True)]
    counts_active = counts[active].tolist()
    batches = []  # (number of tiles, padded length L)
    start = 0
    while start < len(active):
        L = counts_active[start]
        n = max(1, min(len(active) - start, max_chunk_elements // (L * P)))
        batches.append((n, L))
        start += n
    if not batches:  # nothing visible; stay attached to the graph so that backward() still works
        empty = features.new_zeros(C, height, width, D + 1) + 0 * rows.sum()
        return empty[..., :D], empty[..., D:]

    # Every padded (tile, slot) entry of every batch, in batch order: one gather and one evaluation of
    # the exponent coefficients for all batches (few, large tensor operations; batches are views).
    padded_len = torch.tensor([L for n, L in batches for _ in range(n)], device=device)
    entry_tile = torch.repeat_interleave(torch.arange(len(active), device=device), padded_len)
    slot = torch.arange(len(entry_tile), device=device) - (torch.cumsum(padded_len, 0) - padded_len)[entry_tile]
    tile = active[entry_tile]
    pos = torch.where(slot < counts[tile], isect.tile_offsets[tile] + slot, pad_pos)
    entries = rows[flat_ids[pos]]  # (E, 6+D+1)
    # Tile centres in pixels: Gaussians are expressed relative to them (keeps float32 accurate).
    tile_in_img = tile % (isect.tiles_x * isect.tiles_y)
    centre = torch.stack([tile_in_img % isect.tiles_x, tile_in_img // isect.tiles_x], dim=-1)
    centre = (centre.to(dtype) + 0.5) * ts
    expo = _exponent_coefficients(entries[:, 0:2] - centre, entries[:, 2:5], entries[:, 5])  # (E,6)
    feat = entries[:, 6:].contiguous()
    monomials = _pixel_monomials(ts, dtype, device)  # (P,6)

    sizes = [n * L for n, L in batches]
    outs = [
        _CompositeTiles.apply(e.view(n, L, 6), f.view(n, L, D + 1), monomials)  # (T,P,D+1)
        for e, f, (n, L) in zip(expo.split(sizes), feat.split(sizes), batches)
    ]

    out = torch.zeros(n_tiles_all, P, D + 1, dtype=dtype, device=device)
    out = out.index_copy(0, active, torch.cat(outs))
    out = out.reshape(C, isect.tiles_y, isect.tiles_x, ts, ts, D + 1)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(C, isect.tiles_y * ts, isect.tiles_x * ts, D + 1)
    out = out[:, :height, :width]
    return out[..., :D], out[..., D:]


def composite_dense_reference(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    features: Tensor,
    visible: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    *,
    pixel_chunk: int = 4096,
) -> tuple[Tensor, Tensor]:
    """Eqs. 1-2 evaluated directly: every pixel against every visible Gaussian, no tiles, no culling boxes.

    ``C(x) = sum_i c_i a_i prod_{j<i}(1 - a_j)`` and ``A(x) = sum_i a_i prod_{j<i}(1 - a_j)`` with
    ``a_i = min(0.99, o_i exp(-sigma_i(x)))``, Gaussians sorted front to back by camera-space depth, the
    same skip (a < 1/255) and early-stop (T <= 1e-4) rules. O(pixels x Gaussians): the oracle for tests.

    Args: as :func:`composite_tiles`, plus ``visible`` (C,N) and ``depths`` (C,N) for the sort.
    """
    C, N, D = features.shape
    dtype, device = features.dtype, features.device
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)  # (HW,2)
    images, alphas = [], []
    for cam in range(C):
        idx = torch.nonzero(visible[cam]).squeeze(1)
        idx = idx[torch.argsort(depths[cam, idx].detach(), stable=True)]
        mean, conic, opac, feat = means2d[cam, idx], conics[cam, idx], opacities[cam, idx], features[cam, idx]
        colour_rows, alpha_rows = [], []
        for p0 in range(0, len(pix), pixel_chunk):
            d = pix[p0 : p0 + pixel_chunk, None, :] - mean[None]  # (p,n,2)
            dx, dy = d[..., 0], d[..., 1]
            sigma = 0.5 * (conic[:, 0] * dx * dx + conic[:, 2] * dy * dy) + conic[:, 1] * dx * dy
            a = (opac * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
            a = torch.where((sigma >= 0) & (a >= ALPHA_THRESHOLD), a, torch.zeros_like(a))
            t_incl = torch.cumprod(1 - a, dim=1)
            t_excl = torch.cat([torch.ones_like(t_incl[:, :1]), t_incl[:, :-1]], dim=1)
            w = a * t_excl * (t_incl > TRANSMITTANCE_MIN)
            colour_rows.append(w @ feat)
            alpha_rows.append(w.sum(dim=1, keepdim=True))
        images.append(torch.cat(colour_rows).reshape(height, width, D))
        alphas.append(torch.cat(alpha_rows).reshape(height, width, 1))
    return torch.stack(images), torch.stack(alphas)

"""Tile intersection: which 16x16 pixel tiles each projected Gaussian touches, depth-sorted per tile.

The PyTorch counterpart of gsplat's ``isect_tiles`` / ``isect_offset_encode``: every (camera, Gaussian)
pair with a non-zero radius is repeated once for each tile its pixel box overlaps; the list is sorted by
(camera, tile, depth), so each tile owns one contiguous, front-to-back run of Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TileIntersections:
    """Sorted tile/Gaussian intersections of C cameras.

    Attributes:
        flat_ids: (M,) index into the flattened (C*N) camera-Gaussian pairs, sorted by (tile, depth).
        tile_offsets: (C*tiles_y*tiles_x + 1,) start of each tile's run in ``flat_ids`` (tiles are
            numbered ``camera * tiles_y * tiles_x + ty * tiles_x + tx``).
        tiles_x, tiles_y, tile_size: the grid.
        tiles_per_gauss: (C, N) how many tiles each Gaussian touches.
    """

    flat_ids: Tensor
    tile_offsets: Tensor
    tiles_x: int
    tiles_y: int
    tile_size: int
    tiles_per_gauss: Tensor

    @property
    def tile_counts(self) -> Tensor:
        return self.tile_offsets[1:] - self.tile_offsets[:-1]


@torch.no_grad()
def intersect_tiles(
    means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, tiles_x: int, tiles_y: int
) -> TileIntersections:
    """Intersect the pixel boxes ``means2d +- radii`` (C,N,2) with the tile grid; sort by depth (C,N).

    Same tile bounds as gsplat (floor/ceil of ``(mean -+ radius) / tile_size``, clamped to the grid).
    """
    C, N = depths.shape
    device = means2d.device
    n_tiles = tiles_x * tiles_y
    visible = (radii > 0).all(dim=-1)
    cam, gid = visible.nonzero(as_tuple=True)
    mean = means2d.detach()[cam, gid].double()
    rad = radii[cam, gid].double()
    grid_max = torch.tensor([tiles_x, tiles_y], device=device)
    tile_min = torch.minimum(torch.floor((mean - rad) / tile_size).long().clamp(min=0), grid_max)
    tile_max = torch.minimum(torch.ceil((mean + rad) / tile_size).long().clamp(min=0), grid_max)
    extent = tile_max - tile_min  # (V,2)
    counts = extent[:, 0] * extent[:, 1]
    tiles_per_gauss = torch.zeros(C, N, dtype=torch.long, device=device)
    tiles_per_gauss[cam, gid] = counts

    # Expand each Gaussian into its tiles (row-major within its box).
    owner = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(owner), device=device) - start[owner]
    width_in_tiles = extent[owner, 0]
    tx = tile_min[owner, 0] + local % width_in_tiles
    ty = tile_min[owner, 1] + local // width_in_tiles
    tile_id = cam[owner] * n_tiles + ty * tiles_x + tx

    # Sort by (tile, depth): a stable depth rank per camera makes one int64 key.
    order = torch.argsort(depths.detach(), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=device).expand(C, N))
    key = tile_id * N + rank[cam[owner], gid[owner]]
    key, perm = torch.sort(key)
    flat_ids = (cam * N + gid)[owner[perm]]
    tile_counts = torch.bincount(key // N, minlength=C * n_tiles)
    tile_offsets = torch.zeros(C * n_tiles + 1, dtype=torch.long, device=device)
    tile_offsets[1:] = torch.cumsum(tile_counts, 0)
    return TileIntersections(flat_ids, tile_offsets, tiles_x, tiles_y, tile_size, tiles_per_gauss)

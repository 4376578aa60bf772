"""Multiresolution hash grid (Instant-NGP, Müller et al. 2022) in PyTorch, bit-for-bit in tinycudann's layout.

The tri-plane hash encoder H of Sec. 3.2 (ER-NeRF [36], TalkingGaussian [37]) is built from these grids.
This module follows tiny-cuda-nn's ``include/tiny-cuda-nn/encodings/grid.h`` (``GridEncodingTemplated``):

* level ``l`` has ``scale_l = 2**(l * log2(per_level_scale)) * base_resolution - 1`` and
  ``resolution_l = ceil(scale_l) + 1`` vertices a side (float32 arithmetic, as on the GPU);
* level ``l`` stores ``min(next_multiple(resolution_l**D, 8), 2**log2_hashmap_size)`` entries of
  ``n_features_per_level`` floats; all levels are concatenated into ONE flat parameter vector
  (entry ``e`` of level ``l``, feature ``f`` is ``params[(offset_l + e) * F + f]``);
* a point ``x`` in ``[0, 1]^D`` sits at ``pos = x * scale_l + 0.5`` (one fused multiply-add); its cell is
  ``floor(pos)`` and the interpolation weights are the fractional parts (linear, no smoothstep);
* a corner's entry is its dense index ``sum_d corner_d * resolution_l**d`` when the level fits
  (``resolution_l**D <= entries``), else the spatial hash ``XOR_d corner_d * prime_d`` in uint32
  arithmetic (``common_device.h``'s ``lcg_hash``: tcnn's default ``"CoherentPrime"`` has prime_0 = 1,
  ``"Prime"`` the Instant-NGP paper's 1958374283, ``"ReversedPrime"`` the table reversed); either is taken
  modulo the level's entry count;
* the output is level-major: ``out[:, l * F + f]``; parameters start uniform in ``[-1e-4, 1e-4]``.

Because the layout matches, a tinycudann ``Encoding`` state dict (its single ``params`` tensor) loads
into :class:`HashGrid` and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from etlib import backends

#: The factors of tiny-cuda-nn's ``lcg_hash`` for each ``"hash"`` name of its grid config (``common_device.h``).
HASH_FACTORS: dict[str, tuple[int, ...]] = {
    # tcnn's default: the first factor is 1, so neighbouring cells along x share cache lines
    "CoherentPrime": (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737),
    "Prime": (1958374283, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737),
    "ReversedPrime": (2165219737, 1434869437, 2097192037, 3674653429, 805459861, 2654435761, 1958374283),
}
#: tcnn's ``"hash"`` when a config names none.
DEFAULT_HASH = "CoherentPrime"
#: The factors of the default hash (``HASH_FACTORS["CoherentPrime"]``).
PRIMES: tuple[int, ...] = HASH_FACTORS[DEFAULT_HASH]
_U32 = 0xFFFFFFFF
#: tiny-cuda-nn caps a dense level at ``uint32_max / 2`` entries before the hash-table minimum.
_MAX_PARAMS_PER_LEVEL = _U32 // 2
SUPPORTED_FEATURES_PER_LEVEL = (1, 2, 4, 8)


@dataclass(frozen=True)
class LevelLayout:
    """One level of the grid: where its entries live in the flat parameter vector and how it indexes."""

    level: int
    scale: float  # float32 value of ``2**(l * log2(b)) * N_min - 1``
    resolution: int  # vertices a side, ``ceil(scale) + 1``
    n_entries: int  # rows of F features (the "hashmap size" of the level)
    offset: int  # first row of the level in the flat table
    dense: bool  # True: dense (stride) indexing, False: spatial hash


def per_level_scale_for(base_resolution: float, desired_resolution: float, n_levels: int) -> float:
    """Growth factor ``b`` so that level ``n_levels - 1`` reaches ``desired_resolution`` (Instant-NGP Eq. 3)."""
    if n_levels < 1 or base_resolution <= 0 or desired_resolution <= 0:
        raise ValueError(
            f"need n_levels >= 1 and positive resolutions, got n_levels={n_levels}, "
            f"base_resolution={base_resolution}, desired_resolution={desired_resolution}"
        )
    if n_levels == 1:
        return 1.0
    return float(2.0 ** (math.log2(desired_resolution / base_resolution) / (n_levels - 1)))


def level_scale(level: int, per_level_scale: float, base_resolution: int) -> float:
    """``exp2f(level * log2(per_level_scale)) * base_resolution - 1.0f`` evaluated in float32, as tcnn does."""
    f32 = np.float32
    log2_b = np.log2(f32(per_level_scale), dtype=f32)
    return float(np.exp2(f32(level) * log2_b, dtype=f32) * f32(base_resolution) - f32(1.0))


def level_layouts(
    n_input_dims: int,
    n_levels: int,
    log2_hashmap_size: int,
    base_resolution: int,
    per_level_scale: float,
) -> list[LevelLayout]:
    """The per-level table of tcnn's ``GridEncodingTemplated`` constructor (hash grid type)."""
    layouts, offset = [], 0
    hashmap_cap = 1 << log2_hashmap_size
    for level in range(n_levels):
        scale = level_scale(level, per_level_scale, base_resolution)
        resolution = int(math.ceil(scale)) + 1
        dense_entries = resolution**n_input_dims
        n_entries = _MAX_PARAMS_PER_LEVEL if float(dense_entries) > _MAX_PARAMS_PER_LEVEL else dense_entries
        n_entries = -(-n_entries // 8) * 8  # aligned memory accesses
        n_entries = min(n_entries, hashmap_cap)
        dense = dense_entries <= n_entries
        layouts.append(LevelLayout(level, scale, resolution, n_entries, offset, dense))
        offset += n_entries
    return layouts


def _mul_u32(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    """``(a * b) mod 2**32`` for uint32 values held in int64, without int64 overflow."""
    b_lo, b_hi = b & 0xFFFF, b >> 16
    return (a * b_lo + (((a * b_hi) & 0xFFFF) << 16)) & _U32


class HashGrid(nn.Module):
    """Multiresolution hash encoding with tinycudann's hashing, level scales and parameter layout.

    Args:
        n_input_dims: D, dimensions of the input (1 to 7; tinycudann itself builds 2 and 3).
        n_levels: L, number of resolution levels.
        n_features_per_level: F (1, 2, 4 or 8, as tinycudann).
        log2_hashmap_size: log2 of the maximal number of entries a level holds (T).
        base_resolution: N_min, vertices a side of the coarsest level.
        per_level_scale: b, growth factor between consecutive levels.
        hash: tcnn's spatial hash, a key of :data:`HASH_FACTORS` (default ``"CoherentPrime"``, as tcnn's).

    ``forward(x)`` takes ``(N, D)`` points in ``[0, 1]^D`` and returns ``(N, L * F)`` features.
    """

    def __init__(
        self,
        n_input_dims: int,
        n_levels: int = 16,
        n_features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        per_level_scale: float = 2.0,
        hash: str = DEFAULT_HASH,
    ) -> None:
        super().__init__()
        if hash not in HASH_FACTORS:
            raise ValueError(f"hash must be one of {', '.join(HASH_FACTORS)} (tinycudann's names), got {hash!r}")
        if not 1 <= n_input_dims <= len(PRIMES):
            raise ValueError(f"n_input_dims must be between 1 and {len(PRIMES)}, got {n_input_dims}")
        if n_features_per_level not in SUPPORTED_FEATURES_PER_LEVEL:
            raise ValueError(
                f"n_features_per_level must be one of {SUPPORTED_FEATURES_PER_LEVEL} (as tinycudann), "
                f"got {n_features_per_level}"
            )
        if not 1 <= n_levels <= 32:
            raise ValueError(f"n_levels must be between 1 and 32 (tinycudann's offset table), got {n_levels}")
        if not 1 <= log2_hashmap_size <= 31:
            raise ValueError(f"log2_hashmap_size must be between 1 and 31, got {log2_hashmap_size}")
        if base_resolution < 1 or per_level_scale <= 0:
            raise ValueError(
                f"need base_resolution >= 1 and per_level_scale > 0, got {base_resolution}, {per_level_scale}"
            )
        self.n_input_dims = n_input_dims
        self.n_levels = n_levels
        self.n_features_per_level = n_features_per_level
        self.log2_hashmap_size = log2_hashmap_size
        self.base_resolution = int(base_resolution)
        self.per_level_scale = float(per_level_scale)
        self.hash = hash
        self.layouts = level_layouts(
            n_input_dims, n_levels, log2_hashmap_size, self.base_resolution, self.per_level_scale
        )
        n_rows = self.layouts[-1].offset + self.layouts[-1].n_entries
        self.params = nn.Parameter(torch.empty(n_rows * n_features_per_level).uniform_(-1e-4, 1e-4))

        # Per-level constants for the vectorised lookup (buffers follow .to(device), not saved).
        lay = self.layouts
        self.register_buffer("_scales", torch.tensor([x.scale for x in lay], dtype=torch.float64), False)
        self.register_buffer("_entries", torch.tensor([x.n_entries for x in lay], dtype=torch.int64), False)
        self.register_buffer("_offsets", torch.tensor([x.offset for x in lay], dtype=torch.int64), False)
        self.register_buffer("_dense", torch.tensor([x.dense for x in lay], dtype=torch.bool), False)
        # Dense strides resolution**d; hash levels never use them (zero keeps int64 arithmetic small).
        strides = [[(x.resolution**d if x.dense else 0) for d in range(n_input_dims)] for x in lay]
        self.register_buffer("_strides", torch.tensor(strides, dtype=torch.int64), False)

    # ------------------------------------------------------------------------------------------
    @property
    def n_output_dims(self) -> int:
        return self.n_levels * self.n_features_per_level

    @property
    def n_params(self) -> int:
        return self.params.numel()

    def tcnn_config(self) -> dict[str, Any]:
        """The tinycudann encoding config that builds the same grid."""
        return {
            "otype": "HashGrid",
            "n_levels": self.n_levels,
            "n_features_per_level": self.n_features_per_level,
            "log2_hashmap_size": self.log2_hashmap_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.per_level_scale,
            "interpolation": "Linear",
            "hash": self.hash,
        }

    @classmethod
    def from_tcnn_config(cls, n_input_dims: int, config: dict[str, Any]) -> HashGrid:
        """Build from a tinycudann encoding config (its defaults apply to missing keys)."""
        return cls(n_input_dims, **_parse_tcnn_config(config))

    def extra_repr(self) -> str:
        c = self.tcnn_config()
        return (
            f"n_input_dims={self.n_input_dims}, n_levels={c['n_levels']}, F={c['n_features_per_level']}, "
            f"log2_hashmap_size={c['log2_hashmap_size']}, base_resolution={c['base_resolution']}, "
            f"per_level_scale={c['per_level_scale']:.6g}, hash={c['hash']}, n_params={self.n_params}"
        )

    # ------------------------------------------------------------------------------------------
    def grid_positions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cells and fractional weights of ``x`` at every level: ``(N, L, D)`` int64 and float32.

        ``pos = fmaf(scale, x, 0.5)``: the product of two floats is exact in float64, so rounding
        ``x * scale + 0.5`` from float64 to float32 once reproduces the fused multiply-add.
        """
        pos64 = x.to(torch.float64).unsqueeze(1) * self._scales[:, None] + 0.5
        pos = pos64.to(torch.float32)
        cell = torch.floor(pos.detach())
        frac = pos - cell  # differentiable in x: d frac / dx = scale, as tcnn's dy_dx
        cell_u32 = cell.to(torch.int64) & _U32  # (uint32_t)(int)floorf(pos)
        return cell_u32, frac

    def _corner_block(self, per_dim: list[torch.Tensor], d: int) -> torch.Tensor:
        """View a ``(N, L, 2)`` lower/upper pair of dimension ``d`` on the corner axes: corner
        ``c = sum_d bit_d * 2**d`` flattens row-major, so dimension d sits on axis ``D - 1 - d``."""
        shape = [1] * self.n_input_dims
        shape[self.n_input_dims - 1 - d] = 2
        return per_dim[d].view(*per_dim[d].shape[:2], *shape)

    def corner_indices(self, cell: torch.Tensor) -> torch.Tensor:
        """Rows (into the flat ``(n_rows, F)`` table) of the 2^D corners: ``(N, L, 2^D)`` int64."""
        n_dims = self.n_input_dims
        vertices = [torch.stack([cell[..., d], (cell[..., d] + 1) & _U32], dim=-1) for d in range(n_dims)]
        # vertex < 2**32 and stride <= entries <= 2**31: the dense product fits int64 as is.
        dense_terms = [v * self._strides[:, d, None] for d, v in enumerate(vertices)]
        factors = HASH_FACTORS[self.hash]
        hash_terms = [v if factors[d] == 1 else _mul_u32(v, factors[d]) for d, v in enumerate(vertices)]
        dense_index = self._corner_block(dense_terms, 0)
        hash_index = self._corner_block(hash_terms, 0)
        for d in range(1, n_dims):
            dense_index = (dense_index + self._corner_block(dense_terms, d)) & _U32
            hash_index = hash_index ^ self._corner_block(hash_terms, d)
        dense_index, hash_index = dense_index.flatten(2), hash_index.flatten(2)
        index = torch.where(self._dense[:, None], dense_index, hash_index)
        return index % self._entries[:, None] + self._offsets[:, None]

    def interpolation_weights(self, frac: torch.Tensor) -> torch.Tensor:
        """D-linear weights of the 2^D corners, ``(N, L, 2^D)``; corner bit d set means ``+1`` along d."""
        per_dim = [torch.stack([1 - frac[..., d], frac[..., d]], dim=-1) for d in range(self.n_input_dims)]
        weights = self._corner_block(per_dim, 0)
        for d in range(1, self.n_input_dims):
            weights = weights * self._corner_block(per_dim, d)
        return weights.flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``(N, D)`` points in ``[0, 1]^D`` into ``(N, L * F)`` features (level-major)."""
        if x.ndim != 2 or x.shape[1] != self.n_input_dims:
            raise ValueError(f"expected points of shape (N, {self.n_input_dims}), got {tuple(x.shape)}")
        cell, frac = self.grid_positions(x)
        rows = self.corner_indices(cell)
        weights = self.interpolation_weights(frac)
        table = self.params.view(-1, self.n_features_per_level)
        # index_select's backward is a plain index_add, much faster on the CPU than embedding's.
        values = table.index_select(0, rows.flatten()).view(*rows.shape, self.n_features_per_level)
        out = torch.einsum("nlc,nlcf->nlf", weights, values)
        return out.reshape(x.shape[0], self.n_output_dims).to(self.params.dtype)


# ----------------------------------------------------------------------------------------------
# tinycudann interop
# ----------------------------------------------------------------------------------------------

_TCNN_DEFAULTS = {
    "n_levels": 16,
    "n_features_per_level": 2,
    "log2_hashmap_size": 19,
    "base_resolution": 16,
    "per_level_scale": 2.0,
}


def _parse_tcnn_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a tinycudann HashGrid config and return HashGrid's keyword arguments."""
    otype = str(config.get("otype", "HashGrid")).lower()
    grid_type = str(config.get("type", "Hash")).lower()
    if otype not in ("hashgrid", "grid") or grid_type != "hash":
        raise ValueError(f"only tinycudann hash grids are supported (otype HashGrid), got {config}")
    if str(config.get("interpolation", "Linear")).lower() != "linear":
        raise ValueError(f"only 'Linear' interpolation is implemented, got {config.get('interpolation')!r}")
    if config.get("stochastic_interpolation", False):
        raise ValueError("stochastic_interpolation is not implemented; remove it from the config")
    if config.get("fixed_point_pos", False):
        raise ValueError("fixed_point_pos is not implemented; remove it from the config")
    names = {name.lower(): name for name in HASH_FACTORS}  # tcnn compares the names case-insensitively
    hash_name = names.get(str(config.get("hash", DEFAULT_HASH)).lower())
    if hash_name is None:
        raise ValueError(
            f"hash {config.get('hash')!r} is not implemented; use one of {', '.join(HASH_FACTORS)} (tcnn's default is "
            f"{DEFAULT_HASH})"
        )
    if "n_features" in config:
        raise ValueError("give n_levels and n_features_per_level instead of n_features")
    return {k: type(v)(config.get(k, v)) for k, v in _TCNN_DEFAULTS.items()} | {"hash": hash_name}


def _tinycudann_available() -> bool:
    """tinycudann importable with a CUDA device (the decision lives in :mod:`etlib.backends`)."""
    return backends.tinycudann_available()


class TcnnHashGrid(nn.Module):
    """tinycudann-backed hash grid with :class:`HashGrid`'s interface and state dict (one ``params``).

    The tcnn module is kept outside the module tree so that its parameter is registered once, as
    ``params``; a state dict therefore moves freely between :class:`HashGrid` and this class.
    """

    def __init__(
        self,
        n_input_dims: int,
        n_levels: int = 16,
        n_features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        per_level_scale: float = 2.0,
        hash: str = DEFAULT_HASH,
        seed: int = 1337,
    ) -> None:
        super().__init__()
        import tinycudann as tcnn

        if hash not in HASH_FACTORS:
            raise ValueError(f"hash must be one of {', '.join(HASH_FACTORS)} (tinycudann's names), got {hash!r}")
        self.hash = hash
        self.n_input_dims = n_input_dims
        self.n_levels = n_levels
        self.n_features_per_level = n_features_per_level
        self.log2_hashmap_size = log2_hashmap_size
        self.base_resolution = int(base_resolution)
        self.per_level_scale = float(per_level_scale)
        self.layouts = level_layouts(n_input_dims, n_levels, log2_hashmap_size, base_resolution, per_level_scale)
        encoding = tcnn.Encoding(n_input_dims, self.tcnn_config(), seed=seed, dtype=torch.float32)
        object.__setattr__(self, "_tcnn", encoding)
        self.params = encoding.params

    n_output_dims = HashGrid.n_output_dims
    n_params = HashGrid.n_params
    tcnn_config = HashGrid.tcnn_config
    extra_repr = HashGrid.extra_repr

    @classmethod
    def from_tcnn_config(cls, n_input_dims: int, config: dict[str, Any]) -> TcnnHashGrid:
        return cls(n_input_dims, **_parse_tcnn_config(config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_input_dims:
            raise ValueError(f"expected points of shape (N, {self.n_input_dims}), got {tuple(x.shape)}")
        if not x.is_cuda:
            raise ValueError("the tinycudann hash grid needs CUDA inputs; move the points with .cuda()")
        return self._tcnn(x.float().contiguous())


def make_hash_grid(
    n_input_dims: int,
    n_levels: int = 16,
    n_features_per_level: int = 2,
    log2_hashmap_size: int = 19,
    base_resolution: int = 16,
    per_level_scale: float = 2.0,
    backend: str = "auto",
    hash: str = DEFAULT_HASH,
) -> HashGrid | TcnnHashGrid:
    """A hash grid on ``backend``: ``"torch"``, ``"tcnn"`` or ``"auto"`` (tcnn when importable on CUDA)."""
    if backend not in ("auto", "torch", "tcnn"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'tcnn', got {backend!r}")
    kwargs = dict(
        n_levels=n_levels,
        n_features_per_level=n_features_per_level,
        log2_hashmap_size=log2_hashmap_size,
        base_resolution=base_resolution,
        per_level_scale=per_level_scale,
        hash=hash,
    )
    use_tcnn = backend == "tcnn" or (backend == "auto" and _tinycudann_available())
    if backend == "tcnn" and not _tinycudann_available():
        raise ValueError(
            "backend='tcnn' needs tinycudann and a CUDA GPU (build it from source, see environment.yml); "
            "use backend='torch' or 'auto' on the CPU"
        )
    if use_tcnn and n_input_dims in (2, 3):
        return TcnnHashGrid(n_input_dims, **kwargs)
    return HashGrid(n_input_dims, **kwargs)

"""Tri-plane hash encoder H (Sec. 3.2; ER-NeRF [36], TalkingGaussian [37]).

A point ``mu = (x, y, z)`` in ``[-bound, bound]^3`` is projected onto the xy, yz and xz planes; each
projection is encoded by its own 2-D multiresolution hash grid and the three feature vectors are
concatenated: ``H(mu) = H_xy(x, y) ⊕ H_yz(y, z) ⊕ H_xz(x, z)``, of size ``3 * n_levels * F``.
Three 2-D grids collide far less than one 3-D grid of the same memory, which is why ER-NeRF uses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from etlib.config import HashGridSettings
from etlib.encoders.hashgrid import make_hash_grid, per_level_scale_for

#: Plane name -> the two coordinates it keeps (TalkingGaussian's ``split_xyz`` order).
PLANES: dict[str, tuple[int, int]] = {"xy": (0, 1), "yz": (1, 2), "xz": (0, 2)}


class TriPlaneEncoder(nn.Module):
    """``H(mu)``: three 2-D hash grids on the xy, yz and xz planes, features concatenated.

    Args:
        n_levels, features_per_level, log2_hashmap_size, base_resolution: of every plane's grid.
        desired_resolution: finest level's resolution; sets ``per_level_scale``.
        bound: points are expected in ``[-bound, bound]^3`` (TalkingGaussian: 0.15). Points outside
            are clamped to the box, so a Gaussian that drifts out keeps the border features.
        backend: ``"auto"`` (tinycudann on CUDA when importable), ``"torch"`` or ``"tcnn"``.
        init_scale: features start uniform in ``[-init_scale, init_scale]`` (tinycudann: 1e-4).
    """

    _memo: tuple | None = None  # (positions, their version, features) inside reuse_encodings()
    _frozen: tuple | None = None  # (positions, versions, features) inside reuse_frozen_encodings()

    def __init__(
        self,
        n_levels: int = 12,
        features_per_level: int = 1,
        log2_hashmap_size: int = 17,
        base_resolution: int = 16,
        desired_resolution: float = 2048,
        bound: float = 0.15,
        backend: str = "auto",
        init_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        if bound <= 0:
            raise ValueError(f"bound must be positive, got {bound}")
        self.bound = float(bound)
        self.per_level_scale = per_level_scale_for(base_resolution, desired_resolution, n_levels)
        self.planes = nn.ModuleDict(
            {
                name: make_hash_grid(
                    2,
                    n_levels=n_levels,
                    n_features_per_level=features_per_level,
                    log2_hashmap_size=log2_hashmap_size,
                    base_resolution=base_resolution,
                    per_level_scale=self.per_level_scale,
                    backend=backend,
                )
                for name in PLANES
            }
        )
        if init_scale != 1e-4:  # both backends keep their table in one ``params`` tensor
            with torch.no_grad():
                for grid in self.planes.values():
                    grid.params.uniform_(-init_scale, init_scale)

    @classmethod
    def from_settings(
        cls,
        settings: HashGridSettings | None = None,
        region: Literal["face", "mouth"] = "face",
        backend: str = "auto",
    ) -> TriPlaneEncoder:
        """The encoder of a region (``H_F``/``H_E``: ``"face"``, ``H_M``: ``"mouth"``) from a preset's settings."""
        s = settings or HashGridSettings()
        if region not in ("face", "mouth"):
            raise ValueError(f"region must be 'face' or 'mouth', got {region!r}")
        base = s.base_resolution_face if region == "face" else s.base_resolution_mouth
        return cls(
            n_levels=s.n_levels,
            features_per_level=s.features_per_level,
            log2_hashmap_size=s.log2_hashmap_size,
            base_resolution=base,
            desired_resolution=s.desired_resolution,
            bound=s.bound,
            backend=backend,
            init_scale=s.init_scale,
        )

    @property
    def n_output_dims(self) -> int:
        return sum(grid.n_output_dims for grid in self.planes.values())

    def normalize(self, xyz: torch.Tensor) -> torch.Tensor:
        """Map ``[-bound, bound]^3`` to ``[0, 1]^3`` (clamped)."""
        return ((xyz + self.bound) / (2 * self.bound)).clamp(0.0, 1.0)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """Encode ``(N, 3)`` positions into ``(N, 3 * n_levels * F)`` features, planes in xy, yz, xz order."""
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"expected positions of shape (N, 3), got {tuple(xyz.shape)}")
        memo = self._memo
        if memo is not None and memo[0] is xyz and memo[1] == xyz._version:
            return memo[2]
        frozen_key = None
        if self._frozen is not None and not xyz.requires_grad and not any(p.requires_grad for p in self.parameters()):
            frozen_key = (xyz._version, tuple(p._version for p in self.parameters()))
            if self._frozen and self._frozen[0] is xyz and self._frozen[1] == frozen_key:
                return self._frozen[2]
        unit = self.normalize(xyz)
        feats = torch.cat([grid(unit[:, list(PLANES[name])]) for name, grid in self.planes.items()], dim=-1)
        if memo is not None:
            self._memo = (xyz, xyz._version, feats)
        if frozen_key is not None:  # nothing here requires grad, so feats holds no graph a backward could free
            self._frozen = (xyz, frozen_key, feats)
        return feats


@contextmanager
def reuse_encodings(module: nn.Module) -> Iterator[None]:
    """Within the block, every :class:`TriPlaneEncoder` in ``module`` encodes a given positions tensor once.

    The renders of one training step (the frame, and the five frames of L_sync) deform the same canonical
    Gaussians, so ``H(mu)`` is one computation and one node of the autograd graph instead of six, with the
    same gradients. Only valid while the tables and positions are not updated in place: wrap one step's
    forward pass, not the optimiser step.
    """
    encoders = [m for m in module.modules() if isinstance(m, TriPlaneEncoder)]
    for encoder in encoders:
        encoder._memo = (None, -1, None)
    try:
        yield
    finally:
        for encoder in encoders:
            encoder._memo = None


@contextmanager
def reuse_frozen_encodings(module: nn.Module) -> Iterator[None]:
    """Within the block, an encoder whose tables are frozen encodes frozen positions once, across steps.

    A training stage that does not train a network or the Gaussians it deforms (f_F and theta^F in the emotion
    stage S15; f_M, f_F and the positions in the fine-tuning S16) would otherwise recompute the same H(mu) at
    every step. The result is reused only while neither the positions nor any table requires grad and none has
    changed in place (their version counters), so a stage that trains them recomputes as before.
    """
    encoders = [m for m in module.modules() if isinstance(m, TriPlaneEncoder)]
    for encoder in encoders:
        encoder._frozen = ()
    try:
        yield
    finally:
        for encoder in encoders:
            encoder._frozen = None

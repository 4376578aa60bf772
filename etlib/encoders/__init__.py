"""Position encoders: the multiresolution hash grid and the tri-plane hash encoder H (Sec. 3.2, [36])."""

from etlib.encoders.hashgrid import (
    PRIMES,
    HashGrid,
    LevelLayout,
    TcnnHashGrid,
    level_layouts,
    level_scale,
    make_hash_grid,
    per_level_scale_for,
)
from etlib.encoders.triplane import PLANES, TriPlaneEncoder, reuse_encodings, reuse_frozen_encodings

__all__ = [
    "PLANES",
    "PRIMES",
    "HashGrid",
    "LevelLayout",
    "TcnnHashGrid",
    "TriPlaneEncoder",
    "level_layouts",
    "level_scale",
    "make_hash_grid",
    "per_level_scale_for",
    "reuse_encodings",
    "reuse_frozen_encodings",
]

"""The standard 3DGS PLY layout (what the INRIA code, SuperSplat, and other viewers read).

One binary little-endian ``vertex`` element with float32 properties, in this order:
``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3``, where ``f_rest`` is
channel-major (all red coefficients, then green, then blue), ``opacity`` is the logit, ``scale_*`` the
log-scales and ``rot_*`` the (unnormalised) wxyz quaternion. ``nx ny nz`` are written as zeros like
3DGS does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def ply_property_names(n_rest: int) -> list[str]:
    """Property names for ``n_rest`` = 3 (K - 1) higher-order SH values."""
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(n_rest)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def write_gaussian_ply(
    path: str | Path, means: Tensor, log_scales: Tensor, quats: Tensor, opacity_logits: Tensor, sh: Tensor
) -> Path:
    """Write Gaussians (raw, pre-activation parameters; ``sh`` (N,K,3)) as a 3DGS PLY file."""
    path = Path(path)
    n, k = sh.shape[0], sh.shape[1]
    f_dc = sh[:, 0, :]
    f_rest = sh[:, 1:, :].transpose(1, 2).reshape(n, 3 * (k - 1))  # channel-major, as 3DGS
    columns = [means, torch.zeros_like(means), f_dc, f_rest, opacity_logits.reshape(n, 1), log_scales, quats]
    data = torch.cat([c.detach().to("cpu", torch.float32) for c in columns], dim=1).numpy()
    names = ply_property_names(3 * (k - 1))
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names] + ["end_header"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(np.ascontiguousarray(data, dtype="<f4").tobytes())
    return path


_PLY_TYPES = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "uchar": "u1", "uint8": "u1",
              "char": "i1", "int8": "i1", "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
              "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4"}  # fmt: skip


def read_ply_vertices(path: str | Path) -> dict[str, np.ndarray]:
    """Read the ``vertex`` element of a binary PLY file into ``{property: array}`` (a minimal parser:
    scalar properties only, which is all 3DGS files use)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PLY file not found: {path}")
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path} is not a PLY file (no 'ply' magic line)")
        fmt, elements, current = None, [], None
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"{path}: PLY header has no end_header")
            words = line.decode("ascii").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                current = (words[1], int(words[2]), [])
                elements.append(current)
            elif words[0] == "property":
                if words[1] == "list" or current is None:
                    raise ValueError(f"{path}: list properties are not supported by this reader")
                current[2].append((words[2], _PLY_TYPES[words[1]]))
        if fmt not in ("binary_little_endian", "binary_big_endian"):
            raise ValueError(f"{path}: only binary PLY is supported, got format {fmt!r}")
        endian = "<" if fmt == "binary_little_endian" else ">"
        for name, count, props in elements:
            dtype = np.dtype([(p, endian + t) for p, t in props])
            data = np.frombuffer(f.read(dtype.itemsize * count), dtype=dtype, count=count)
            if name == "vertex":
                return {p: np.array(data[p]) for p, _ in props}
    raise ValueError(f"{path}: no 'vertex' element")

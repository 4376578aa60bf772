"""``GaussianSet``: the trainable parameters of a set of 3-D Gaussians (Sec. 3.1).

theta = {mu, s, q, alpha, c, dn}: positions (N,3), log-scales (N,3), rotations (N,4, wxyz), opacity logits
(N,1), colours as SH coefficients (``sh0`` (N,1,3) and ``shN`` (N,K-1,3)) and the normal residual dn (N,3).
Parameters live in ``self.params``, a ParameterDict whose names follow gsplat ("means", "scales",
"quats", "opacities"...), so ``gsplat.strategy`` can densify it in place (see :mod:`.densify`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from etlib.gaussians.camera import Camera, stack_cameras
from etlib.gaussians.normals import gaussian_normals
from etlib.gaussians.ply import read_ply_vertices, write_gaussian_ply
from etlib.gaussians.rasterize import RenderOutput, rasterize
from etlib.gaussians.sh import num_sh_bases, rgb_to_sh, sh_degree_from_bases

#: 3DGS's learning rates (means are scaled by the scene extent); dn as GaussianShader's normal residual.
DEFAULT_LRS = {"means": 1.6e-4, "scales": 5e-3, "quats": 1e-3, "opacities": 5e-2, "sh0": 2.5e-3,
               "shN": 2.5e-3 / 20, "dn": 1e-3}  # fmt: skip


def _knn_scale(points: np.ndarray, k: int = 3) -> np.ndarray:
    """3DGS's initial scale: root mean squared distance to the k nearest neighbours."""
    from scipy.spatial import cKDTree

    if len(points) < 2:
        return np.full(len(points), 0.01)
    k = min(k, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k + 1)
    return np.sqrt(np.maximum((dist[:, 1:] ** 2).mean(axis=1), 1e-14))


class GaussianSet(nn.Module):
    """N 3-D Gaussians with SH colour and a normal residual.

    Build with :meth:`random`, :meth:`from_points`, :meth:`load` or :meth:`from_ply`. ``render`` rasterizes
    them (with shortest-axis normals refined by dn) through :func:`etlib.gaussians.rasterize`.
    """

    def __init__(self, means: Tensor, log_scales: Tensor, quats: Tensor, opacity_logits: Tensor, sh: Tensor,
                 dn: Tensor | None = None) -> None:  # fmt: skip
        super().__init__()
        n = means.shape[0]
        if means.shape != (n, 3) or log_scales.shape != (n, 3) or quats.shape != (n, 4):
            raise ValueError(
                f"expected means (N,3), log_scales (N,3), quats (N,4); got {tuple(means.shape)}, "
                f"{tuple(log_scales.shape)}, {tuple(quats.shape)}"
            )
        if sh.dim() != 3 or sh.shape[0] != n or sh.shape[2] != 3:
            raise ValueError(f"sh must be (N, K, 3) SH coefficients, got {tuple(sh.shape)}")
        self.max_sh_degree = sh_degree_from_bases(sh.shape[1])
        params = {
            "means": means,
            "scales": log_scales,
            "quats": quats,
            "opacities": opacity_logits.reshape(n, 1),
            "sh0": sh[:, :1],
        }
        if self.max_sh_degree > 0:
            params["shN"] = sh[:, 1:]
        params["dn"] = torch.zeros_like(means) if dn is None else dn
        self.params = nn.ParameterDict({k: nn.Parameter(v.detach().clone().contiguous()) for k, v in params.items()})

    # -- constructors --------------------------------------------------------------------------
    @classmethod
    def from_points(
        cls,
        points: Tensor | np.ndarray,
        colors: Tensor | np.ndarray | None = None,
        *,
        sh_degree: int = 3,
        init_opacity: float = 0.1,
        init_scale: float | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> GaussianSet:
        """Gaussians at ``points`` (N,3), optionally coloured (N,3 in [0,1]; default grey), isotropic with
        3DGS's nearest-neighbour scale (or ``init_scale``), random rotations, opacity ``init_opacity``.

        The values are drawn on the CPU (a seeded CPU generator and a KD-tree: the same set on every machine),
        then the set is placed on ``device``."""
        cpu = torch.device("cpu")
        pts = torch.as_tensor(np.asarray(points), dtype=torch.float32, device=cpu)
        if pts.dim() != 2 or pts.shape[1] != 3 or len(pts) == 0:
            raise ValueError(f"points must be a non-empty (N, 3) array, got {tuple(pts.shape)}")
        n = len(pts)
        g = torch.Generator().manual_seed(seed)
        if init_scale is None:
            scale = torch.as_tensor(_knn_scale(pts.numpy().astype(np.float64)), dtype=torch.float32, device=cpu)
        else:
            scale = torch.full((n,), float(init_scale), device=cpu)
        rgb = (
            torch.full((n, 3), 0.5, device=cpu)
            if colors is None
            else torch.as_tensor(np.asarray(colors), dtype=torch.float32, device=cpu)
        )
        if rgb.shape != (n, 3):
            raise ValueError(f"colors must be (N, 3) in [0, 1] matching points, got {tuple(rgb.shape)}")
        sh = torch.zeros(n, num_sh_bases(sh_degree), 3, device=cpu)
        sh[:, 0] = rgb_to_sh(rgb)
        quats = torch.randn(n, 4, generator=g, device=cpu)
        quats = quats / quats.norm(dim=-1, keepdim=True)
        logit = math.log(init_opacity / (1 - init_opacity))
        opacity = torch.full((n, 1), logit, device=cpu)
        return cls(pts, torch.log(scale)[:, None].repeat(1, 3), quats, opacity, sh).to(device)

    @classmethod
    def random(
        cls,
        n: int,
        *,
        bound: float | Sequence[float] = 1.0,
        center: Sequence[float] = (0.0, 0.0, 0.0),
        shape: str = "box",
        sh_degree: int = 3,
        init_opacity: float = 0.1,
        init_scale: float | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> GaussianSet:
        """``n`` Gaussians uniformly in a box (half-extents ``bound``, scalar or per axis) or a sphere
        (radius ``bound``) around ``center``, with random colours; drawn on the CPU, placed on ``device``."""
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        cpu = torch.device("cpu")
        g = torch.Generator().manual_seed(seed)
        half = torch.as_tensor(bound, dtype=torch.float32, device=cpu).expand(3)
        if shape == "box":
            pts = (torch.rand(n, 3, generator=g, device=cpu) * 2 - 1) * half
        elif shape == "sphere":
            d = torch.randn(n, 3, generator=g, device=cpu)
            d = d / d.norm(dim=-1, keepdim=True)
            pts = d * torch.rand(n, 1, generator=g, device=cpu) ** (1 / 3) * half
        else:
            raise ValueError(f"shape must be 'box' or 'sphere', got {shape!r}")
        pts = pts + torch.as_tensor(center, dtype=torch.float32, device=cpu)
        colors = torch.rand(n, 3, generator=g, device=cpu)
        return cls.from_points(pts, colors, sh_degree=sh_degree, init_opacity=init_opacity,
                               init_scale=init_scale, seed=seed, device=device)  # fmt: skip

    # -- activated views -----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def means(self) -> Tensor:
        return self.params["means"]

    @property
    def scales(self) -> Tensor:
        """Activated scales exp(s) (N,3)."""
        return torch.exp(self.params["scales"])

    @property
    def quats(self) -> Tensor:
        """Unit quaternions (N,4), wxyz."""
        q = self.params["quats"]
        return q / q.norm(dim=-1, keepdim=True)

    @property
    def opacities(self) -> Tensor:
        """Activated opacities sigmoid(logit) (N,)."""
        return torch.sigmoid(self.params["opacities"]).squeeze(-1)

    @property
    def sh(self) -> Tensor:
        """All SH coefficients (N,K,3)."""
        if "shN" in self.params:
            return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)
        return self.params["sh0"]

    @property
    def dn(self) -> Tensor:
        return self.params["dn"]

    def normals(self, cameras: Camera | Sequence[Camera]) -> Tensor:
        """World-space normals (C,N,3) for each camera: shortest axis towards it, + dn, normalised."""
        viewmats = stack_cameras(cameras)[0].to(self.means)
        return gaussian_normals(self.means, self.quats, self.scales, viewmats, self.dn)

    def render(
        self,
        cameras: Camera | Sequence[Camera],
        *,
        sh_degree: int | None = None,
        with_normals: bool = True,
        features: Tensor | None = None,
        **kwargs: Any,
    ) -> RenderOutput:
        """Rasterize the set (colour from SH up to ``sh_degree``, default all bands; normals unless
        ``with_normals=False``). Extra keyword arguments go to :func:`rasterize`."""
        degree = self.max_sh_degree if sh_degree is None else min(sh_degree, self.max_sh_degree)
        normals = self.normals(cameras) if with_normals else None
        if normals is not None and isinstance(cameras, Camera):
            normals = normals[0]
        return rasterize(self.means, self.quats, self.scales, self.opacities, self.sh, cameras,
                         normals=normals, features=features, sh_degree=degree, **kwargs)  # fmt: skip

    # -- persistence ---------------------------------------------------------------------------
    def tensors(self) -> dict[str, Tensor]:
        """Raw parameters, detached (``means, log_scales, quats, opacity_logits, sh, dn``)."""
        p = self.params
        return {"means": p["means"].detach(), "log_scales": p["scales"].detach(), "quats": p["quats"].detach(),
                "opacity_logits": p["opacities"].detach(), "sh": self.sh.detach(), "dn": p["dn"].detach()}  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """Save every parameter (any N) with ``torch.save``; read back with :meth:`load`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": "etlib.GaussianSet/1", **{k: v.cpu() for k, v in self.tensors().items()}}, path)
        return path

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> GaussianSet:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Gaussian checkpoint not found: {path}")
        data = torch.load(path, map_location=map_location, weights_only=True)
        if data.get("format") != "etlib.GaussianSet/1":
            raise ValueError(f"{path} is not a GaussianSet checkpoint (saved by GaussianSet.save)")
        return cls(data["means"], data["log_scales"], data["quats"], data["opacity_logits"], data["sh"], data["dn"])

    def export_ply(self, path: str | Path) -> Path:
        """Write the standard 3DGS PLY (see :mod:`.ply`); dn is not part of that format."""
        t = self.tensors()
        return write_gaussian_ply(path, t["means"], t["log_scales"], t["quats"], t["opacity_logits"], t["sh"])

    @classmethod
    def from_ply(cls, path: str | Path) -> GaussianSet:
        """Read a 3DGS PLY file (ours or another 3DGS tool's); dn starts at zero."""
        v = read_ply_vertices(path)
        missing = [k for k in ("x", "y", "z", "f_dc_0", "opacity", "scale_0", "rot_0") if k not in v]
        if missing:
            raise ValueError(f"{path} is not a 3DGS PLY: missing properties {missing}")

        def cols(names: list[str]) -> Tensor:
            return torch.from_numpy(np.stack([v[k] for k in names], axis=1).astype(np.float32))

        n_rest = len([k for k in v if k.startswith("f_rest_")])
        n = len(v["x"])
        f_dc = cols(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :]
        f_rest = cols([f"f_rest_{i}" for i in range(n_rest)]) if n_rest else torch.zeros(n, 0, device="cpu")
        f_rest = f_rest.reshape(n, 3, n_rest // 3).transpose(1, 2)
        return cls(cols(["x", "y", "z"]), cols(["scale_0", "scale_1", "scale_2"]),
                   cols(["rot_0", "rot_1", "rot_2", "rot_3"]), cols(["opacity"]), torch.cat([f_dc, f_rest], 1))  # fmt: skip

    # -- optimisation --------------------------------------------------------------------------
    def make_optimizers(
        self, lrs: dict[str, float] | None = None, *, scene_scale: float = 1.0
    ) -> dict[str, torch.optim.Optimizer]:
        """One Adam per parameter (what ``gsplat.strategy`` expects), 3DGS's learning rates by default
        (``means`` scaled by ``scene_scale``); ``lrs`` overrides some of them."""
        rates = {**DEFAULT_LRS, **(lrs or {})}
        unknown = set(rates) - set(DEFAULT_LRS)
        if unknown:
            raise ValueError(f"unknown parameter names in lrs: {sorted(unknown)}; known: {sorted(DEFAULT_LRS)}")
        out = {}
        for name, p in self.params.items():
            lr = rates[name] * (scene_scale if name == "means" else 1.0)
            out[name] = torch.optim.Adam([{"params": [p], "lr": lr, "name": name}], eps=1e-15)
        return out

"""Fit 3-D Gaussians to one photograph: the smallest complete use of the rasterizer (Eqs. 1-2).

Random Gaussians on a thin slab in front of a pinhole camera learn an image under an L1 loss with Adam,
densified once by gsplat's strategy (clone/split where the view-space gradient is high). Notebook 02 and
the tests use it; it is also a quick check that a rasterizer backend trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from etlib.gaussians.camera import Camera
from etlib.gaussians.densify import Densifier
from etlib.gaussians.model import GaussianSet


def psnr(image: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR (dB) of [0, 1] images."""
    return -10 * math.log10(max(((image.clamp(0, 1) - target) ** 2).mean().item(), 1e-12))


@dataclass
class ImageFit:
    gaussians: GaussianSet
    camera: Camera
    psnr_history: list[float] = field(default_factory=list)
    count_history: list[int] = field(default_factory=list)

    def render(self) -> torch.Tensor:
        with torch.no_grad():
            return self.gaussians.render(self.camera, with_normals=False).color.clamp(0, 1)


def fit_image(
    target: np.ndarray | torch.Tensor,
    n_gaussians: int = 2000,
    steps: int = 150,
    densify_at: tuple[int, int, int] = (50, 50, 105),
    seed: int = 0,
    progress: bool = False,
) -> ImageFit:
    """Fit ``n_gaussians`` random Gaussians to ``target`` (H, W, 3), float in [0, 1] or uint8.

    ``densify_at`` = (refine_start, refine_every, refine_stop) of the densification.
    """
    if isinstance(target, np.ndarray):
        target = torch.from_numpy(target.astype(np.float32) / (255.0 if target.dtype == np.uint8 else 1.0))
    if target.dim() != 3 or target.shape[-1] != 3:
        raise ValueError(f"target must be an (H, W, 3) image, got {tuple(target.shape)}")
    h, w = target.shape[:2]
    torch.manual_seed(seed)
    f = float(max(h, w))
    camera = Camera(torch.eye(4), torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]), w, h)
    gaussians = GaussianSet.random(n_gaussians, bound=(0.5 * w / f, 0.5 * h / f, 0.02), center=(0, 0, 1),
                                   sh_degree=0, init_opacity=0.5, init_scale=1.5 / f, seed=seed)  # fmt: skip
    optimizers = gaussians.make_optimizers(
        {"means": 2e-3, "scales": 2e-2, "quats": 2e-2, "opacities": 5e-2, "sh0": 2e-2}
    )
    start, every, stop = densify_at
    densifier = Densifier(gaussians, optimizers, refine_start_iter=start, refine_every=every, refine_stop_iter=stop,
                          reset_every=10**9, grow_grad2d=2e-4, grow_scale3d=0.05)  # fmt: skip
    fit = ImageFit(gaussians, camera)
    for step in tqdm(range(steps), desc="fit", disable=not progress):
        out = gaussians.render(camera, with_normals=False, tile_size=8)
        densifier.step_pre_backward(step, out.meta)
        (out.color - target).abs().mean().backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        densifier.step_post_backward(step, out.meta)
        fit.psnr_history.append(psnr(out.color.detach(), target))
        fit.count_history.append(len(gaussians))
    fit.psnr_history.append(psnr(fit.render(), target))
    return fit

"""Figures of notebook 02 (3-D Gaussian splatting, Eqs. 1-2)."""

from __future__ import annotations

import numpy as np
import torch


def demo_scene(n: int = 600, seed: int = 0):
    """Flat Gaussians on the camera-facing half of a sphere (radius 0.3, 1.5 in front of a 128 px camera),
    with outward normals: enough to see colour, alpha, depth and normal maps side by side."""
    from etlib.gaussians import Camera

    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    d[:, 2] = -d[:, 2].abs()  # the half facing the camera (at the origin, looking down +z)
    means = d * 0.3 + torch.tensor([0.0, 0.0, 1.5])
    # flat discs tangent to the sphere: the smallest axis along the radius
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(d)
    axis = torch.cross(z, d, dim=-1)
    angle = torch.acos((z * d).sum(-1).clamp(-1, 1))
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    quats = torch.cat([torch.cos(angle / 2)[:, None], axis * torch.sin(angle / 2)[:, None]], -1)
    scales = torch.tensor([0.05, 0.05, 0.005]).expand(n, 3).clone()
    opacities = torch.full((n,), 0.8)
    colors = (d + 1) / 2
    K = torch.tensor([[160.0, 0, 64], [0, 160.0, 64], [0, 0, 1]])
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, normals=d,
                camera=Camera(torch.eye(4), K, 128, 128))  # fmt: skip


def show_render_outputs(out, axes=None):
    """Colour (Eq. 1), accumulated alpha (Eq. 2), expected depth and the camera-space normal map."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 4, figsize=(11, 2.9))
    depth = out.depth[..., 0].detach().cpu().numpy()
    normal = torch.nn.functional.normalize(out.normal.detach(), dim=-1) if out.normal is not None else None
    axes[0].imshow(out.color.detach().clamp(0, 1).cpu().numpy())
    axes[0].set_title("colour C (Eq. 1)", fontsize=8)
    axes[1].imshow(out.alpha[..., 0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("alpha A (Eq. 2)", fontsize=8)
    axes[2].imshow(np.where(depth > 0, depth, np.nan), cmap="viridis")
    axes[2].set_title("expected depth", fontsize=8)
    if normal is not None:
        axes[3].imshow(((normal + 1) / 2 * (out.alpha.detach() > 0.05)).cpu().numpy())
    axes[3].set_title("normal map (camera space)", fontsize=8)
    for ax in axes:
        ax.axis("off")
    return axes


def plot_fit(fit, target, axes=None):
    """The target photo, the fitted Gaussians' render, and PSNR / Gaussian count over the steps."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(10, 3), gridspec_kw={"width_ratios": [1, 1, 1.6]})
    axes[0].imshow(target)
    axes[0].set_title("target", fontsize=8)
    axes[1].imshow(fit.render().cpu().numpy())
    axes[1].set_title(f"{len(fit.gaussians)} Gaussians, {fit.psnr_history[-1]:.1f} dB", fontsize=8)
    for ax in axes[:2]:
        ax.axis("off")
    axes[2].plot(fit.psnr_history, label="PSNR (dB)")
    ax2 = axes[2].twinx()
    ax2.plot(fit.count_history, color="tab:orange", label="Gaussians")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("PSNR (dB)")
    ax2.set_ylabel("Gaussians", color="tab:orange")
    return axes

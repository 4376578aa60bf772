"""3-D Gaussian splatting core (paper Sec. 3.1 and S3, Eqs. 1-2 and S7-S8).

* :class:`Camera` - OpenCV pinhole camera (world-to-camera ``viewmat``, intrinsics ``K``, size).
* :func:`rasterize` -> :class:`RenderOutput` - colour, alpha, expected depth, camera-space normal map and
  feature maps, through gsplat's CUDA kernels or etlib's tiled PyTorch rasterizer (same signature).
* :func:`rasterize_dense_reference` - Eqs. 1-2 evaluated per pixel against every Gaussian (the oracle).
* :func:`gaussian_normals` - GaussianShader-style normals: shortest axis, towards the camera, + dn.
* :class:`GaussianSet` - trainable Gaussians (mu, log s, q, opacity logit, SH colour, dn) with save/load
  and 3DGS PLY export; :class:`Densifier` wires it to ``gsplat.strategy.DefaultStrategy``.

Example::

    from etlib.gaussians import Camera, GaussianSet, gaussian_normals, rasterize

    camera = Camera.look_at((0, 0, -3), width=256, height=256, fov_y_deg=30)
    gaussians = GaussianSet.random(20_000, bound=0.5, sh_degree=3)
    out = gaussians.render(camera)  # colour, alpha, depth, normal map; out.meta for densification
    # or, with per-frame deformed Gaussians and precomputed RGB:
    normals = gaussian_normals(means, quats, scales, camera.viewmat, dn)[0]
    out = rasterize(means, quats, scales, opacities, rgb, camera, normals=normals, features=attention)

Backends: "gsplat" (CUDA kernels) or "torch" (etlib's tiled rasterizer: projection as gsplat's
``_fully_fused_projection``, tile intersection, per-tile compositor with a hand-written backward); both
follow 3DGS's conventions (0.3 px low-pass, opacity-aware <= 3.33-sigma extents, skip alpha < 1/255,
stop at transmittance 1e-4). Differences: gsplat clamps alpha at 0.999, the torch backend at 0.99.
"""

from etlib.gaussians.camera import Camera
from etlib.gaussians.densify import Densifier
from etlib.gaussians.model import DEFAULT_LRS, GaussianSet
from etlib.gaussians.normals import gaussian_normals, shortest_axis
from etlib.gaussians.projection import Projection, covariance_3d, project_gaussians, quat_to_rotmat
from etlib.gaussians.rasterize import RenderOutput, rasterize, rasterize_dense_reference
from etlib.gaussians.sh import SH_C0, eval_sh, num_sh_bases, rgb_to_sh, sh_to_rgb

__all__ = [
    "DEFAULT_LRS",
    "Camera",
    "Densifier",
    "GaussianSet",
    "Projection",
    "RenderOutput",
    "SH_C0",
    "covariance_3d",
    "eval_sh",
    "gaussian_normals",
    "num_sh_bases",
    "project_gaussians",
    "quat_to_rotmat",
    "rasterize",
    "rasterize_dense_reference",
    "rgb_to_sh",
    "sh_to_rgb",
    "shortest_axis",
]

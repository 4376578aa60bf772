"""Tests of etlib.gaussians: the tiled rasterizer against the dense oracle of Eqs. 1-2, projection and SH
against gsplat's PyTorch reference, gradients, normals, persistence and densification."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from etlib.gaussians import (
    Camera,
    RenderOutput,
    covariance_3d,
    eval_sh,
    gaussian_normals,
    project_gaussians,
    rasterize,
    rasterize_dense_reference,
)
from etlib.gaussians.densify import Densifier
from etlib.gaussians.model import GaussianSet
from etlib.gaussians.ply import ply_property_names, read_ply_vertices


def random_scene(n: int, width: int, height: int, *, seed: int = 0, dtype=torch.float64, max_opacity=0.98):
    """n Gaussians in front of a camera at the origin looking down +z, 1-4 px footprints."""
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[40.0, 0, width / 2], [0, 40.0, height / 2], [0, 0, 1]], dtype=dtype)
    cam = Camera(torch.eye(4, dtype=dtype), K, width, height)
    z = 2.0 + torch.rand(n, generator=g, dtype=dtype)
    xy = (
        (torch.rand(n, 2, generator=g, dtype=dtype) - 0.5)
        * torch.tensor([width, height], dtype=dtype)
        / 40.0
        * z[:, None]
    )
    means = torch.cat([xy * 1.1, z[:, None]], dim=1)
    scales = torch.exp(torch.rand(n, 3, generator=g, dtype=dtype) * 1.5) * 0.02
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    opacities = 0.05 + (max_opacity - 0.05) * torch.rand(n, generator=g, dtype=dtype)
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    return means, quats, scales, opacities, colors, cam


# --------------------------------------------------------------------------------------------------
# The tiled rasterizer equals the dense per-pixel reference (Eqs. 1-2)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tile_size", [16, 8, 4])
def test_tiled_rasterizer_matches_dense_reference(tile_size):
    means, quats, scales, opac, _, cam = random_scene(50, 32, 24)
    g = torch.Generator().manual_seed(1)
    sh = torch.randn(50, 9, 3, generator=g, dtype=torch.float64) * 0.3
    features = torch.rand(50, 4, generator=g, dtype=torch.float64)
    dn = 0.2 * torch.randn(50, 3, generator=g, dtype=torch.float64)
    normals = gaussian_normals(means, quats, scales, cam.viewmat, dn)[0]
    kwargs = dict(normals=normals, features=features, sh_degree=2, background=(0.2, 0.3, 0.4))
    out = rasterize(means, quats, scales, opac, sh, cam, tile_size=tile_size, backend="torch", **kwargs)
    ref = rasterize_dense_reference(means, quats, scales, opac, sh, cam, **kwargs)
    assert out.color.shape == (24, 32, 3) and out.alpha.shape == (24, 32, 1) and out.depth.shape == (24, 32, 1)
    assert out.normal.shape == (24, 32, 3) and out.features.shape == (24, 32, 4)
    assert out.alpha.max() > 0.9 and out.alpha.min() < 0.1  # a scene with both covered and empty pixels
    for name in ("color", "alpha", "depth", "normal", "features"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), atol=1e-6, rtol=0, msg=name)


def test_tiled_gradients_match_dense_reference():
    means, quats, scales, opac, colors, cam = random_scene(30, 20, 16, seed=3, max_opacity=1.0)
    params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    out = rasterize(*params, cam, backend="torch", tile_size=8)
    ref = rasterize_dense_reference(*params, cam)
    w = torch.randn_like(out.color)
    grads = torch.autograd.grad((out.color * w).sum() + out.alpha.sum() + out.depth.sum(), params)
    grads_ref = torch.autograd.grad((ref.color * w).sum() + ref.alpha.sum() + ref.depth.sum(), params)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)


def test_single_gaussian_matches_closed_form():
    """An isotropic Gaussian facing the camera: alpha at a pixel is o exp(-d^2 / (2 (f s / z)^2 + 0.6))."""
    f, z, s, o = 50.0, 2.0, 0.04, 0.8
    K = torch.tensor([[f, 0, 16.0], [0, f, 16.0], [0, 0, 1]], dtype=torch.float64)
    cam = Camera(torch.eye(4, dtype=torch.float64), K, 32, 32)
    means = torch.tensor([[0.0, 0.0, z]], dtype=torch.float64)  # projects to pixel (16, 16): a pixel corner
    out = rasterize(means, torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64),
                    torch.full((1, 3), s, dtype=torch.float64), torch.tensor([o], dtype=torch.float64),
                    torch.tensor([[1.0, 0.5, 0.25]], dtype=torch.float64), cam)  # fmt: skip
    var = (f * s / z) ** 2 + 0.3
    for px, py in [(16, 16), (18, 15), (12, 16)]:
        d2 = (px + 0.5 - 16) ** 2 + (py + 0.5 - 16) ** 2
        alpha = o * math.exp(-0.5 * d2 / var)
        assert out.alpha[py, px, 0].item() == pytest.approx(alpha if alpha >= 1 / 255 else 0.0, abs=1e-12)
        assert out.color[py, px].tolist() == pytest.approx([alpha * c for c in (1.0, 0.5, 0.25)], abs=1e-12)
    assert out.depth[16, 16, 0].item() == pytest.approx(z)
    assert out.alpha[0, 0, 0].item() == 0.0  # far outside: below 1/255, skipped


def test_alpha_clamp_and_early_stop():
    """Ten opaque layers: each alpha is clamped to 0.99, and the pixel stops before T drops to 1e-4."""
    n = 10
    K = torch.tensor([[10.0, 0, 4.0], [0, 10.0, 4.0], [0, 0, 1]], dtype=torch.float64)
    cam = Camera(torch.eye(4, dtype=torch.float64), K, 8, 8)
    means = torch.stack([torch.zeros(n), torch.zeros(n), 1.0 + torch.arange(n)], 1).double()
    scales = torch.ones(n, 3, dtype=torch.float64) * 10 * means[:, 2:]  # huge: flat alpha across the image
    colors = torch.eye(3, dtype=torch.float64)[torch.arange(n) % 3]
    out = rasterize(means, torch.tensor([[1.0, 0, 0, 0]]).double().expand(n, 4), scales,
                    torch.ones(n, dtype=torch.float64), colors, cam)  # fmt: skip
    # layer 1: 0.99, layer 2: 0.99 * 0.01 -> T = 1e-4 after two layers, which is <= 1e-4: layer 2 is dropped
    assert out.alpha[4, 4, 0].item() == pytest.approx(0.99, abs=1e-6)
    assert out.color[4, 4].tolist() == pytest.approx([0.99, 0.0, 0.0], abs=1e-6)


def test_multi_camera_equals_single_renders():
    means, quats, scales, opac, colors, cam = random_scene(40, 24, 20, seed=5)
    cam2 = Camera.look_at((0.3, -0.2, -0.5), (0, 0, 2.5), width=24, height=20, fov_y_deg=40, dtype=torch.float64)
    both = rasterize(means, quats, scales, opac, colors, [cam, cam2])
    assert both.color.shape == (2, 20, 24, 3)
    for i, c in enumerate([cam, cam2]):
        one = rasterize(means, quats, scales, opac, colors, c)
        torch.testing.assert_close(both.color[i], one.color)
        torch.testing.assert_close(both.depth[i], one.depth)
    assert both.meta["n_cameras"] == 2 and both.meta["means2d"].shape == (2, 40, 2)


# --------------------------------------------------------------------------------------------------
# Projection and SH against gsplat's PyTorch reference implementation
# --------------------------------------------------------------------------------------------------


def test_projection_matches_gsplat_torch_impl():
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    means, quats, scales, _, _, cam = random_scene(200, 64, 48, seed=7)
    means[:10, 2] = -1.0  # behind the camera
    means[10:20, 0] += 50.0  # far off to the side
    cam2 = Camera.look_at((0.5, 0.2, -1.0), (0, 0, 2.5), width=64, height=48, fov_y_deg=50, dtype=torch.float64)
    viewmats = torch.stack([cam.viewmat, cam2.viewmat])
    Ks = torch.stack([cam.K, cam2.K])
    ours = project_gaussians(means, quats, scales, viewmats, Ks, 64, 48)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, 64, 48)
    assert torch.equal(ours.radii, radii)
    valid = (radii > 0).all(-1)
    assert 50 < valid.sum() < 400
    torch.testing.assert_close(ours.means2d[valid], means2d[valid], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(ours.conics[valid], conics[valid], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(ours.depths, depths)
    torch.testing.assert_close(covariance_3d(quats, scales), covars)


def test_opacity_aware_radii_are_tighter_and_cull_transparent():
    means, quats, scales, opac, _, cam = random_scene(100, 32, 24, seed=2)
    opac[:5] = 1e-3  # below 1/255: never visible
    loose = project_gaussians(means, quats, scales, cam.viewmat[None], cam.K[None], 32, 24)
    tight = project_gaussians(means, quats, scales, cam.viewmat[None], cam.K[None], 32, 24, opacities=opac)
    assert (tight.radii <= loose.radii).all()
    assert (tight.radii[0, :5] == 0).all()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(degree):
    from gsplat.cuda._torch_impl import _spherical_harmonics

    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(100, 3, generator=g, dtype=torch.float64)
    coeffs = torch.randn(100, 16, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(eval_sh(degree, dirs, coeffs), _spherical_harmonics(degree, dirs, coeffs))


# --------------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------------


def test_gradcheck_all_parameters():
    """mu, s, q, alpha, c and dn, through projection, normals, SH and the tiled compositor (float64)."""
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[12.0, 0, 5.0], [0, 12.0, 4.0], [0, 0, 1]], dtype=torch.float64)
    cam = Camera(torch.eye(4, dtype=torch.float64), K, 10, 8)
    means = torch.tensor([[0.0, 0.0, 2.0], [0.3, -0.1, 2.5], [-0.25, 0.15, 3.0]], dtype=torch.float64)
    log_scales = torch.log(torch.tensor([[0.3, 0.2, 0.05], [0.25, 0.35, 0.1], [0.08, 0.4, 0.3]], dtype=torch.float64))
    quats = torch.randn(3, 4, generator=g, dtype=torch.float64)
    opacity_logits = torch.tensor([0.5, 1.0, -0.3], dtype=torch.float64)
    sh = torch.randn(3, 4, 3, generator=g, dtype=torch.float64) * 0.3
    dn = 0.1 * torch.randn(3, 3, generator=g, dtype=torch.float64)
    features = torch.rand(3, 2, generator=g, dtype=torch.float64)

    def render(means, log_scales, quats, opacity_logits, sh, dn):
        scales = torch.exp(log_scales)
        normals = gaussian_normals(means, quats, scales, cam.viewmat, dn)[0]
        out = rasterize(means, quats, scales, torch.sigmoid(opacity_logits), sh, cam, sh_degree=1,
                        normals=normals, features=features, tile_size=4, background=0.5)  # fmt: skip
        return torch.cat([out.color, out.alpha, out.depth, out.normal, out.features], dim=-1)

    inputs = [t.clone().requires_grad_(True) for t in (means, log_scales, quats, opacity_logits, sh, dn)]
    assert render(*inputs)[..., 3].max() > 0.5
    # fast mode checks random vector-Jacobian products against finite differences (full mode: minutes)
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


# --------------------------------------------------------------------------------------------------
# Normals (Sec. 3.1, GaussianShader)
# --------------------------------------------------------------------------------------------------


def test_normals_are_shortest_axis_facing_the_camera():
    cam = Camera(torch.eye(4), torch.tensor([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]), 16, 16)
    means = torch.tensor([[0.0, 0.0, 3.0]])
    angle = 0.3  # rotate the flat axis (z) about x
    quats = torch.tensor([[math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0]])
    scales = torch.tensor([[0.5, 0.5, 0.01]])
    n = gaussian_normals(means, quats, scales, cam.viewmat)[0, 0]
    expected = -torch.tensor([0.0, -math.sin(angle), math.cos(angle)])  # towards the camera (-z side)
    torch.testing.assert_close(n, expected)
    n_dn = gaussian_normals(means, quats, scales, cam.viewmat, torch.tensor([[1.0, 0.0, 0.0]]))[0, 0]
    torch.testing.assert_close(n_dn, torch.nn.functional.normalize(expected + torch.tensor([1.0, 0, 0]), dim=0))
    out = rasterize(means, quats, scales, torch.tensor([0.9]), torch.ones(1, 3), cam, normals=n[None])
    centre = out.normal[8, 8] / out.alpha[8, 8]
    torch.testing.assert_close(centre, expected, atol=1e-5, rtol=0)  # identity camera: camera = world
    assert out.normal[0, 0].abs().max() < out.normal[8, 8].abs().max()


# --------------------------------------------------------------------------------------------------
# GaussianSet: rendering, persistence, densification
# --------------------------------------------------------------------------------------------------


def test_gaussian_set_render_and_meta():
    gs = GaussianSet.random(300, bound=0.5, shape="sphere", sh_degree=2, init_opacity=0.5)
    assert len(gs) == 300 and gs.sh.shape == (300, 9, 3) and gs.dn.shape == (300, 3)
    cam = Camera.look_at((0, 0, -3), width=40, height=30)
    out = gs.render(cam)
    assert isinstance(out, RenderOutput)
    assert out.color.shape == (30, 40, 3) and out.normal.shape == (30, 40, 3)
    assert out.alpha.max() > 0.5
    out.color.mean().backward()
    m = out.meta
    assert m["means2d"].shape == (1, 300, 2) and m["means2d"].grad is not None
    assert m["radii"].shape == (1, 300, 2) and m["gaussian_ids"] is None
    assert (m["width"], m["height"], m["n_cameras"]) == (40, 30, 1)
    assert torch.equal(m["visibility"], (m["radii"] > 0).all(-1))
    assert gs.params["means"].grad is not None and gs.params["dn"].grad is not None


def test_from_points_uses_given_colours_and_knn_scale():
    pts = np.stack(np.meshgrid(np.arange(5), np.arange(5), [0.0], indexing="ij"), -1).reshape(-1, 3) * 0.1
    rgb = np.tile([[1.0, 0.0, 0.5]], (25, 1))
    gs = GaussianSet.from_points(pts, rgb, sh_degree=0)
    from etlib.gaussians.sh import SH_C0

    torch.testing.assert_close(gs.sh[:, 0] * SH_C0 + 0.5, torch.tensor(rgb, dtype=torch.float32))
    assert gs.scales.min() > 0.05 and gs.scales.max() < 0.15  # grid spacing 0.1


def test_save_load_roundtrip(tmp_path):
    gs = GaussianSet.random(50, sh_degree=1, seed=3)
    with torch.no_grad():
        gs.params["dn"].normal_()
    path = gs.save(tmp_path / "g.pt")
    back = GaussianSet.load(path)
    for k, v in gs.tensors().items():
        torch.testing.assert_close(back.tensors()[k], v)
    with pytest.raises(FileNotFoundError):
        GaussianSet.load(tmp_path / "missing.pt")


@pytest.mark.parametrize("degree", [0, 3])
def test_ply_roundtrip(tmp_path, degree):
    gs = GaussianSet.random(40, sh_degree=degree, seed=1)
    with torch.no_grad():
        gs.params["sh0"].normal_()
        if degree:
            gs.params["shN"].normal_()
    path = gs.export_ply(tmp_path / "point_cloud.ply")
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    assert "format binary_little_endian 1.0" in header and "element vertex 40" in header
    names = [line.split()[-1] for line in header.splitlines() if line.startswith("property float")]
    n_rest = 3 * ((degree + 1) ** 2 - 1)
    assert names == ply_property_names(n_rest)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    v = read_ply_vertices(path)
    t = gs.tensors()
    np.testing.assert_allclose(v["x"], t["means"][:, 0].numpy())
    np.testing.assert_allclose(v["opacity"], t["opacity_logits"][:, 0].numpy())
    np.testing.assert_allclose(v["rot_3"], t["quats"][:, 3].numpy())
    if degree:  # f_rest is channel-major: all red coefficients first
        np.testing.assert_allclose(v["f_rest_1"], t["sh"][:, 2, 0].numpy())
        np.testing.assert_allclose(v[f"f_rest_{n_rest // 3}"], t["sh"][:, 1, 1].numpy())
    back = GaussianSet.from_ply(path)
    for k in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        torch.testing.assert_close(back.tensors()[k], t[k])
    import plyfile  # the parity extra: a reader that shares no code with etlib's

    vertex = plyfile.PlyData.read(str(path))["vertex"]
    assert [p.name for p in vertex.properties] == names and vertex.count == 40
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(vertex[f"scale_{i}"]), t["log_scales"][:, i].numpy())
        np.testing.assert_array_equal(np.asarray(vertex[f"f_dc_{i}"]), t["sh"][:, 0, i].numpy())
    np.testing.assert_array_equal(np.asarray(vertex["y"]), t["means"][:, 1].numpy())
    for k in range(n_rest):  # channel-major: f_rest_k is channel k // (n_rest / 3), coefficient 1 + k % (n_rest / 3)
        c, j = divmod(k, n_rest // 3)
        np.testing.assert_array_equal(np.asarray(vertex[f"f_rest_{k}"]), t["sh"][:, 1 + j, c].numpy())


def test_densification_grows_and_prunes():
    gs = GaussianSet.random(200, bound=(0.5, 0.5, 0.05), center=(0, 0, 2), sh_degree=0, init_opacity=0.5)
    with torch.no_grad():
        gs.params["opacities"][:20] = -10.0  # nearly transparent: pruned
    cam = Camera(torch.eye(4), torch.tensor([[40.0, 0, 20], [0, 40.0, 20], [0, 0, 1]]), 40, 40)
    target = torch.rand(40, 40, 3, generator=torch.Generator().manual_seed(0))
    opts = gs.make_optimizers()
    densifier = Densifier(gs, opts, refine_start_iter=0, refine_every=3, grow_grad2d=1e-6, reset_every=10**6)
    counts = []
    for step in range(4):
        out = gs.render(cam, with_normals=False)
        densifier.step_pre_backward(step, out.meta)
        (out.color - target).abs().mean().backward()
        for opt in opts.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        densifier.step_post_backward(step, out.meta)
        counts.append(len(gs))
    assert counts[:3] == [200, 200, 200]
    visible = int(out.meta["visibility"].sum())
    # step 3: every visible Gaussian (high gradient) is cloned or split, then the transparent ones go
    assert counts[3] > 200 + visible // 2
    assert (gs.opacities > 0.004).all()
    assert all(p.shape[0] == counts[3] for p in gs.params.values())
    assert all(opts[k].param_groups[0]["params"][0] is gs.params[k] for k in opts)


def test_cropped_camera_renders_the_window_of_the_full_image():
    gs = GaussianSet.random(300, bound=0.5, shape="sphere", sh_degree=1, init_opacity=0.6)
    cam = Camera.look_at((0, 0, -3), width=64, height=48)
    full = gs.render(cam).color
    window = gs.render(cam.crop(13, 20, 30, 21)).color
    torch.testing.assert_close(window, full[20:41, 13:43], atol=2e-4, rtol=0)  # float32 rounding of cx, cy
    with pytest.raises(ValueError, match="does not fit"):
        cam.crop(40, 0, 30, 10)


def test_rasterize_rejects_bad_input():
    means, quats, scales, opac, colors, cam = random_scene(10, 16, 16)
    with pytest.raises(ValueError, match="quats"):
        rasterize(means, quats[:, :3], scales, opac, colors, cam)
    with pytest.raises(ValueError, match="backend"):
        rasterize(means, quats, scales, opac, colors, cam, backend="vulkan")
    with pytest.raises(ValueError, match="CUDA"):
        rasterize(means, quats, scales, opac, colors, cam, backend="gsplat")
    with pytest.raises(ValueError, match="sh_degree"):
        rasterize(means, quats, scales, opac, colors, cam, sh_degree=1)
    other = Camera(cam.viewmat, cam.K, 8, 8)
    with pytest.raises(ValueError, match="width/height"):
        rasterize(means, quats, scales, opac, colors, [cam, other])


def test_look_at_keeps_up_up_and_right_right():
    cam = Camera.look_at((0, 0, -3), (0, 0, 0), up=(0, -1, 0), width=32, height=32, dtype=torch.float64)
    points = torch.tensor([[0.0, -0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    proj = project_gaussians(points, torch.tensor([[1.0, 0, 0, 0]]).double().expand(3, 4),
                             torch.full((3, 3), 0.01).double(), cam.viewmat[None], cam.K[None], 32, 32)  # fmt: skip
    (above, right, centre) = proj.means2d[0].tolist()
    assert centre == pytest.approx([16.0, 16.0])
    assert above[1] < 16.0 and above[0] == pytest.approx(16.0)  # world "up" appears at the top
    assert right[0] > 16.0  # OpenCV: x to the right, y down, z forward (right-handed)
    assert torch.det(cam.viewmat[:3, :3]).item() == pytest.approx(1.0)
    torch.testing.assert_close(cam.campos, torch.tensor([0.0, 0.0, -3.0], dtype=torch.float64))


def test_nothing_visible_renders_background_and_backpropagates():
    means, quats, scales, opac, colors, cam = random_scene(5, 16, 12)
    means = (means * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)).requires_grad_(True)  # behind
    out = rasterize(means, quats, scales, opac, colors, cam, background=(0.5, 0.5, 0.5))
    assert (out.alpha == 0).all() and torch.allclose(out.color, torch.full_like(out.color, 0.5))
    out.color.sum().backward()
    assert (means.grad == 0).all()

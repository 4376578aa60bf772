"""Eqs. S9-S10: compositing inside mouth, background and face."""

from __future__ import annotations

import pytest
import torch

from etlib.gaussians.camera import Camera
from etlib.gaussians.rasterize import rasterize
from etlib.talking.composition import composite, mouth_over_background, over


def test_composition_matches_the_equations_exactly():
    # Colours are the rasterizer's (premultiplied by the layer's opacity, Eq. S7).
    face_c = torch.tensor([[[0.25, 0.0, 0.0]], [[0.2, 0.4, 0.6]]])  # (H=2, W=1, 3): a red face at A = 0.25
    face_a = torch.tensor([[[0.25]], [[1.0]]])
    mouth_c = torch.tensor([[[0.0, 0.5, 0.0]], [[0.0, 0.0, 0.0]]])  # a green mouth at A = 0.5
    mouth_a = torch.tensor([[[0.5]], [[0.0]]])
    bg = torch.tensor([[[0.0, 0.0, 1.0]], [[1.0, 1.0, 1.0]]])
    out = composite(face_c, face_a, mouth_c, mouth_a, bg)
    # Pixel 0: C_mouth-bg = (0, .5, 0) + .5 * (0, 0, 1) = (0, .5, .5); I = (.25, 0, 0) + .75 * (0, .5, .5).
    expected_mb = torch.tensor([[[0.0, 0.5, 0.5]], [[1.0, 1.0, 1.0]]])
    expected = torch.tensor([[[0.25, 0.375, 0.375]], [[0.2, 0.4, 0.6]]])
    assert torch.equal(out.mouth_background, expected_mb)
    assert torch.equal(out.image, expected)
    assert torch.equal(mouth_over_background(mouth_c, mouth_a, bg), expected_mb)


def test_composition_random_channel_first_and_limits():
    torch.manual_seed(0)
    fc, mc, bg = torch.rand(3, 2, 3, 5, 4).unbind(0)
    fa, ma = torch.rand(2, 2, 1, 5, 4).unbind(0)
    fc, mc = fc * fa, mc * ma  # premultiplied, as rendered
    out = composite(fc, fa, mc, ma, bg)
    mb = mc + bg * (1 - ma)
    torch.testing.assert_close(out.image, fc + mb * (1 - fa))
    # Opaque face hides everything; transparent face and mouth show the background.
    one, zero = torch.ones_like(fa), torch.zeros_like(fa)
    torch.testing.assert_close(composite(fc, one, mc, ma, bg).image, fc)
    torch.testing.assert_close(composite(fc * 0, zero, mc * 0, zero, bg).image, bg)
    with pytest.raises(ValueError, match="broadcast"):
        over(torch.rand(4, 4, 3), torch.rand(4, 4, 2), torch.rand(4, 4, 3))


def _gaussians(n: int, z: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    means = torch.cat([(torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 0.6, torch.full((n, 1), z)], 1)
    means[:, 2] += torch.rand(n, generator=g, dtype=torch.float64) * 0.05
    scales = 0.01 + 0.03 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    opacities = 0.1 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    colors = torch.rand(n, 3, generator=g, dtype=torch.float64)
    return means, quats, scales, opacities, colors


def test_layers_composite_like_one_render_when_the_face_is_in_front():
    """Rendering the face and inside-mouth layers apart and compositing them (Eqs. S9-S10) must give the
    image of rendering all their Gaussians together when every face Gaussian is nearer: half-covered
    pixels (the jaw line, the inner lips) are neither darkened nor lightened."""
    K = torch.tensor([[60.0, 0, 16], [0, 60.0, 16], [0, 0, 1]], dtype=torch.float64)
    cam = Camera(torch.eye(4, dtype=torch.float64), K, 32, 32)
    face, mouth = _gaussians(40, 2.0, seed=1), _gaussians(40, 2.5, seed=2)
    background = torch.tensor([0.2, 0.7, 0.4], dtype=torch.float64)
    f, m = rasterize(*face, cam, backend="torch"), rasterize(*mouth, cam, backend="torch")
    together = rasterize(*(torch.cat([a, b]) for a, b in zip(face, mouth)), cam, background=background, backend="torch")
    half = ((f.alpha > 0.2) & (f.alpha < 0.8)).sum()
    assert half > 20  # the check is about partly covered pixels: there must be many
    out = composite(f.color, f.alpha, m.color, m.alpha, background.expand(32, 32, 3))
    torch.testing.assert_close(out.image, together.color, atol=1e-9, rtol=0)

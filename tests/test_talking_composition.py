"""Eqs. S9-S10: compositing inside mouth, background and face."""

from __future__ import annotations

import pytest
import torch

from etlib.talking.composition import composite, mouth_over_background, over


def test_composition_matches_the_equations_exactly():
    face_c = torch.tensor([[[1.0, 0.0, 0.0]], [[0.2, 0.4, 0.6]]])  # (H=2, W=1, 3)
    face_a = torch.tensor([[[0.25]], [[1.0]]])
    mouth_c = torch.tensor([[[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]])
    mouth_a = torch.tensor([[[0.5]], [[0.0]]])
    bg = torch.tensor([[[0.0, 0.0, 1.0]], [[1.0, 1.0, 1.0]]])
    out = composite(face_c, face_a, mouth_c, mouth_a, bg)
    # Pixel 0: C_mouth-bg = (0, .5, 0) + (0, 0, .5) = (0, .5, .5); I = (.25, 0, 0) + .75 * (0, .5, .5).
    expected_mb = torch.tensor([[[0.0, 0.5, 0.5]], [[1.0, 1.0, 1.0]]])
    expected = torch.tensor([[[0.25, 0.375, 0.375]], [[0.2, 0.4, 0.6]]])
    assert torch.equal(out.mouth_background, expected_mb)
    assert torch.equal(out.image, expected)
    assert torch.equal(mouth_over_background(mouth_c, mouth_a, bg), expected_mb)


def test_composition_random_channel_first_and_limits():
    torch.manual_seed(0)
    fc, mc, bg = torch.rand(3, 2, 3, 5, 4).unbind(0)
    fa, ma = torch.rand(2, 2, 1, 5, 4).unbind(0)
    out = composite(fc, fa, mc, ma, bg)
    mb = mc * ma + bg * (1 - ma)
    torch.testing.assert_close(out.image, fc * fa + mb * (1 - fa))
    # Opaque face hides everything; transparent face and mouth show the background.
    one, zero = torch.ones_like(fa), torch.zeros_like(fa)
    torch.testing.assert_close(composite(fc, one, mc, ma, bg).image, fc)
    torch.testing.assert_close(composite(fc, zero, mc, zero, bg).image, bg)
    with pytest.raises(ValueError, match="broadcast"):
        over(torch.rand(4, 4, 3), torch.rand(4, 4, 2), torch.rand(4, 4, 3))

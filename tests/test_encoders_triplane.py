"""Tri-plane hash encoder H (Sec. 3.2): plane projections, bounds, sizes and gradients."""

from __future__ import annotations

import pytest
import torch

from etlib.config import PRESETS, HashGridSettings
from etlib.encoders import HashGrid, TriPlaneEncoder


def small_encoder(**kwargs) -> TriPlaneEncoder:
    args = dict(n_levels=4, features_per_level=2, log2_hashmap_size=10, base_resolution=8, desired_resolution=64)
    args.update(kwargs)
    return TriPlaneEncoder(backend="torch", **args)


def test_output_size_and_plane_order():
    torch.manual_seed(0)
    enc = small_encoder()
    assert enc.n_output_dims == 3 * 4 * 2
    xyz = (torch.rand(100, 3) - 0.5) * 0.3
    out = enc(xyz)
    assert out.shape == (100, 24)
    unit = (xyz + 0.15) / 0.3
    torch.testing.assert_close(out[:, :8], enc.planes["xy"](unit[:, [0, 1]]))
    torch.testing.assert_close(out[:, 8:16], enc.planes["yz"](unit[:, [1, 2]]))
    torch.testing.assert_close(out[:, 16:], enc.planes["xz"](unit[:, [0, 2]]))


def test_each_plane_ignores_its_missing_axis():
    torch.manual_seed(1)
    enc = small_encoder()
    with torch.no_grad():
        for grid in enc.planes.values():
            grid.params.normal_()
    xyz = (torch.rand(50, 3) - 0.5) * 0.3
    moved = xyz.clone()
    moved[:, 2] = -moved[:, 2]  # change z only
    a, b = enc(xyz), enc(moved)
    torch.testing.assert_close(a[:, :8], b[:, :8])  # xy plane unchanged
    assert not torch.allclose(a[:, 8:], b[:, 8:])  # yz and xz see z


def test_bounds_map_to_the_unit_square_and_clamp():
    enc = small_encoder(bound=0.2)
    pts = torch.tensor([[-0.2, 0.0, 0.2], [-1.0, 0.5, 0.1]])
    torch.testing.assert_close(enc.normalize(pts), torch.tensor([[0.0, 0.5, 1.0], [0.0, 1.0, 0.75]]))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        enc(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="bound"):
        small_encoder(bound=0.0)


def test_gradients_reach_all_planes_and_positions():
    torch.manual_seed(2)
    enc = small_encoder()
    xyz = ((torch.rand(200, 3) - 0.5) * 0.25).requires_grad_(True)
    (enc(xyz) ** 2).sum().backward()
    for name, grid in enc.planes.items():
        assert grid.params.grad is not None and grid.params.grad.abs().sum() > 0, name
    assert xyz.grad.abs().sum() > 0


def test_settings_give_talkinggaussian_resolutions():
    settings = HashGridSettings()
    face = TriPlaneEncoder.from_settings(settings, "face", backend="torch")
    mouth = TriPlaneEncoder.from_settings(settings, "mouth", backend="torch")
    assert face.n_output_dims == mouth.n_output_dims == 3 * 12 * 1
    for enc, base in ((face, 16), (mouth, 64)):
        grid = enc.planes["xy"]
        assert isinstance(grid, HashGrid)
        assert grid.layouts[0].resolution == base
        assert grid.layouts[-1].resolution == 2048  # desired resolution reached at the last level
        assert grid.layouts[-1].n_entries == 2**17
        assert enc.bound == 0.15
    smoke = TriPlaneEncoder.from_settings(PRESETS["smoke"].hash_grid, "face", backend="torch")
    assert smoke.n_output_dims == 3 * 4
    with pytest.raises(ValueError, match="region"):
        TriPlaneEncoder.from_settings(settings, "eyes")


def test_init_scale_sets_the_starting_feature_range():
    paper = TriPlaneEncoder.from_settings(HashGridSettings(n_levels=2, log2_hashmap_size=8), backend="torch")
    short = TriPlaneEncoder.from_settings(
        HashGridSettings(n_levels=2, log2_hashmap_size=8, init_scale=0.5), backend="torch"
    )
    for enc, scale in ((paper, 1e-4), (short, 0.5)):
        values = torch.cat([p.detach().flatten() for p in enc.parameters()])
        assert values.abs().max() <= scale
        assert values.abs().max() > 0.9 * scale  # uniform over the whole range, not a smaller one


def _counting(encoder: TriPlaneEncoder) -> list[int]:
    """Counts the encoder's real computations (one per call of its xy plane)."""
    calls = [0]
    encoder.planes["xy"].register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_frozen_encodings_are_reused_across_steps_only_while_nothing_changes():
    from etlib.encoders import reuse_frozen_encodings

    torch.manual_seed(0)
    enc = small_encoder().requires_grad_(False)
    mu = torch.nn.Parameter(torch.rand(50, 3) * 0.2 - 0.1, requires_grad=False)
    expected = enc(mu)
    calls = _counting(enc)
    with reuse_frozen_encodings(enc):
        first = enc(mu)
        assert enc(mu) is first and calls[0] == 1  # frozen tables and positions: encoded once
        torch.testing.assert_close(first, expected, rtol=0, atol=0)
        assert enc(mu + 0.0) is not first and calls[0] == 2  # other positions are encoded
        with torch.no_grad():
            next(enc.parameters()).add_(0.01)  # a table changed in place: its version moved
        assert enc(mu) is not first and calls[0] == 3
        with torch.no_grad():
            mu.add_(0.001)  # so did the positions
        assert calls[0] == 3 and enc(mu) is not first and calls[0] == 4
        enc.requires_grad_(True)  # a stage that trains the tables: never reused, gradients flow
        out = enc(mu)
        assert enc(mu) is not out and calls[0] == 6
        out.sum().backward()
        assert all(p.grad is not None for p in enc.parameters())
    enc.requires_grad_(False)
    enc(mu), enc(mu)
    assert calls[0] == 8  # outside the block nothing is kept

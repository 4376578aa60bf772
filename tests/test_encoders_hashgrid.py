"""The PyTorch hash grid against tiny-cuda-nn's formulas (grid.h), computed independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from etlib.encoders import hashgrid as hg
from etlib.encoders.hashgrid import HashGrid, TcnnHashGrid, make_hash_grid, per_level_scale_for

# tiny-cuda-nn's common_device.h: coherent_prime_hash (its default, "CoherentPrime") and prime_hash ("Prime")
PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
PAPER_PRIMES = (1958374283, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)


def brute_force_rows(x: np.ndarray, layout: hg.LevelLayout, primes=PRIMES) -> tuple[list[int], list[float]]:
    """Rows and weights of the 2^D corners of one point at one level, in plain Python integers."""
    d = len(x)
    pos = [np.float32(float(xi) * layout.scale + 0.5) for xi in np.asarray(x, np.float32)]
    cell = [math.floor(p) for p in pos]
    frac = [float(p) - c for p, c in zip(pos, cell)]
    rows, weights = [], []
    for corner in range(2**d):
        bits = [(corner >> k) & 1 for k in range(d)]
        v = [c + b for c, b in zip(cell, bits)]
        if layout.resolution**d <= layout.n_entries:
            index = sum(v[k] * layout.resolution**k for k in range(d))
        else:
            index = 0
            for k in range(d):
                index ^= (v[k] * primes[k]) & 0xFFFFFFFF
        rows.append(layout.offset + index % layout.n_entries)
        weights.append(math.prod(f if b else 1 - f for f, b in zip(frac, bits)))
    return rows, weights


def test_layout_of_a_power_of_two_config():
    # base 16, b = 2: scale = 16 * 2^l - 1 is an integer, resolution = 16 * 2^l.
    grid = HashGrid(2, n_levels=6, n_features_per_level=2, log2_hashmap_size=12, base_resolution=16)
    assert [lay.scale for lay in grid.layouts] == [15.0, 31.0, 63.0, 127.0, 255.0, 511.0]
    assert [lay.resolution for lay in grid.layouts] == [16, 32, 64, 128, 256, 512]
    assert [lay.n_entries for lay in grid.layouts] == [256, 1024, 4096, 4096, 4096, 4096]
    assert [lay.offset for lay in grid.layouts] == [0, 256, 1280, 5376, 9472, 13568]
    assert [lay.dense for lay in grid.layouts] == [True, True, True, False, False, False]
    assert grid.n_params == (13568 + 4096) * 2
    assert grid.n_output_dims == 12


def test_layout_pads_levels_to_multiples_of_eight():
    grid = HashGrid(2, n_levels=2, n_features_per_level=2, log2_hashmap_size=10, base_resolution=3)
    # scales 2 and 5 -> resolutions 3 and 6 -> 9 and 36 vertices -> 16 and 40 entries.
    assert [(lay.resolution, lay.n_entries, lay.offset) for lay in grid.layouts] == [(3, 16, 0), (6, 40, 16)]
    assert grid.n_params == 112
    grid3 = HashGrid(3, n_levels=2, n_features_per_level=1, log2_hashmap_size=8, base_resolution=3)
    # 27 -> 32 entries (dense); 216 -> 216 entries (dense, 216 <= 256).
    assert [(lay.n_entries, lay.dense) for lay in grid3.layouts] == [(32, True), (216, True)]


def test_talkinggaussian_face_config_reaches_the_desired_resolution():
    b = per_level_scale_for(16, 2048, 12)
    assert b == pytest.approx(128 ** (1 / 11))
    grid = HashGrid(2, n_levels=12, n_features_per_level=1, log2_hashmap_size=17, base_resolution=16, per_level_scale=b)
    expected_scales = [16 * b**lvl - 1 for lvl in range(12)]
    assert [lay.scale for lay in grid.layouts] == pytest.approx(expected_scales, rel=1e-6)
    assert grid.layouts[-1].resolution == 2048
    assert [lay.resolution for lay in grid.layouts[:3]] == [16, 25, 39]
    # The first level whose dense grid exceeds 2^17 entries switches to hashing.
    assert [lay.dense for lay in grid.layouts] == [r**2 <= 2**17 for r in (x.resolution for x in grid.layouts)]
    assert all(lay.n_entries == 2**17 for lay in grid.layouts if not lay.dense)


@pytest.mark.parametrize("dims", [2, 3])
def test_corner_rows_and_output_match_brute_force(dims):
    torch.manual_seed(0)
    grid = HashGrid(
        dims, n_levels=8, n_features_per_level=2, log2_hashmap_size=10, base_resolution=4, per_level_scale=1.7
    )
    assert any(lay.dense for lay in grid.layouts) and any(not lay.dense for lay in grid.layouts)
    with torch.no_grad():
        grid.params.copy_(torch.randn(grid.n_params))
    x = torch.rand(7, dims)
    x[0] = 0.0
    x[1] = 1.0
    cell, frac = grid.grid_positions(x)
    rows = grid.corner_indices(cell)
    weights = grid.interpolation_weights(frac)
    out = grid(x).double()
    table = grid.params.detach().double().view(-1, 2)
    for i in range(x.shape[0]):
        for lay in grid.layouts:
            exp_rows, exp_weights = brute_force_rows(x[i].numpy(), lay)
            assert rows[i, lay.level].tolist() == exp_rows
            assert weights[i, lay.level].tolist() == pytest.approx(exp_weights, abs=1e-6)
            expected = sum(w * table[r] for r, w in zip(exp_rows, exp_weights))
            torch.testing.assert_close(out[i, 2 * lay.level : 2 * lay.level + 2], expected, atol=1e-5, rtol=1e-5)


def test_hash_uses_uint32_wraparound():
    # 70000 * 2654435761 overflows 32 bits: the hash keeps only the low 32 bits, as in CUDA.
    v = torch.tensor([70000], dtype=torch.int64)
    assert hg._mul_u32(v, PRIMES[1]).item() == (70000 * PRIMES[1]) % 2**32
    big = torch.tensor([2**32 - 1], dtype=torch.int64)
    assert hg._mul_u32(big, PRIMES[3]).item() == ((2**32 - 1) * PRIMES[3]) % 2**32


def test_dense_levels_interpolate_a_linear_function_exactly():
    """Vertex v of a dense level sits at x = (v - 0.5) / scale; fill it with f(x) = a.x + c."""
    grid = HashGrid(2, n_levels=4, n_features_per_level=1, log2_hashmap_size=16, base_resolution=8, per_level_scale=1.5)
    a, c = torch.tensor([0.7, -1.3]), 0.25
    with torch.no_grad():
        for lay in grid.layouts:
            assert lay.dense
            index = torch.arange(lay.resolution**2)
            vertex = torch.stack([index % lay.resolution, index // lay.resolution], dim=-1).double()
            values = ((vertex - 0.5) / lay.scale) @ a.double() + c
            grid.params[lay.offset : lay.offset + len(index)] = values.float()
    # Stay off the far border: with the +0.5 shift, the upper corner of x > (scale - 0.5) / scale is
    # vertex `resolution`, which wraps around to the next row (tcnn's documented wrap-around).
    x = (torch.rand(500, 2) * 0.85 + 0.05).requires_grad_(True)
    out = grid(x)
    expected = (x.detach() @ a + c).unsqueeze(1).expand(-1, 4)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=0)
    # d out / d x is the slope a at every level.
    out.sum().backward()
    torch.testing.assert_close(x.grad, a.expand(500, 2) * 4, atol=2e-3, rtol=0)


def test_gradient_reaches_only_the_touched_rows():
    grid = HashGrid(2, n_levels=3, n_features_per_level=1, log2_hashmap_size=8, base_resolution=4)
    x = torch.tensor([[0.3, 0.6]])
    grid(x).sum().backward()
    grad = grid.params.grad
    cell, frac = grid.grid_positions(x)
    rows = grid.corner_indices(cell).flatten()
    weights = grid.interpolation_weights(frac).flatten()
    expected = torch.zeros_like(grad).index_add_(0, rows, weights)
    torch.testing.assert_close(grad, expected)
    assert torch.count_nonzero(grad) <= 12


def test_init_range_and_state_dict_layout():
    torch.manual_seed(1)
    grid = HashGrid(3, n_levels=4, n_features_per_level=2, log2_hashmap_size=12, base_resolution=4)
    assert list(grid.state_dict()) == ["params"]
    assert grid.params.ndim == 1 and grid.params.abs().max() <= 1e-4
    other = HashGrid.from_tcnn_config(3, grid.tcnn_config())
    other.load_state_dict(grid.state_dict())
    x = torch.rand(64, 3)
    torch.testing.assert_close(other(x), grid(x), rtol=0, atol=0)


def test_tcnn_config_parsing():
    grid = HashGrid.from_tcnn_config(2, {"otype": "HashGrid"})
    assert (grid.n_levels, grid.n_features_per_level, grid.log2_hashmap_size) == (16, 2, 19)
    assert (grid.base_resolution, grid.per_level_scale) == (16, 2.0)
    # tcnn's default hash is CoherentPrime (what a config without "hash" gets); names compare case-insensitively
    assert grid.hash == "CoherentPrime" and grid.tcnn_config()["hash"] == "CoherentPrime"
    assert HashGrid.from_tcnn_config(2, {"otype": "HashGrid", "hash": "coherentprime"}).hash == "CoherentPrime"
    assert HashGrid.from_tcnn_config(2, {"otype": "HashGrid", "hash": "Prime"}).hash == "Prime"
    for bad_hash in ("Rng", "BaseConvert", "Murmur"):
        with pytest.raises(ValueError, match="hash"):
            HashGrid.from_tcnn_config(2, {"otype": "HashGrid", "hash": bad_hash})
    with pytest.raises(ValueError, match="hash"):
        HashGrid(2, hash="Rng")
    for bad in ({"otype": "Frequency"}, {"otype": "HashGrid", "interpolation": "Smoothstep"}, {"type": "Dense"},
                {"otype": "HashGrid", "fixed_point_pos": True}):  # fmt: skip
        with pytest.raises(ValueError):
            HashGrid.from_tcnn_config(2, bad)
    with pytest.raises(ValueError, match="n_features_per_level"):
        HashGrid(2, n_features_per_level=3)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        HashGrid(2, n_levels=2)(torch.rand(5, 3))


def test_backend_choice_on_this_machine():
    if hg._tinycudann_available():
        pytest.skip("tinycudann present: the CPU fallback is not what 'auto' picks")
    assert type(make_hash_grid(2, n_levels=2, backend="auto")) is HashGrid
    with pytest.raises(ValueError, match="tinycudann"):
        make_hash_grid(2, backend="tcnn")
    with pytest.raises(ValueError, match="backend"):
        make_hash_grid(2, backend="jax")


@pytest.mark.cuda
def test_torch_grid_matches_tinycudann():
    if not hg._tinycudann_available():
        pytest.skip("needs tinycudann on a CUDA GPU")
    cfg = dict(n_levels=12, n_features_per_level=2, log2_hashmap_size=15, base_resolution=16, per_level_scale=1.5)
    tcnn_grid = TcnnHashGrid(3, **cfg).cuda()
    torch_grid = HashGrid(3, **cfg).cuda()
    assert tcnn_grid.n_params == torch_grid.n_params
    with torch.no_grad():
        tcnn_grid.params.copy_(torch.randn_like(tcnn_grid.params))
    torch_grid.load_state_dict(tcnn_grid.state_dict())
    x = torch.rand(4096, 3, device="cuda")
    torch.testing.assert_close(torch_grid(x), tcnn_grid(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("hash_name,primes", [("CoherentPrime", PRIMES), ("Prime", PAPER_PRIMES),
                                              ("ReversedPrime", tuple(reversed(PAPER_PRIMES)))])  # fmt: skip
def test_each_tcnn_hash_indexes_as_its_factors_say(hash_name, primes):
    """The hashed levels follow tcnn's lcg_hash with the hash's factors; the dense levels do not hash at all."""
    cfg = dict(n_levels=8, n_features_per_level=1, log2_hashmap_size=10, base_resolution=4, per_level_scale=1.7)
    grid, coherent = HashGrid(3, hash=hash_name, **cfg), HashGrid(3, **cfg)
    x = torch.rand(16, 3, generator=torch.Generator().manual_seed(3))
    cell, _ = grid.grid_positions(x)
    rows, coherent_rows = grid.corner_indices(cell), coherent.corner_indices(cell)
    for i in range(len(x)):
        for lay in grid.layouts:
            assert rows[i, lay.level].tolist() == brute_force_rows(x[i].numpy(), lay, primes)[0]
    hashed = [lay.level for lay in grid.layouts if not lay.dense]
    dense = [lay.level for lay in grid.layouts if lay.dense]
    assert torch.equal(rows[:, dense], coherent_rows[:, dense])
    if hash_name != "CoherentPrime":
        assert not torch.equal(rows[:, hashed], coherent_rows[:, hashed])

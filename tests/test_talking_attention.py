"""Audio encoding and region attention (Eqs. 4-5, S7)."""

from __future__ import annotations

import pytest
import torch

from etlib.talking.attention import MLP, AudioAttNet, AudioEncoder, AudioNet, RegionAttention


def test_temporal_attention_weights_sum_to_one_and_mix_frames():
    torch.manual_seed(0)
    att = AudioAttNet(dim=32, seq_len=8)
    frames = torch.randn(3, 8, 32)
    w = att.weights(frames)
    assert w.shape == (3, 8)
    assert (w > 0).all()
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(3))
    torch.testing.assert_close(att(frames), (w.unsqueeze(-1) * frames).sum(dim=1))
    # A window of identical frames is returned unchanged, whatever the weights.
    same = torch.randn(1, 1, 32).expand(1, 8, 32)
    torch.testing.assert_close(att(same), same[:, 0])
    with pytest.raises(ValueError, match="frame features"):
        att.weights(torch.randn(1, 7, 32))


@pytest.mark.parametrize("win", [1, 4, 16])
def test_audio_net_compresses_a_window(win):
    net = AudioNet(dim_in=29, dim_out=24, win_size=win)
    assert net(torch.randn(5, 29, win)).shape == (5, 24)
    with pytest.raises(ValueError, match="power of two"):
        AudioNet(29, win_size=12)
    with pytest.raises(ValueError, match="audio features"):
        net(torch.randn(5, 29, win + 1))


def test_audio_encoder_single_and_batched_windows_agree():
    torch.manual_seed(1)
    enc = AudioEncoder(dim_in=29, dim_out=32, win_size=16, seq_len=8)
    windows = torch.randn(2, 8, 29, 16)
    batched = enc(windows)
    assert batched.shape == (2, 32)
    torch.testing.assert_close(enc(windows[1]), batched[1])
    with pytest.raises(ValueError, match="audio window"):
        enc(torch.randn(6, 29, 16))


def test_region_attention_is_a_hadamard_product():
    torch.manual_seed(2)
    feats = torch.randn(10, 36)
    cond = torch.randn(7)
    for act in ("none", "relu", "sigmoid"):
        ra = RegionAttention(36, 7, hidden=16, activation=act)
        cond_r, att = ra(feats, cond)
        assert att.shape == cond_r.shape == (10, 7)
        torch.testing.assert_close(cond_r, att * cond)
        raw = ra.mlp(feats)
        expected = {"none": raw, "relu": raw.clamp_min(0), "sigmoid": torch.sigmoid(raw)}[act]
        torch.testing.assert_close(att, expected)
    with pytest.raises(ValueError, match="activation"):
        RegionAttention(36, 7, activation="softplus")
    with pytest.raises(ValueError, match="condition"):
        RegionAttention(36, 7)(feats, torch.randn(2, 7))


def test_mlp_is_bias_free_relu_stack():
    mlp = MLP(5, 3, 8, 3)
    assert [tuple(layer.weight.shape) for layer in mlp.layers] == [(8, 5), (8, 8), (3, 8)]
    assert all(layer.bias is None for layer in mlp.layers)
    x = torch.randn(4, 5)
    h = torch.relu(x @ mlp.layers[0].weight.T)
    h = torch.relu(h @ mlp.layers[1].weight.T)
    torch.testing.assert_close(mlp(x), h @ mlp.layers[2].weight.T)


def test_region_attention_bias_starts_the_map_at_its_value_and_is_learnable():
    torch.manual_seed(3)
    feats = 1e-4 * torch.randn(50, 24)  # untrained hash features are tiny
    plain = RegionAttention(24, 2, hidden=16, activation="relu")
    assert plain.bias is None and "bias" not in plain.state_dict()
    biased = RegionAttention(24, 2, hidden=16, activation="relu", init_bias=1.0)
    torch.testing.assert_close(biased.attention_map(feats), torch.ones(50, 2), atol=1e-3, rtol=0)
    torch.testing.assert_close(biased.attention_map(feats), (biased.mlp(feats) + 1.0).clamp_min(0))
    biased(feats, torch.tensor([0.5, -0.5]))[0].sum().backward()
    assert biased.bias.grad is not None and biased.bias.grad.abs().sum() > 0


def test_region_attention_loads_a_checkpoint_saved_without_the_bias():
    torch.manual_seed(4)
    feats = torch.randn(20, 24)
    old = RegionAttention(24, 2, hidden=16, activation="relu")
    new = RegionAttention(24, 2, hidden=16, activation="relu", init_bias=1.0)
    new.load_state_dict(old.state_dict())
    assert float(new.bias.detach().abs().sum()) == 0.0
    torch.testing.assert_close(new.attention_map(feats), old.attention_map(feats))

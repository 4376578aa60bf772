"""StyleGAN2 synthesis, its rosinality-layout checkpoints, W+ inversion and EmoStyle's EmoExtract
(the pretrained parts of g_LEF, Eq. 6), at tiny sizes on the CPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from etlib.emoface.emostyle import EmoExtract, load_emoextract, save_emoextract
from etlib.emoface.stylegan2 import (
    Generator,
    ModulatedConv2d,
    Upsample,
    invert,
    load_ffhq_generator,
    load_generator,
    make_kernel,
    num_ws_for,
    save_generator,
    to_unit,
    upfirdn2d,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: thread start-up costs more than it saves, and the CI cores are shared.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_generator(size: int = 32, width: int = 16, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    g = Generator(size, style_dim=width, n_mlp=2, max_channels=width)
    g.mean_latent(256, generator=torch.Generator().manual_seed(seed))
    return g


# ----------------------------------------------------------------------------------------------
# Primitives
# ----------------------------------------------------------------------------------------------


def test_upfirdn2d_zero_insertion_and_fir():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    one = torch.ones(1, 1)
    up = upfirdn2d(x, one, up=2)
    assert up.shape == (1, 1, 8, 8)
    assert torch.equal(up[..., ::2, ::2], x) and up[..., 1::2, :].abs().sum() == 0
    assert torch.equal(upfirdn2d(up, one, down=2), x)
    # A normalised FIR keeps a constant image constant away from the border.
    blurred = upfirdn2d(torch.ones(1, 2, 8, 8), make_kernel([1, 3, 3, 1]), pad=(2, 1))
    assert blurred.shape == (1, 2, 8, 8)
    assert torch.allclose(blurred[..., 2:-2, 2:-2], torch.ones(1, 2, 4, 4))
    # Negative padding crops.
    assert upfirdn2d(x, one, pad=(-1, -1)).shape == (1, 1, 2, 2)


def test_upsample_doubles_and_preserves_constants():
    out = Upsample([1, 3, 3, 1])(torch.ones(1, 3, 4, 4))
    assert out.shape == (1, 3, 8, 8)
    assert torch.allclose(out[..., 1:-1, 1:-1], torch.ones(1, 3, 6, 6))


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_matches_the_per_sample_definition(upsample):
    """StyleGAN2 Eqs. 1-3: w' = s_i w, w'' = w' / sqrt(sum w'^2 + eps), convolved per sample."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 5, 3, style_dim=6, upsample=upsample)
    x, style = torch.randn(3, 4, 5, 5), torch.randn(3, 6)
    out = conv(x, style)
    s = conv.modulation(style)
    for b in range(3):
        w = conv.scale * conv.weight[0] * s[b].view(1, 4, 1, 1)
        w = w / torch.sqrt(w.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        if upsample:
            ref = conv.blur(F.conv_transpose2d(x[b : b + 1], w.transpose(0, 1), stride=2))
        else:
            ref = F.conv2d(x[b : b + 1], w, padding=1)
        assert torch.allclose(out[b : b + 1], ref, atol=1e-5)
    assert out.shape == (3, 5, 10 if upsample else 5, 10 if upsample else 5)


def test_demodulation_makes_the_conv_invariant_to_style_scale():
    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 5, 3, style_dim=6)
    x, style = torch.randn(2, 4, 6, 6), torch.randn(2, 6)
    before = conv(x, style)
    with torch.no_grad():  # s -> 3 s
        conv.modulation.weight.mul_(3)
        conv.modulation.bias.mul_(3)
    assert torch.allclose(conv(x, style), before, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 64])
def test_generator_shapes_and_w_plus_depth(size):
    g = tiny_generator(size, width=8)
    assert g.num_ws == num_ws_for(size) == 2 * int(math.log2(size)) - 2
    ws = g.sample(2)
    assert ws.shape == (2, g.num_ws, 8)
    image = g(ws)
    assert image.shape == (2, 3, size, size) and torch.isfinite(image).all()


def test_generator_is_deterministic_and_every_w_plus_row_matters():
    g = tiny_generator()
    ws = g.sample(1, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = g(ws)
        assert torch.equal(g(ws), base)  # stored noise
        for row in range(g.num_ws):
            edited = ws.clone()
            edited[:, row] += 1.0
            assert (g(edited) - base).abs().max() > 1e-4, f"W+ row {row} has no effect"


def test_noise_enters_with_its_learned_strength():
    """Per-pixel noise is added as ``weight * noise`` (rosinality's NoiseInjection): a zero weight (the start of
    training) ignores it, a non-zero one makes fresh noise change the image and the stored noise reproduce it."""
    from etlib.emoface.stylegan2 import NoiseInjection

    g = tiny_generator()
    ws = g.sample(1, generator=torch.Generator().manual_seed(1))
    injections = [m for m in g.modules() if isinstance(m, NoiseInjection)]
    assert len(injections) == g.num_layers
    with torch.no_grad():
        base = g(ws)
        assert torch.equal(g(ws, randomize_noise=True), base)  # every weight starts at zero
        for m in injections:
            m.weight.fill_(0.5)
        stored = g(ws)
        assert torch.equal(g(ws), stored) and torch.equal(g(ws, noise=g.fixed_noise()), stored)
        assert (stored - base).abs().max() > 1e-3  # the stored noise is now in the image
        fresh = g(ws, randomize_noise=True)
        assert (fresh - stored).abs().max() > 1e-3
        x, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 1, 4, 4)
        torch.testing.assert_close(injections[0](x, noise), x + 0.5 * noise)


def test_generator_rejects_bad_w_plus_and_sizes():
    g = tiny_generator()
    with pytest.raises(ValueError, match="W\\+ must be"):
        g(torch.zeros(1, g.num_ws + 1, g.style_dim))
    with pytest.raises(ValueError, match="power of two"):
        Generator(48, style_dim=8, n_mlp=1, max_channels=8)


def test_paper_sized_generator_follows_rosinalitys_layout():
    g = Generator(1024)  # 30 M parameters, built in well under a second
    state = g.state_dict()
    assert g.num_ws == 18 and g.num_layers == 17
    assert sum(k.startswith("style.") and k.endswith(".weight") for k in state) == 8
    expected_shapes = {
        "style.1.weight": (512, 512),
        "input.input": (1, 512, 4, 4),
        "conv1.conv.weight": (1, 512, 512, 3, 3),
        "conv1.conv.modulation.weight": (512, 512),
        "conv1.noise.weight": (1,),
        "conv1.activate.bias": (512,),
        "to_rgb1.conv.weight": (1, 3, 512, 1, 1),
        "to_rgb1.bias": (1, 3, 1, 1),
        "convs.0.conv.blur.kernel": (4, 4),
        "convs.6.conv.weight": (1, 512, 512, 3, 3),  # 64px: 256 * channel_multiplier 2
        "convs.8.conv.weight": (1, 256, 512, 3, 3),  # 128px
        "convs.10.conv.weight": (1, 128, 256, 3, 3),  # 256px
        "convs.14.conv.weight": (1, 32, 64, 3, 3),  # 1024px
        "convs.15.conv.weight": (1, 32, 32, 3, 3),
        "to_rgbs.7.conv.weight": (1, 3, 32, 1, 1),
        "to_rgbs.7.upsample.kernel": (4, 4),
        "noises.noise_0": (1, 1, 4, 4),
        "noises.noise_16": (1, 1, 1024, 1024),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert "latent_avg" not in state  # kept beside the state_dict, as convert_weight.py does
    assert not any(".blur." in k for k in state if k.startswith("convs.1."))


def test_mapping_is_frozen_apart_from_synthesis():
    g = tiny_generator()
    mapping = {id(p) for p in g.mapping_parameters()}
    synthesis = {id(p) for p in g.synthesis_parameters()}
    assert mapping and synthesis and not (mapping & synthesis)
    assert len(mapping) + len(synthesis) == len(list(g.parameters()))


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def test_checkpoint_round_trip_in_convert_weight_layout(tmp_path):
    g = tiny_generator()
    ws = g.sample(2)
    # What rosinality's convert_weight.py writes: {"g_ema": state_dict, "latent_avg": w_avg}.
    torch.save({"g_ema": g.state_dict(), "latent_avg": g.latent_avg.clone()}, tmp_path / "g.pt")
    loaded = load_generator(tmp_path / "g.pt", size=32)
    assert loaded.channels == g.channels and loaded.n_mlp == 2 and loaded.style_dim == 16
    assert torch.equal(loaded.latent_avg, g.latent_avg)
    with torch.no_grad():
        assert torch.allclose(loaded(ws), g(ws))
    # save_generator writes the same layout; a bare state_dict also loads.
    save_generator(g, tmp_path / "g2.pt")
    assert set(torch.load(tmp_path / "g2.pt", weights_only=True)) == {"g_ema", "latent_avg"}
    torch.save(g.state_dict(), tmp_path / "bare.pt")
    bare = load_generator(tmp_path / "bare.pt")
    with torch.no_grad():
        assert torch.allclose(bare(ws), g(ws))


def test_checkpoint_errors_are_clear(tmp_path, weights_cache):
    g = tiny_generator()
    with pytest.raises(FileNotFoundError, match="convert_weight.py"):
        load_generator(tmp_path / "absent.pt")
    (tmp_path / "net.pkl").write_bytes(b"not really")
    with pytest.raises(ValueError, match="NVIDIA's pickle"):
        load_generator(tmp_path / "net.pkl")
    state = g.state_dict()
    renamed = {k.replace("conv1.conv.", "conv1.c."): v for k, v in state.items()}
    torch.save({"g_ema": renamed}, tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match="conv1.conv"):
        load_generator(tmp_path / "renamed.pt")
    extra = dict(state, **{"convs.0.extra": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="unexpected"):
        load_generator(tmp_path / "extra.pt")
    bad = dict(state)
    bad["convs.1.activate.bias"] = torch.zeros(3)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="shapes differ"):
        load_generator(tmp_path / "bad.pt")
    save_generator(g, tmp_path / "ok.pt")
    with pytest.raises(ValueError, match="32px generator, not the 1024px"):
        load_generator(tmp_path / "ok.pt", size=1024)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a state_dict"):
        load_generator(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="stylegan2_ffhq"):
        load_ffhq_generator()


# ----------------------------------------------------------------------------------------------
# Inversion
# ----------------------------------------------------------------------------------------------


def test_inversion_reconstructs_a_generated_image():
    g = tiny_generator()
    target_ws = g.sample(2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        target = to_unit(g(target_ws)).clamp(0, 1)
        start_error = F.mse_loss(to_unit(g(g.w_plus(g.latent_avg[None].expand(2, -1)))), target)
    params_before = [p.detach().clone() for p in g.parameters()]
    ws = invert(g, target, steps=40, lr=0.05, progress=False)
    assert ws.shape == target_ws.shape and not ws.requires_grad
    with torch.no_grad():
        error = F.mse_loss(to_unit(g(ws)), target)
    assert error < 0.25 * start_error
    assert all(torch.equal(a, b) for a, b in zip(params_before, g.parameters()))  # generator untouched
    assert all(p.requires_grad for p in g.parameters())


def test_inversion_starts_from_the_encoder_and_uses_a_perceptual_loss():
    g = tiny_generator()
    true_ws = g.sample(1, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        target = to_unit(g(true_ws))
    assert torch.equal(invert(g, target, steps=0, encoder=lambda img: true_ws, progress=False), true_ws)
    calls = []

    def perceptual(a, b):
        calls.append(a.shape)
        return (a - b).abs().mean()

    invert(g, target, steps=2, perceptual=perceptual, progress=False)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="encoder returned"):
        invert(g, target, steps=1, encoder=lambda img: true_ws[:, :3], progress=False)
    with pytest.raises(ValueError, match="invert needs images"):
        invert(g, target[..., :16, :16], steps=1, progress=False)


# ----------------------------------------------------------------------------------------------
# EmoStyle's EmoExtract (Sec. S2.1)
# ----------------------------------------------------------------------------------------------


def test_emoextract_shapes_and_w_prime():
    torch.manual_seed(0)
    m = EmoExtract(num_ws=8, latent_dim=16, emotion_dim=8, hidden=(32,))
    w, e = torch.randn(3, 8, 16), torch.rand(3, 2) * 2 - 1
    assert m.emotion_features(e).shape == (3, 8)
    d = m(w, e)
    assert d.shape == w.shape
    assert torch.allclose(m.edit(w, e), w + d)
    # Per-layer MLPs: rows of d differ even when every row of W is the same.
    d_same = m(w[:, :1].expand(-1, 8, -1), e)
    assert (d_same[:, 0] - d_same[:, 1]).abs().max() > 1e-4
    # The emotion changes d.
    assert (m(w, -e) - d).abs().max() > 1e-4
    with pytest.raises(ValueError, match="valence/arousal"):
        m(w, torch.zeros(3, 3))


def test_emoextract_checkpoint_uses_emostyles_keys(tmp_path, weights_cache):
    torch.manual_seed(0)
    for per_layer in (True, False):
        m = EmoExtract(num_ws=8, latent_dim=16, emotion_dim=8, hidden=(32, 24), per_layer=per_layer)
        state = m.state_dict()
        assert {"emotion_enc.0.weight", "emotion_enc.2.weight"} <= set(state)
        assert state["emotion_enc.0.weight"].shape == (32, 2)  # e: 2 -> 32 -> emotion_dim
        last = "latent_net.7.4.weight" if per_layer else "latent_net.4.weight"
        assert state[last].shape == (16, 24)
        # EmoStyle's checkpoint layout: {"emo_mapping_state_dict": state_dict}.
        torch.save({"emo_mapping_state_dict": state}, tmp_path / "emo.pt")
        loaded = load_emoextract(tmp_path / "emo.pt", num_ws=8)
        assert loaded.per_layer == per_layer and loaded.hidden == (32, 24)
        w, e = torch.randn(2, 8, 16), torch.rand(2, 2)
        assert torch.allclose(loaded(w, e), m(w, e))
    save_emoextract(m, tmp_path / "saved.pt")
    assert set(torch.load(tmp_path / "saved.pt", weights_only=True)) == {"emo_mapping_state_dict"}
    per_layer = EmoExtract(num_ws=8, latent_dim=16, emotion_dim=8, hidden=(32,))
    save_emoextract(per_layer, tmp_path / "p.pt")
    with pytest.raises(ValueError, match="8 per-layer MLPs but the generator's W\\+ has 18"):
        load_emoextract(tmp_path / "p.pt", num_ws=18)
    torch.save({"emo_mapping_state_dict": {"foo": torch.zeros(1)}}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="not an EmoStyle EmoExtract checkpoint"):
        load_emoextract(tmp_path / "wrong.pt")
    with pytest.raises(FileNotFoundError):
        load_emoextract(tmp_path / "absent.pt")
    from etlib.weights import WeightsMissingError

    with pytest.raises(WeightsMissingError, match="emostyle"):
        load_emoextract()

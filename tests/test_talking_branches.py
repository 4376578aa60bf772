"""f_M, f_F, f_E (Eqs. 3-5): inputs, near-zero start, gradient flow, the combined-face ablation."""

from __future__ import annotations

import pytest
import torch

from etlib.config import PRESETS
from etlib.talking.branches import EmotionBranch, FaceBranch, MouthBranch

HASH = PRESETS["smoke"].hash_grid  # 4 levels, 1 feature, 2^12 entries
AUDIO_C, AUDIO_W, FRAMES, AU = 29, 16, 8, 7


def inputs(n: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = (torch.rand(n, 3, generator=g) - 0.5) * 0.25
    audio = torch.randn(FRAMES, AUDIO_C, AUDIO_W, generator=g)
    au = torch.rand(AU, generator=g)
    va = torch.tensor([0.74, 0.31])
    return mu, audio, au, va


def branches(with_emotion: bool = False):
    torch.manual_seed(0)
    kw = dict(hash_grid=HASH, backend="torch")
    mouth = MouthBranch(AUDIO_C, AUDIO_W, FRAMES, **kw)
    face = FaceBranch(AUDIO_C, AU, AUDIO_W, FRAMES, with_emotion=with_emotion, **kw)
    emotion = EmotionBranch(**kw)
    return mouth, face, emotion


def test_shapes_and_near_zero_start():
    mu, audio, au, va = inputs()
    mouth, face, emotion = branches()
    dm = mouth(mu, audio)
    assert dm.d_xyz.shape == (300, 3) and dm.d_scale is None and dm.d_rotation is None
    du = face(mu, audio, au)
    de = emotion(mu, du.d_xyz, va)
    for d in (du, de):
        assert d.d_xyz.shape == d.d_scale.shape == (300, 3) and d.d_rotation.shape == (300, 4)
    assert set(du.attention) == {"audio", "au"} and du.attention["au"].shape == (300, AU)
    assert set(de.attention) == {"emotion"} and de.attention["emotion"].shape == (300, 2)
    for d in (dm, du, de):
        assert d.d_xyz.abs().max() < 1e-5
        for t in (d.d_scale, d.d_rotation):  # f_E's e_r starts at ~3e (A_e's bias), hence 3e-3 not 1e-3
            assert t is None or t.abs().max() < 3e-3


def test_gradients_reach_hash_grids_attention_and_mlps():
    mu, audio, au, va = inputs()
    mouth, face, emotion = branches()
    du = face(mu, audio, au)
    de = emotion(mu, du.d_xyz, va)
    dm = mouth(mu, audio)
    loss = sum(t.sum() for d in (dm, du, de) for t in (d.d_xyz, d.d_scale, d.d_rotation) if t is not None)
    loss.backward()
    for branch in (mouth, face, emotion):
        for name, p in branch.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{type(branch).__name__}.{name}"


def test_combined_face_ablation_adds_valence_arousal_inputs():
    mu, audio, au, va = inputs(50)
    _, face, _ = branches()
    _, combined, _ = branches(with_emotion=True)
    assert combined.in_dim == face.in_dim + 2
    assert combined.net.layers[0].weight.shape[1] == face.net.layers[0].weight.shape[1] + 2
    out = combined(mu, audio, au, va)
    assert set(out.attention) == {"audio", "au", "emotion"}
    with pytest.raises(ValueError, match="valence/arousal"):
        combined(mu, audio, au)
    with pytest.raises(ValueError, match="emotion branch"):
        face(mu, audio, au, va)


def test_conditions_change_the_offsets():
    mu, audio, au, va = inputs(100)
    mouth, face, emotion = branches(with_emotion=True)
    for branch in (mouth, face, emotion):
        torch.nn.init.normal_(branch.net.output_layer.weight, std=0.1)
    _, audio2, au2, _ = inputs(100, seed=1)
    va2 = torch.tensor([-0.74, -0.31])
    for grid in [g for b in (mouth, face, emotion) for g in b.encoder.planes.values()]:
        torch.nn.init.uniform_(grid.params, -1.0, 1.0)  # trained-size hash features

    def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool((a - b).abs().max() > 1e-3 * a.abs().max())

    assert differs(mouth(mu, audio).d_xyz, mouth(mu, audio2).d_xyz)
    base = face(mu, audio, au, va).d_xyz
    for other in (face(mu, audio2, au, va), face(mu, audio, au2, va), face(mu, audio, au, va2)):
        assert differs(base, other.d_xyz)
    zero = torch.zeros_like(mu)
    assert differs(emotion(mu, zero, va).d_xyz, emotion(mu, zero, va2).d_xyz)


def test_emotion_branch_encodes_the_face_deformed_position():
    mu, _, _, va = inputs(80)
    _, _, emotion = branches()
    torch.nn.init.normal_(emotion.net.output_layer.weight, std=0.1)
    shift = torch.full_like(mu, 0.01)
    a = emotion(mu, shift, va)
    b = emotion(mu + shift, torch.zeros_like(mu), va)
    torch.testing.assert_close(a.d_xyz, b.d_xyz)
    torch.testing.assert_close(a.attention["emotion"], b.attention["emotion"])
    with pytest.raises(ValueError, match="d_xyz_face"):
        emotion(mu, shift[:10], va)


@pytest.fixture
def one_thread():
    """Tiny ops run fastest on one thread (two threads spin against each other on a busy 2-core CI)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_mouth_branch_learns_a_position_dependent_offset(one_thread):
    """A few Adam steps fit an opening that varies along x: hash grids and MLP train together."""
    mu, audio, _, _ = inputs(100)
    mouth, _, _ = branches()
    target = torch.stack([0 * mu[:, 0], 1e-3 + 1e-3 * torch.sin(30 * mu[:, 0]), 0 * mu[:, 0]], dim=-1)
    opt = torch.optim.Adam(mouth.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = ((mouth(mu, audio).d_xyz - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_bad_inputs_raise_clear_errors():
    mu, audio, au, va = inputs(10)
    mouth, face, emotion = branches()
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        mouth(mu[:, :2], audio)
    with pytest.raises(ValueError, match="audio window"):
        mouth(mu, audio[:4])
    with pytest.raises(ValueError, match="condition"):
        face(mu, audio, au[:3])


def _fit_emotion_offsets(emotion: EmotionBranch, mu: torch.Tensor, steps: int) -> float:
    """Adam on a toy target whose offset follows valence (x) and arousal (y); returns how much of the target's
    difference between two emotions the branch reproduces (1 = all of it)."""
    zero = torch.zeros_like(mu)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(emotion.parameters(), lr=5e-3)

    def target(va: torch.Tensor) -> torch.Tensor:
        return 2e-4 * torch.cat([va, torch.zeros(1)]).expand_as(mu)

    for _ in range(steps):
        va = torch.rand(2, generator=g) * 2 - 1
        loss = ((emotion(mu, zero, va).d_xyz - target(va)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    a, b = torch.tensor([0.8, 0.5]), torch.tensor([-0.6, -0.6])
    with torch.no_grad():
        got = emotion(mu, zero, a).d_xyz - emotion(mu, zero, b).d_xyz
    want = target(a) - target(b)
    return float((got * want).sum() / (want * want).sum())


@pytest.mark.slow
def test_emotion_branch_learns_offsets_that_follow_valence_arousal(one_thread):
    """A_e starts at its bias (Eq. 5's e_r ∝ e), so a few dozen steps learn an offset driven by e itself;
    the bias-free map (A_e ≈ 0) barely does."""
    mu, _, _, _ = inputs(100)
    torch.manual_seed(0)
    emotion = EmotionBranch(hash_grid=HASH, backend="torch")
    with torch.no_grad():
        att = emotion(mu, torch.zeros_like(mu), torch.tensor([0.3, 0.3])).attention["emotion"]
    assert float(att.mean()) > 0.5 and float((att > 0).float().mean()) > 0.9
    assert _fit_emotion_offsets(emotion, mu, 60) > 0.5
    torch.manual_seed(0)
    bias_free = EmotionBranch(hash_grid=HASH, backend="torch", attention_init_bias=None)
    assert _fit_emotion_offsets(bias_free, mu, 60) < 0.25

"""The whole model (Fig. 3): the valence/arousal-only re-render equals a full render (Eqs. 3-5, S9-S10)."""

from __future__ import annotations

import pytest
import torch

from etlib.config import HashGridSettings
from etlib.gaussians import Camera
from etlib.gaussians.model import GaussianSet
from etlib.talking.model import Ablation, EmoTalkingGaussian, FrameCondition

SIZE = 48


def _gaussians(n: int, seed: int, depth: float) -> GaussianSet:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.05, 0.06, 0.02]) + torch.tensor([0.0, 0.0, depth])
    return GaussianSet(
        means,
        torch.full((n, 3), -4.0) + 0.3 * torch.randn(n, 3, generator=g),
        torch.randn(n, 4, generator=g),
        torch.randn(n, generator=g),
        torch.rand(n, 1, 3, generator=g),
    )


def _model(ablation: Ablation | None = None) -> EmoTalkingGaussian:
    torch.manual_seed(0)
    model = EmoTalkingGaussian(
        _gaussians(60, 1, 0.02),
        _gaussians(300, 2, 0.0),
        audio_in_dim=8,
        audio_window=4,
        audio_frames=4,
        au_dim=7,
        hash_grid=HashGridSettings(n_levels=4, log2_hashmap_size=10, init_scale=0.5),
        ablation=ablation,
        backend="torch",
    )
    with torch.no_grad():  # output layers start at zero (Sec. S1): give every network a real response
        for p in model.network_parameters().values():
            for t in p["hash"] + p["other"]:
                t.add_(0.2 * torch.randn_like(t))
    return model.eval()


def _inputs(va=(0.0, 0.0)):
    camera = Camera.look_at((0.0, 0.0, -0.5), width=SIZE, height=SIZE, fov_y_deg=25)
    cond = FrameCondition(torch.randn(4, 8, 4), torch.rand(7), torch.tensor(va, dtype=torch.float32))
    return camera, cond, torch.rand(SIZE, SIZE, 3)


@pytest.mark.parametrize("va", [(0.74, 0.31), (-0.8, -0.5)])
def test_prepared_frame_renders_equal_full_renders(va):
    model = _model()
    camera, cond, background = _inputs()
    with torch.no_grad():
        prepared = model.prepare_frame(camera, cond, background)  # at e = (0, 0): e must not be baked in
        cond.va = torch.tensor(va)
        full = model(camera, cond, background)
        fast = model.render_prepared(prepared, cond.va)
        neutral = model.render_prepared(prepared, torch.zeros(2))
    torch.testing.assert_close(fast.image, full.image, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast.face.alpha, full.face.alpha, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast.mouth_background, full.mouth_background)
    assert (fast.image - neutral.image).abs().max() > 1e-3  # the emotion does reach the fast path


def test_prepared_frame_without_the_emotion_branch_and_the_combined_ablation():
    model = _model(Ablation.from_name("no_emotion_branch"))
    camera, cond, background = _inputs((0.5, 0.5))
    with torch.no_grad():
        fast = model.render_prepared(model.prepare_frame(camera, cond, background), cond.va)
        torch.testing.assert_close(fast.image, model(camera, cond, background).image, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="combined-face-branch"):
        _model(Ablation.from_name("combined_face_branch")).prepare_frame(camera, cond, background)


def test_an_anchored_emotion_branch_moves_nothing_at_the_origin():
    """V/A relative to the resting face: at e = (0, 0) the anchored f_E adds exactly nothing to f_F's face, and
    still follows e elsewhere; the plain Eq. 5 branch (the paper's absolute labels) does move the face at (0, 0)."""
    camera, cond, background = _inputs()
    plain = _model()
    anchored = _model()
    anchored.set_emotion_anchored(True)
    assert anchored.config["emotion_anchored"] and not plain.config["emotion_anchored"]
    with torch.no_grad():
        without = anchored(camera, cond, background, emotion=False).image
        at_origin = anchored(camera, cond, background).image
        torch.testing.assert_close(at_origin, without, atol=0, rtol=0)
        assert (plain(camera, cond, background).image - without).abs().max() > 1e-3
        cond.va = torch.tensor([0.74, 0.31])
        assert (anchored(camera, cond, background).image - without).abs().max() > 1e-3
        prepared = anchored.prepare_frame(camera, cond, background)
        torch.testing.assert_close(anchored.render_prepared(prepared, cond.va).image,
                                   anchored(camera, cond, background).image, atol=1e-6, rtol=0)  # fmt: skip


def test_a_checkpoint_keeps_the_anchor():
    from etlib.config import get_preset
    from etlib.train.trainer import build_model, model_state

    model = _model()
    model.set_emotion_anchored(True)
    preset = get_preset("smoke").with_overrides(hash_grid=HashGridSettings(n_levels=4, log2_hashmap_size=10,
                                                                           init_scale=0.5))  # fmt: skip
    rebuilt = build_model(model_state(model), preset, backend="torch")
    assert rebuilt.f_E.anchored and rebuilt.config["emotion_anchored"]
    state = model_state(model)
    state["config"] = {k: v for k, v in state["config"].items() if k != "emotion_anchored"}  # an older checkpoint
    assert not build_model(state, preset, backend="torch").f_E.anchored


def test_a_run_with_relative_labels_trains_an_anchored_branch(trained_smoke_run):
    """The offline generator's targets make the run's V/A relative to the resting face (``va_origin``): its f_E is
    anchored at (0, 0), and the checkpoint says so."""
    import json

    from etlib.train.trainer import load_model

    state = json.loads((trained_smoke_run / "state.json").read_text())
    assert state["va_origin"] is not None
    model = load_model(trained_smoke_run, device="cpu")
    assert model.f_E.anchored and model.config["emotion_anchored"]

"""EmoNet [61]: the published checkpoint layout, the loader's errors, and the judge built on it.

The real ``emonet_8.pth`` (non-commercial) is never needed: checkpoints here are written from our own
module with random values in the published key layout.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from etlib.emoface.emonet import EMONET_CLASSES_8, EmoNet, load_emonet, load_emonet_state
from etlib.emoface.judge import EmoNetJudge, get_judge


def _randomized(model: EmoNet, seed: int = 0) -> EmoNet:
    """Random weights and running statistics, so a load that skipped anything would show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(0.05 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith("weight") and tensor.ndim == 1:  # batch-norm scales
                tensor.copy_(0.5 + 0.5 * torch.rand(tensor.shape, generator=generator))
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in**0.5)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random emonet_8.pth saved as the published one was: DataParallel's ``module.`` prefix, and
    (as in checkpoints from older PyTorch) no ``num_batches_tracked`` counters."""
    model = _randomized(EmoNet(n_expression=8))
    state = {f"module.{k}": v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("emonet") / "emonet_8.pth"
    torch.save(state, path)
    return path, model


def test_state_dict_layout_is_the_published_one():
    """Key names and shapes follow face-analysis/emonet's EmoNet(n_expression=8); the counts were checked
    against that implementation's state_dict (682 entries, 13,995,393 numbers)."""
    state = EmoNet(n_expression=8).state_dict()
    assert len(state) == 682
    assert sum(v.numel() for v in state.values()) == 13_995_393
    expected_shapes = {
        "conv1.weight": (64, 3, 7, 7),
        "conv2.downsample.2.weight": (128, 64, 1, 1),
        "conv4.bn3.running_var": (64,),
        "m0.b1_4.conv1.weight": (128, 256, 3, 3),
        "m1.b2_plus_1.conv3.weight": (64, 64, 3, 3),
        "m1.b3_1.bn1.weight": (256,),
        "top_m_1.conv2.weight": (64, 128, 3, 3),
        "l0.weight": (68, 256, 1, 1),
        "bl0.weight": (256, 256, 1, 1),
        "al0.weight": (256, 68, 1, 1),
        "bn_end1.running_mean": (256,),
        "conv1x1_input_emo_2.weight": (256, 768, 1, 1),
        "emo_net_2.6.conv3.weight": (64, 64, 3, 3),
        "emo_fc_2.0.weight": (128, 256),
        "emo_fc_2.1.running_var": (128,),
        "emo_fc_2.3.weight": (10, 128),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    # Only the last stack is followed by the heatmap re-embedding the next stack would need.
    assert "bl1.weight" not in state and "al1.weight" not in state
    assert not any(k.startswith("emo_net_2.1.") for k in state)  # max-pools carry no weights


def test_load_random_checkpoint_roundtrip(checkpoint):
    path, source = checkpoint
    loaded = load_emonet(path)
    assert not loaded.training and all(not p.requires_grad for p in loaded.parameters())
    loaded_state = loaded.state_dict()
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded_state[key], value), key


def test_wrong_or_truncated_checkpoints_fail_clearly(checkpoint, tmp_path):
    path, source = checkpoint
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_emonet(truncated)

    with pytest.raises(FileNotFoundError):
        load_emonet(tmp_path / "absent.pth")

    partial = {k: v for k, v in source.state_dict().items() if not k.startswith("m1.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing"):
        load_emonet(tmp_path / "partial.pth")

    # An 8-class checkpoint is not a 5-class EmoNet.
    with pytest.raises(ValueError, match="shapes differ"):
        load_emonet(path, n_expression=5)

    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="state_dict"):
        load_emonet(tmp_path / "list.pth")

    extra = dict(source.state_dict(), **{"temporal_weights": torch.ones(5)})
    with pytest.warns(UserWarning, match="unexpected"):
        load_emonet_state(EmoNet(), extra)


def test_forward_rejects_wrong_input_size():
    with pytest.raises(ValueError, match="256"):
        EmoNet()(torch.zeros(1, 3, 128, 128))


@pytest.mark.slow
def test_emonet_judge_via_get_judge_outputs_and_gradient(checkpoint, weights_cache):
    path, _ = checkpoint
    shutil.copy(path, weights_cache / "emonet_8.pth")
    from etlib import weights

    weights.accept("emonet_8")  # no published digest: placed by hand, then accepted
    judge = get_judge("auto")
    assert isinstance(judge, EmoNetJudge) and "emonet" in judge.name
    assert judge.class_names == EMONET_CLASSES_8

    torch.manual_seed(0)
    images = torch.rand(1, 3, 128, 128, requires_grad=True)  # resized to 256 inside
    out = judge(images)
    assert out.valence.shape == out.arousal.shape == (1,) and out.probs.shape == (1, 8)
    assert torch.isfinite(out.va).all()
    assert torch.allclose(out.probs.sum(dim=1), torch.ones(1)) and (out.probs >= 0).all()

    judge.emotion_loss(images, torch.tensor([[0.74, 0.31]])).backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0

"""syncnet_python's SyncNet v2 (the paper's Sync-E/Sync-C evaluator): layout, loading, scoring path."""

import numpy as np
import pytest
import torch

from etlib.audio.sync_metrics import sync_scores_v2
from etlib.audio.syncnet_v2 import SyncNetV2, load_syncnet_v2, load_syncnet_v2_file
from etlib.weights import WeightsMissingError

# syncnet_python SyncNetModel.py S, written out from its description: Sequential index -> weight shape.
CONV_AUD = {0: (64, 1, 3, 3), 4: (192, 64, 3, 3), 8: (384, 192, 3, 3), 11: (256, 384, 3, 3), 14: (256, 256, 3, 3),
            18: (512, 256, 5, 4)}  # fmt: skip
CONV_LIP = {0: (96, 3, 5, 7, 7), 4: (256, 96, 1, 5, 5), 8: (256, 256, 1, 3, 3), 11: (256, 256, 1, 3, 3),
            14: (256, 256, 1, 3, 3), 18: (512, 256, 1, 6, 6)}  # fmt: skip


def syncnet_python_layout() -> dict[str, tuple[int, ...]]:
    layout = {}
    for seq, convs in (("netcnnaud", CONV_AUD), ("netcnnlip", CONV_LIP)):
        for i, shape in convs.items():
            layout[f"{seq}.{i}.weight"], layout[f"{seq}.{i}.bias"] = shape, shape[:1]
            for name in ("weight", "bias", "running_mean", "running_var"):
                layout[f"{seq}.{i + 1}.{name}"] = shape[:1]
            layout[f"{seq}.{i + 1}.num_batches_tracked"] = ()
    for seq in ("netfcaud", "netfclip"):
        layout[f"{seq}.0.weight"], layout[f"{seq}.0.bias"] = (512, 512), (512,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{seq}.1.{name}"] = (512,)
        layout[f"{seq}.1.num_batches_tracked"] = ()
        layout[f"{seq}.3.weight"], layout[f"{seq}.3.bias"] = (1024, 512), (1024,)
    return layout


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SyncNetV2().eval()


def test_state_dict_matches_syncnet_python(model):
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == syncnet_python_layout()


def test_embeddings_have_syncnet_python_shapes(model):
    with torch.no_grad():
        audio = model.embed_audio(torch.randn(2, 1, 13, 20))
        face = model.embed_faces(torch.rand(1, 3, 5, 224, 224) * 255)
    assert audio.shape == (2, 1024) and face.shape == (1, 1024)
    with pytest.raises(ValueError, match="MFCC"):
        model.embed_audio(torch.randn(1, 1, 13, 16))
    with pytest.raises(ValueError, match="224"):
        model.embed_faces(torch.rand(1, 3, 5, 96, 96))


def test_loads_from_the_weights_cache(weights_cache, model, monkeypatch):
    import dataclasses

    from etlib import weights

    with pytest.raises(WeightsMissingError, match="syncnet_v2"):
        load_syncnet_v2()
    # As released (2017): no BatchNorm num_batches_tracked entries.
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, weights_cache / "syncnet_v2.model")
    with pytest.raises(weights.WeightsChecksumError, match="bytes|sha256"):  # not the published file
        load_syncnet_v2()
    entry = dataclasses.replace(
        weights.REGISTRY["syncnet_v2"], sha256=weights.sha256_of(weights_cache / "syncnet_v2.model"), size=None
    )
    monkeypatch.setitem(weights.REGISTRY, "syncnet_v2", entry)  # this test's file stands for the published one
    loaded = load_syncnet_v2()
    assert loaded.name == "syncnet_v2" and not loaded.training
    for k, v in state.items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    torch.save({"netcnnaud.0.weight": state["netcnnaud.0.weight"]}, weights_cache / "partial.model")
    with pytest.raises(ValueError, match="missing"):
        load_syncnet_v2_file(weights_cache / "partial.model")


def test_scores_use_syncnet_python_windows(model):
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(9, 224, 224, 3), dtype=np.uint8)
    wave = (rng.standard_normal(8 * 640 + 100) * 1000).astype(np.int16)  # 8 frames of audio
    scores = sync_scores_v2(faces, wave, model, vshift=4)
    # min_length = min(9 frames, 8 audio frames) = 8; windows 0 .. 8 - 5 - 1
    assert scores.n_windows == 3 and scores.syncnet == "syncnet_v2" and scores.mean_distances.shape == (9,)


class IndexNet(torch.nn.Module):
    """A stand-in SyncNet v2 whose embeddings are one-hot codes of what a window holds: the face window's first
    frame carries its frame index as its pixel value, the MFCC window's first column its audio frame index."""

    name = "index-net"

    def __init__(self, dim: int = 64, shift: int = 8):
        super().__init__()
        self.dim, self.shift = dim, shift
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # sync_scores_v2 reads the device off a parameter

    def _code(self, index: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(index.round().long() + self.shift, self.dim).float()

    def embed_faces(self, faces: torch.Tensor) -> torch.Tensor:
        return self._code(faces[:, 0, 0, 0, 0])

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self._code(mfcc[:, 0, 0, 0])


@pytest.mark.parametrize("planted", [2, 0, -3])
def test_scores_find_a_planted_offset_with_syncnet_python_windows(planted, monkeypatch):
    """Audio window j holds what video window j + planted shows (MFCC window j = columns 4j .. 4j + 19, 100 MFCC
    frames a second at 25 fps): the best offset is ``planted``, and every mean distance is the one
    ``calc_pdist`` gives (distance 0 for the same index, sqrt(2) for another, 1 against a zero pad row)."""
    from etlib.audio import sync_metrics

    n_frames, vshift = 30, 5
    monkeypatch.setattr(
        sync_metrics,
        "syncnet_mfcc",
        lambda wave, sr=16000: np.tile(np.arange(4 * n_frames + 16) // 4 + planted, (13, 1)).astype(np.float32),
    )
    faces = np.repeat(np.arange(n_frames, dtype=np.uint8), 224 * 224 * 3).reshape(n_frames, 224, 224, 3)
    scores = sync_scores_v2(faces, np.zeros(n_frames * 640, np.int16), IndexNet(), vshift=vshift)
    windows = n_frames - 5
    expected = []
    for k in range(2 * vshift + 1):  # face window i against audio window i + k - vshift (zero rows outside)
        d = []
        for i in range(windows):
            j = i + k - vshift
            d.append(1.0 if not 0 <= j < windows else (0.0 if j + planted == i else np.sqrt(2)))
        expected.append(np.mean(d))
    np.testing.assert_allclose(scores.mean_distances, expected, atol=1e-4)
    assert scores.n_windows == windows and scores.av_offset == planted
    assert scores.sync_e == pytest.approx(min(expected), abs=1e-4)
    assert scores.sync_c == pytest.approx(np.median(expected) - min(expected), abs=1e-4)
    assert scores.sync_e < 0.25 and scores.sync_c > 1.0  # a clear minimum: the planted offset is found, not tied

"""Loaders of the paper's pretrained preprocessing parts, each tested on small checkpoints that the
tests write: BiSeNet face parsing, HuBERT audio features, face-alignment's FAN + S3FD, OpenFace's CSV."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest
import torch

from etlib.preprocess import bisenet

# --------------------------------------------------------------------------------------------------
# BiSeNet
# --------------------------------------------------------------------------------------------------

# Keys of the published 79999_iter.pth (face-parsing.PyTorch), with their shapes: a sample from each module.
PUBLISHED_KEYS = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.layer1.0.conv1.weight": (64, 64, 3, 3),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer2.0.downsample.1.running_var": (128,),
    "cp.resnet.layer4.1.bn2.weight": (512,),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm32.bn_atten.bias": (128,),
    "cp.conv_head32.conv.weight": (128, 128, 3, 3),
    "cp.conv_head16.bn.running_mean": (128,),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv_out.weight": (19, 64, 1, 1),
    "conv_out32.conv.conv.weight": (64, 128, 3, 3),
}


def _constant_class_bisenet(cls: int) -> bisenet.BiSeNet:
    """A BiSeNet (random trunk) whose main head predicts class ``cls`` at every pixel."""
    torch.manual_seed(0)
    net = bisenet.BiSeNet()
    head = net.conv_out
    with torch.no_grad():
        head.conv.bn.weight.zero_()  # ReLU(0 * x + 1) = 1 on every channel, whatever the trunk says
        head.conv.bn.bias.fill_(1.0)
        head.conv_out.weight.zero_()
        head.conv_out.weight[cls] = 1.0
    return net.eval()


def test_bisenet_state_dict_layout_matches_the_published_checkpoint():
    state = bisenet.BiSeNet().state_dict()
    for key, shape in PUBLISHED_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("sp.") for k in state)  # the published model dropped the spatial path
    assert not any(k.startswith("cp.resnet.fc") for k in state)
    n_params = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert n_params == 13_313_088  # 53.25 MB of float32: 79999_iter.pth is 53.3 MB
    assert len(state) == 191


def test_bisenet_forward_shapes():
    net = bisenet.BiSeNet(n_classes=5).eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 96, 128))
    assert [tuple(o.shape) for o in outs] == [(1, 5, 96, 128)] * 3


def _pin_to(monkeypatch, name: str, path) -> None:
    """Make the registry's digest of ``name`` that of ``path`` (a small file standing for the published one)."""
    import dataclasses

    from etlib import weights

    entry = dataclasses.replace(weights.REGISTRY[name], sha256=weights.sha256_of(path), size=None)
    monkeypatch.setitem(weights.REGISTRY, name, entry)


def test_load_bisenet_from_an_explicit_path_and_from_the_registry(tmp_path, weights_cache, monkeypatch):
    from etlib.weights import WeightsChecksumError

    net = _constant_class_bisenet(11)
    path = tmp_path / "saved.pth"
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, path)  # as DataParallel saves it
    loaded = bisenet.load_bisenet(path)
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training

    torch.save(net.state_dict(), weights_cache / "79999_iter.pth")
    with pytest.raises(WeightsChecksumError, match="sha256|bytes"):  # not the published file: refused
        bisenet.load_bisenet()
    _pin_to(monkeypatch, "bisenet_face_parsing", weights_cache / "79999_iter.pth")
    from_registry = bisenet.load_bisenet()
    assert torch.equal(from_registry.cp.resnet.conv1.weight, net.cp.resnet.conv1.weight)


def test_load_bisenet_rejects_a_foreign_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"backbone.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not a face-parsing.PyTorch BiSeNet"):
        bisenet.load_bisenet(path)


def test_load_bisenet_without_weights_names_the_fetch_command(weights_cache):
    from etlib.weights import WeightsMissingError

    with pytest.raises(WeightsMissingError, match="download_weights.py bisenet_face_parsing"):
        bisenet.load_bisenet()


def test_class_to_mask_mapping():
    labels = np.array(
        [
            [0, 1, 2, 10],  # background, skin, brow, nose
            [11, 11, 12, 13],  # inside mouth, lips
            [14, 15, 16, 17],  # neck, necklace, cloth, hair
            [18, 7, 4, 0],  # hat, ear, eye, background
        ],
        np.uint8,
    )
    m = bisenet.masks_from_labels(labels)
    expect_face = np.isin(labels, (1, 2, 4, 7, 10, 12, 13))
    assert (m["face"] == expect_face).all()
    assert (m["mouth"] == (labels == 11)).all()
    assert (m["head"] == (expect_face | (labels == 11))).all()
    assert (m["hair"] == np.isin(labels, (17, 18))).all()
    assert (m["neck"] == np.isin(labels, (14, 15))).all()
    assert (m["torso"] == np.isin(labels, (14, 15, 16, 17, 18))).all()
    assert (m["background"] == (labels == 0)).all()
    assert not m["teeth"].any()  # no image: no colour to find teeth by
    # Every pixel lands in exactly one of head / torso / background.
    assert (m["head"].astype(int) + m["torso"] + m["background"] == 1).all()


def test_teeth_come_from_the_bright_grey_part_of_the_parsed_mouth():
    labels = np.zeros((32, 32), np.uint8)
    labels[10:20, 8:24] = 11
    image = np.full((32, 32, 3), (150, 40, 40), np.uint8)  # red tongue
    image[10:14, 10:22] = 235  # a row of white teeth
    image[0:5, 0:5] = 255  # white, but outside the mouth
    m = bisenet.masks_from_labels(labels, image)
    assert m["teeth"][11:13, 11:21].all()
    assert not m["teeth"][16:20].any() and not m["teeth"][0:5, 0:5].any()
    assert (m["teeth"] <= m["mouth"]).all()


@pytest.mark.parametrize("cls, mask", [(11, "mouth"), (17, "hair"), (0, "background")])
def test_bisenet_masks_backend_end_to_end(tmp_path, cls, mask):
    path = tmp_path / "bisenet.pth"
    torch.save(_constant_class_bisenet(cls).state_dict(), path)
    backend = bisenet.BiSeNetMasks(path)
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), np.uint8)
    labels = bisenet.parse_face(backend.net, image, size=64)
    assert labels.shape == (40, 56) and labels.dtype == np.uint8 and (labels == cls).all()
    masks = bisenet.masks_from_labels(labels, image)
    assert masks[mask].all()
    assert set(masks) >= {"face", "mouth", "teeth", "head", "background", "torso", "hair", "neck"}


def test_mask_backend_is_bisenet_when_its_weights_are_present(weights_cache, monkeypatch):
    from etlib.preprocess import masks

    assert isinstance(masks.get_mask_backend(), masks.LandmarkMasks)
    torch.save(bisenet.BiSeNet().state_dict(), weights_cache / "79999_iter.pth")
    _pin_to(monkeypatch, "bisenet_face_parsing", weights_cache / "79999_iter.pth")
    assert isinstance(masks.get_mask_backend(), bisenet.BiSeNetMasks)
    assert isinstance(masks.get_mask_backend("landmarks"), masks.LandmarkMasks)
    with pytest.raises(ValueError, match="prefer"):
        masks.get_mask_backend("parser")


def test_parse_face_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="RGB uint8"):
        bisenet.parse_face(bisenet.BiSeNet().eval(), np.zeros((8, 8), np.uint8))


# --------------------------------------------------------------------------------------------------
# HuBERT
# --------------------------------------------------------------------------------------------------


def _tiny_hubert_config() -> dict:
    from etlib.audio.hubert import HUBERT_LARGE_CONFIG

    # HuBERT large's layout (stable layer norm, layer-norm conv front end, 320x downsampling), tiny widths.
    return dict(
        HUBERT_LARGE_CONFIG,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=[16] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory):
    """A randomly initialised HubertForCTC saved as the published checkpoint is (``hubert.`` prefix, lm_head,
    weight-norm ``weight_g``/``weight_v`` keys); returns (path, config, reference HubertModel)."""
    transformers = pytest.importorskip("transformers", reason="HuBERT features need the transformers package")
    cfg = _tiny_hubert_config()
    torch.manual_seed(0)
    ctc = transformers.HubertForCTC(transformers.HubertConfig(**cfg)).eval()
    state = {}
    for k, v in ctc.state_dict().items():
        k = k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        state[k] = v
    path = tmp_path_factory.mktemp("hubert") / "pytorch_model.bin"
    torch.save(state, path)
    return path, cfg, ctc.hubert


@pytest.mark.slow  # importing transformers takes ~10 s on a loaded 2-core machine
def test_hubert_loader_reads_the_published_key_layout(tiny_hubert):
    from etlib.audio.hubert import load_hubert

    path, cfg, ref = tiny_hubert
    model = load_hubert(path, cfg)
    assert not model.training
    got, want = model.state_dict(), ref.state_dict()
    assert set(got) == set(want)
    for key in want:
        assert torch.allclose(got[key], want[key]), key


def test_hubert_features_are_two_50hz_states_per_25fps_frame(tiny_hubert):
    from etlib.audio.features import per_frame_features
    from etlib.audio.hubert import hubert_hidden_states, hubert_per_frame_features, load_hubert

    path, cfg, ref = tiny_hubert
    model = load_hubert(path, cfg)
    wave = (0.1 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32)  # 1 s: 25 frames
    feats = hubert_per_frame_features(wave, model=model)
    mel = per_frame_features(wave)
    assert feats.shape == (25, 64) and feats.dtype == np.float32
    assert feats.shape[0] == mel.shape[0]  # the log-mel features' (n_frames, dim) layout

    x = torch.from_numpy((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).float()[None]
    with torch.no_grad():
        hidden = ref(x).last_hidden_state[0].numpy()
    assert len(hidden) == 49  # (16000 - 400) // 320 + 1
    assert np.allclose(hubert_hidden_states(model, wave), hidden, atol=1e-4)
    for t in (0, 7, 23):
        assert np.allclose(feats[t, :32], hidden[2 * t], atol=1e-4)
        assert np.allclose(feats[t, 32:], hidden[2 * t + 1], atol=1e-4)
    assert np.allclose(feats[24, 32:], hidden[48], atol=1e-4)  # past the last state: it repeats

    longer = hubert_per_frame_features(wave, model=model, n_frames=27)
    assert longer.shape == (27, 64) and np.allclose(longer[26], np.concatenate([hidden[48], hidden[48]]), atol=1e-4)


def test_hubert_loader_errors(tmp_path, weights_cache):
    pytest.importorskip("transformers", reason="HuBERT features need the transformers package")
    from etlib.audio.hubert import frames_from_hidden, load_hubert
    from etlib.weights import WeightsMissingError

    with pytest.raises(WeightsMissingError, match="hubert_large"):
        load_hubert()
    bad = tmp_path / "bad.bin"
    torch.save({"encoder.layers.0.weight": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="does not fit the HuBERT architecture"):
        load_hubert(bad, _tiny_hubert_config())
    with pytest.raises(ValueError, match="n_frames"):
        frames_from_hidden(np.zeros((4, 8)), 0)


def test_audio_features_falls_back_to_log_mel_without_hubert_weights(weights_cache):
    from etlib.audio.features import audio_features

    wave = np.zeros(16000, np.float32)
    feats, backend = audio_features(wave)
    assert feats.shape == (25, 64) and "log-mel" in backend
    with pytest.raises(ValueError, match="prefer"):
        audio_features(wave, prefer="deepspeech")


# --------------------------------------------------------------------------------------------------
# face-alignment (FAN + S3FD)
# --------------------------------------------------------------------------------------------------


class _PeakFAN(torch.nn.Module):
    """Stands in for FAN: the same 68 heatmaps (one-pixel peaks at known places) for every crop."""

    def __init__(self, peaks: torch.Tensor):
        super().__init__()
        heat = torch.zeros(1, 68, 64, 64)
        heat[0, torch.arange(68), peaks[:, 1], peaks[:, 0]] = 1.0
        self.register_buffer("heat", heat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heat.expand(x.shape[0], -1, -1, -1)


@pytest.fixture(scope="module")
def fan_files(tmp_path_factory):
    """A TorchScript FAN stand-in (the registry's fan_2d_68 is a TorchScript archive) and random S3FD weights."""
    pytest.importorskip("face_alignment", reason="face-alignment is not installed (pip install face-alignment)")
    from face_alignment.detection.sfd.net_s3fd import s3fd

    root = tmp_path_factory.mktemp("fan")
    peaks = torch.from_numpy(np.random.default_rng(0).integers(8, 56, (68, 2)))
    torch.jit.script(_PeakFAN(peaks)).save(str(root / "fan.zip"))
    torch.manual_seed(0)
    torch.save({k: v.half() for k, v in s3fd().state_dict().items()}, root / "s3fd.pth")  # half: a smaller file
    return root / "s3fd.pth", root / "fan.zip", peaks.numpy()


def test_face_alignment_loader_maps_heatmap_peaks_to_image_pixels(fan_files):
    from etlib.preprocess.landmarks import FaceAlignmentLandmarks

    s3fd_path, fan_path, peaks = fan_files
    fa = FaceAlignmentLandmarks(detector_path=s3fd_path, fan_path=fan_path, flip_input=False)
    image = np.random.default_rng(1).integers(0, 255, (240, 320, 3), np.uint8)
    box = (100.0, 60.0, 200.0, 180.0)
    lm = fa.fit(image, box)
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    # face-alignment's crop: a square of side 200 * scale (scale = (w + h) / 195) around the box centre moved
    # up by 12% of the box height, seen by FAN as 64 x 64 heatmap pixels.
    scale = (100 + 120) / 195
    centre = np.array([150.0, 120.0 - 0.12 * 120])
    px = 200 * scale / 64
    expected = centre + (peaks + 0.5 - 32) * px
    assert np.abs(lm - expected).max() < 1.0 * px


def test_decode_heatmaps_quarter_pixel_step_and_crop_mapping():
    pytest.importorskip("face_alignment", reason="face-alignment is not installed (pip install face-alignment)")
    from etlib.preprocess.landmarks import decode_heatmaps

    heat = np.zeros((68, 64, 64), np.float32)
    heat[:, 20, 10] = 1.0
    heat[:, 20, 11] = 0.5  # right neighbour higher: +0.25 in x
    heat[:, 19, 10] = 0.3  # upper neighbour higher: -0.25 in y
    heat[5] = 0.0
    heat[5, 0, 63] = 1.0  # on the border: no sub-pixel step
    pts = decode_heatmaps(heat, np.array([100.0, 50.0]), scale=0.64)  # crop side 128 px: 2 px a heatmap pixel
    assert np.allclose(pts[0], [100 + (10.25 + 0.5 - 32) * 2, 50 + (19.75 + 0.5 - 32) * 2])
    assert np.allclose(pts[5], [100 + (63.5 - 32) * 2, 50 + (0.5 - 32) * 2])


def test_face_alignment_detector_and_tracking(fan_files, monkeypatch):
    from etlib.preprocess.landmarks import FaceAlignmentLandmarks

    s3fd_path, fan_path, _ = fan_files
    fa = FaceAlignmentLandmarks(detector_path=s3fd_path, fan_path=fan_path)
    assert fa._detector.face_detector.conv1_1.weight.dtype == torch.float32  # loaded into the real S3FD
    image = np.random.default_rng(2).integers(0, 255, (128, 128, 3), np.uint8)
    boxes = fa.detect_boxes(image)  # random weights: any number of boxes, but each a float 4-tuple
    assert all(len(b) == 4 and all(isinstance(v, float) for v in b) for b in boxes)

    monkeypatch.setattr(fa, "detect_boxes", lambda img: [])
    assert fa(image).landmarks is None
    tracked = fa(image, prev_box=(20.0, 20.0, 100.0, 110.0))
    assert not tracked.detected and tracked.landmarks.shape == (68, 2)  # a miss keeps the previous box
    monkeypatch.setattr(fa, "detect_boxes", lambda img: [(0.0, 0.0, 10.0, 10.0), (30.0, 30.0, 100.0, 110.0)])
    found = fa(image, prev_box=(20.0, 20.0, 100.0, 110.0))
    assert found.detected and found.box == (30.0, 30.0, 100.0, 110.0)  # the face that overlaps the last one


def test_load_fan_reads_a_native_state_dict_too(tmp_path):
    pytest.importorskip("face_alignment", reason="face-alignment is not installed (pip install face-alignment)")
    from face_alignment.models import FAN

    from etlib.preprocess.landmarks import load_fan

    torch.manual_seed(0)
    net = FAN(1)  # one hourglass: same module names as FAN(4)'s first stack, small
    path = tmp_path / "fan.pth.tar"
    torch.save(net.state_dict(), path)
    with pytest.raises(RuntimeError, match="state_dict"):  # FAN(4) expects four stacks
        load_fan(path)
    with pytest.raises(FileNotFoundError):
        load_fan(tmp_path / "absent.zip")


# --------------------------------------------------------------------------------------------------
# OpenFace (the CSV reader itself is tested in test_preprocess_units.py)
# --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="the fake FeatureExtraction is a shell script")
def test_run_openface_reads_the_csv_featureextraction_writes(tmp_path):
    from etlib.preprocess.action_units import AU_NAMES, run_openface

    exe = tmp_path / "FeatureExtraction"
    # Writes the CSV that OpenFace would, into the -out_dir it is given (argument 4).
    exe.write_text(
        "#!/bin/sh\n"
        'printf "frame, timestamp, AU01_r, AU26_r\\n1, 0.00, 0.25, 3.5\\n2, 0.04, 1.0, 0.0\\n" > "$4/clip.csv"\n'
    )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "clip.mp4").write_bytes(b"")  # OpenFace is faked: the file only has to exist
    aus = run_openface(tmp_path / "clip.mp4", exe=str(exe))
    assert aus.shape == (2, len(AU_NAMES))
    assert aus[0, AU_NAMES.index("AU26")] == 3.5 and aus[1, AU_NAMES.index("AU01")] == 1.0


def test_run_openface_without_the_executable(monkeypatch, tmp_path):
    from etlib.preprocess.action_units import run_openface

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="FeatureExtraction"):
        run_openface(tmp_path / "clip.mp4")
    assert os.environ["PATH"] == str(tmp_path)

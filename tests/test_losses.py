import pytest
import torch

from etlib import losses


def test_ssim_of_identical_images_is_one_and_dssim_grows_with_noise():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(32, 32, 3, generator=g)
    assert float(losses.ssim(img, img)) == pytest.approx(1.0, abs=1e-6)
    noisy = (img + 0.2 * torch.randn(32, 32, 3, generator=g)).clamp(0, 1)
    assert 0.05 < float(losses.d_ssim(noisy, img)) < 1.5


def test_ssim_gradient_flows():
    img = torch.rand(16, 16, 3, requires_grad=True)
    losses.d_ssim(img, torch.rand(16, 16, 3)).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_total_variation_of_a_step():
    img = torch.zeros(4, 4, 3)
    img[:, 2:] = 1.0  # one vertical edge: 4 of the 12 horizontal neighbour pairs differ by 1
    assert float(losses.total_variation(img)) == pytest.approx(4 / 12)


def test_normal_l1_only_counts_masked_pixels():
    pred = torch.zeros(2, 2, 3)
    target = torch.ones(2, 2, 3)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert float(losses.normal_l1(pred, target, mask)) == pytest.approx(1.0)
    assert float(losses.normal_l1(pred, target)) == pytest.approx(1.0)


def test_residual_norm_is_mean_squared_length():
    dn = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    assert float(losses.residual_norm(dn)) == pytest.approx(12.5)


def test_lpips_is_unavailable_rather_than_replaced(weights_cache):
    lp = losses.LPIPSLoss()  # an empty weights cache: no heads, no backbone
    assert not lp.available and "LPIPS unavailable" in lp.reason
    with pytest.raises(RuntimeError, match="LPIPS is unavailable"):
        lp(torch.rand(16, 16, 3), torch.rand(16, 16, 3))


def test_bad_image_shape():
    with pytest.raises(ValueError, match="images"):
        losses.ssim(torch.rand(5, 16, 16, 3, 2), torch.rand(5, 16, 16, 3, 2))


def test_lip_box_covers_the_lips_with_a_margin_and_stays_in_the_frame():
    landmarks = torch.zeros(68, 2)
    landmarks[48:68] = torch.tensor([[40.0, 80.0], [60.0, 90.0]]).repeat(10, 1)  # lips span x 40-60, y 80-90
    rows, cols = losses.lip_box(landmarks, 128, pad=0.25)
    assert (cols.start, cols.stop) == (35, 65) and (rows.start, rows.stop) == (77, 93)
    landmarks[48:68, 1] += 40  # lips at the bottom edge: the box is clipped, never empty
    rows, cols = losses.lip_box(landmarks, 128)
    assert rows.stop == 128 and rows.start < rows.stop
    landmarks[0] = 500  # only the lip points count
    assert losses.lip_box(landmarks, 128) == (rows, cols)


def test_changed_region_marks_what_differs_grown_by_a_margin():
    import numpy as np

    from etlib.losses import changed_region, masked_l1

    source = torch.zeros(20, 20, 3)
    target = source.clone()
    target[8:10, 5:7, 1] = 0.5  # a 2x2 change in one channel
    target[15, 15] = 1 / 255  # below the threshold: not a change
    region = changed_region(target, source, grow=2)
    assert region.shape == (20, 20, 1)
    assert region[6:12, 3:9].all() and region.sum() == 36 and region[15, 15] == 0
    pred = target.clone()
    pred[8, 5, 1] = 0.0  # one wrong value inside the region
    np.testing.assert_allclose(float(masked_l1(pred, target, region)), 0.5 / (36 * 3), rtol=1e-6)
    assert float(masked_l1(pred, target, torch.zeros(20, 20, 1))) == 0.0

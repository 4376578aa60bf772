import dataclasses

import pytest

from etlib import config


def test_presets_share_the_method_and_differ_in_size():
    smoke, quick, paper = (config.get_preset(n) for n in ("smoke", "quick", "paper"))
    assert smoke.resolution < quick.resolution < paper.resolution == 512
    for field in dataclasses.fields(config.StageIterations):
        assert getattr(smoke.iterations, field.name) <= getattr(quick.iterations, field.name)
        assert getattr(quick.iterations, field.name) <= getattr(paper.iterations, field.name)


def test_paper_preset_is_the_papers_schedule():
    it = config.get_preset("paper").iterations
    # S1: each branch 50k iterations (canonical phase included), fine-tuning 20k more.
    assert it.mouth_canonical + it.mouth_network == 50_000
    assert it.face_canonical + it.face_network == 50_000
    assert it.emotion_network == 50_000
    assert it.finetune == 20_000
    assert config.get_preset("paper").hash_grid.log2_hashmap_size == 17


def test_loss_weights_are_the_papers():
    # Eq. S11/S13 (gamma), S12/S14 (beta), S15 (kappa), S16 (eta), S6 (lambda).
    assert (config.FACE_CANONICAL.gamma1_dssim, config.FACE_CANONICAL.gamma2_normal_l1) == (0.2, 0.05)
    assert (config.FACE_CANONICAL.gamma3_normal_tv, config.FACE_CANONICAL.gamma4_normal_residual) == (
        0.005,
        0.001,
    )
    b = config.FACE_BRANCH
    assert (b.beta1_dssim, b.beta2_lpips, b.beta3_normal_l1, b.beta4_normal_tv, b.beta5_normal_residual) == (
        0.2,
        0.2,
        0.05,
        0.005,
        0.001,
    )
    assert b.beta6_sync == 0.05 and config.MOUTH_BRANCH.beta6_sync == 0.05
    assert config.MOUTH_BRANCH.beta3_normal_l1 == 0.0  # S12 has no normal terms
    assert config.EMOTION_BRANCH.beta6_sync == 0.001  # S15
    assert (config.FINETUNE.eta1_dssim, config.FINETUNE.eta2_lpips) == (0.2, 0.5)
    g = config.GENERATOR
    assert (g.lambda1_lip_landmark, g.lambda2_lip_pixel, g.lambda3_regularization) == (1, 5, 0.03)
    assert (g.lambda4_emotion, g.lambda5_identity) == (0.2, 1.5)
    assert (config.OPTIMIZER.lr_hash_encoder, config.OPTIMIZER.lr_other) == (5e-3, 5e-4)


def test_s6_points_lie_on_the_two_circles():
    radii = sorted({round((v * v + a * a) ** 0.5, 1) for v, a, _ in config.S6_POINTS})
    assert radii == [0.5, 0.8] and len(config.S6_POINTS) == 12


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="smoke, quick, paper"):
        config.get_preset("fast")


def test_every_size_of_a_preset_lives_in_the_preset():
    """SyncNet, evaluation, generator-check and notebook-demo sizes come from the preset, so ``paper`` means the
    paper's sizes everywhere (Wav2Lip's expert, the full evaluation) and ``smoke`` stays the smallest."""
    from etlib.config import PRESETS

    paper, quick, smoke = PRESETS["paper"], PRESETS["quick"], PRESETS["smoke"]
    assert paper.syncnet.is_wav2lip and not quick.syncnet.is_wav2lip
    assert paper.evaluation.max_test_frames is None and paper.evaluation.tts_sentences == 10
    assert smoke.evaluation.frames_per_point < quick.evaluation.frames_per_point < paper.evaluation.frames_per_point
    assert smoke.generator_check_frames < quick.generator_check_frames < paper.generator_check_frames
    assert smoke.demos.splat_steps < quick.demos.splat_steps
    assert smoke.syncnet.face_hw < quick.syncnet.face_hw < paper.syncnet.face_hw
    small = quick.with_overrides(generator_check_frames=1)  # the one override mechanism
    assert small.generator_check_frames == 1 and small.syncnet == quick.syncnet

"""The instrument behind Sync-E/C is independent of training: never L_sync's SyncNet (Eq. 9), an evaluator trained
from another seed on a clip the model never saw, or SyncNet v2 with syncnet_python's face crops."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from etlib.evaluation import sync_scorer as S


def _tiny_syncnet(path, seed: int = 0, subject: str = "subject"):
    from etlib.audio.syncnet import train_syncnet

    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (30, 16, 32, 3), dtype=np.uint8)
    mel = rng.uniform(-4, 4, (80, 120)).astype(np.float32)
    train_syncnet(frames, mel, iterations=1, batch_size=2, seed=seed, subject=subject, checkpoint_path=path,
                  progress=False)  # fmt: skip


def test_the_scorer_is_never_the_syncnet_of_l_sync(tmp_path, weights_cache):
    _tiny_syncnet(tmp_path / "syncnet.pt")  # what notebook 05 writes for L_sync
    net, status = S.find_sync_scorer([tmp_path])
    assert net is None and status.startswith("unavailable: no SyncNet independent of training")
    _tiny_syncnet(tmp_path / S.EVALUATOR_FILE, seed=S.EVALUATOR_SEED, subject="emotion_subject")
    net, status = S.find_sync_scorer([tmp_path / "nowhere", tmp_path])
    assert net is not None and str(tmp_path / S.EVALUATOR_FILE) in status

    run = tmp_path / "run"
    run.mkdir()
    state = {"sync": "L_sync (Eq. 9) with syncnet:offline-trained(subject=subject), every 4 iterations; TTS sentences "
                     "spoken by espeak-ng 1.52.0 en-us"}  # fmt: skip
    (run / "state.json").write_text(json.dumps(state))
    assert S.training_syncnet_name(run) == "syncnet:offline-trained(subject=subject)"
    with pytest.raises(ValueError, match="grade its own loss"):
        S.assert_independent(f"syncnet:offline-trained(subject=subject) ({tmp_path / 'syncnet.pt'})", run)
    S.assert_independent(S.evaluator_name("emotion_subject"), run)
    (run / "state.json").write_text(json.dumps({"terms_dropped": {"sync": "no SyncNet given"}}))
    assert S.training_syncnet_name(run) is None
    S.assert_independent("syncnet:offline-trained(subject=subject)", run)  # no L_sync: nothing to grade


@pytest.fixture(scope="module")
def emotion_clip(small_sample_subject, tmp_path_factory):
    """The small sample subject's emotion clip, preprocessed (smoke): frames the model of ``smoke_subject`` never
    trains on."""
    from etlib.preprocess import preprocess

    out = tmp_path_factory.mktemp("emotion_clip")
    return preprocess(small_sample_subject / "emotion.mp4", out, "smoke", progress=False)


@pytest.mark.slow
def test_the_evaluator_learns_another_clip_from_another_seed(emotion_clip, smoke_subject, tmp_path):
    from etlib.audio.syncnet import load_syncnet
    from etlib.evaluation.syncnet_check import train_subject_syncnet

    with pytest.raises(ValueError, match="the subject the model trained on"):
        S.train_evaluator_syncnet(smoke_subject.root, tmp_path, "smoke", subject=smoke_subject.root, iterations=2)
    report = S.train_evaluator_syncnet(emotion_clip.root, tmp_path, "smoke", subject=smoke_subject.root,
                                       iterations=3, progress=False)  # fmt: skip
    name = S.evaluator_name(emotion_clip.root.name)
    assert report["syncnet"] == name and report["trained_on"]["seed"] == S.EVALUATOR_SEED != 0
    assert report["trained_on"]["frames"] == emotion_clip.n_frames and report["iterations"] == 3
    check = report["check_on_subject"]
    assert check["subject"] == smoke_subject.root.name and check["syncnet"] == name
    evaluator = load_syncnet(tmp_path / S.EVALUATOR_FILE)
    assert evaluator.name == name
    # L_sync's SyncNet of the same preset: another network (its own frames, seed 0)
    l_sync = train_subject_syncnet(smoke_subject.root, tmp_path / "lsync", "smoke", iterations=3, progress=False)
    a, b = evaluator.state_dict(), l_sync.model.state_dict()
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    net, status = S.find_sync_scorer([tmp_path / "lsync", tmp_path])
    assert net.name == name and f"{emotion_clip.n_frames} frames of {emotion_clip.root.name}" in status


def test_v2_face_crops_cut_syncnet_python_s_box():
    """A frame whose red channel holds x and green holds y; the landmarks' box is x 40-80, y 50-100, so
    ``run_pipeline.crop_video`` keeps rows cy - bs .. cy + 1.8 bs = 50 .. 120 and columns cx -+ 1.4 bs = 25 .. 95
    (bs = 25, crop_scale 0.4) and resizes them to 224."""
    h, w = 160, 170
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 0] = np.arange(w)[None, :]
    frame[..., 1] = np.arange(h)[:, None]
    lm = np.zeros((68, 2))
    lm[:34] = (40, 50)
    lm[34:] = (80, 100)
    crops = S.v2_face_crops(np.repeat(frame[None], 15, 0), np.repeat(lm[None], 15, 0))
    assert crops.shape == (15, 224, 224, 3)
    c = crops[7].astype(float)
    scale = 70 / 224  # 70 source pixels onto 224
    assert abs(c[0, 0, 0] - 25) <= 1 and abs(c[0, 0, 1] - 50) <= 1
    assert abs(c[-1, -1, 0] - (95 - scale)) <= 1 and abs(c[-1, -1, 1] - (120 - scale)) <= 1
    assert abs(c[112, 112, 0] - 60) <= 1 and abs(c[112, 112, 1] - 85) <= 1
    # outside the frame the crop is syncnet_python's grey padding
    lm_edge = np.repeat((lm - (40, 50))[None], 15, 0)
    edge = S.v2_face_crops(np.repeat(frame[None], 15, 0), lm_edge)
    assert (edge[7, 0, 0] == 110).all()


def test_syncnet_v2_scores_the_tables_when_its_weights_are_present(monkeypatch, weights_cache):
    from etlib.audio import syncnet_v2
    from etlib.evaluation import paper_tables as ev

    torch.manual_seed(0)
    model = syncnet_v2.SyncNetV2().eval()
    monkeypatch.setattr("etlib.weights.is_present", lambda name: name == "syncnet_v2")
    monkeypatch.setattr(syncnet_v2, "load_syncnet_v2", lambda device="cpu": model)
    scorer, status = S.find_sync_scorer([])
    assert isinstance(scorer, S.SyncNetV2Scorer) and status.startswith("syncnet_v2")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 96, 96, 3), dtype=np.uint8)
    lm = np.tile(rng.uniform(30, 66, (1, 68, 2)), (12, 1, 1))
    audio = rng.normal(0, 0.1, 12 * 640).astype(np.float32)
    cells = ev.clip_sync(frames, lm, audio, scorer)  # the tables' path dispatches to v2
    curve = np.asarray(cells["mean_distances"])
    assert cells["windows"] == 12 - 5 and curve.shape == (31,)
    assert cells["sync_e"] == pytest.approx(curve.min()) and cells["av_offset"] == 15 - int(np.argmin(curve))
    from etlib.audio.sync_metrics import sync_scores_v2

    direct = sync_scores_v2(S.v2_face_crops(frames, lm), audio, model)
    np.testing.assert_allclose(curve, direct.mean_distances, rtol=1e-6)

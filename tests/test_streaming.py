"""Whole-clip passes stream frames: the memory of evaluation, Table 1 and SyncNet's clip does not grow with the number
of frames beyond what they must keep per frame (landmarks, SyncNet's small mouth crops), and the streamed metrics
equal the ones computed on stacked frames.

Memory is measured with ``tracemalloc``, which counts every NumPy and OpenCV array (both report their buffers to
it), i.e. every decoded frame, mask and stacked clip; torch's own buffers are not counted, so this checks the data
path, not the renderer. ``benchmarks/eval_memory.py`` measures the whole process on a 7,500-frame 512 px subject.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

SIZE = 96  # px: a float32 frame is 110 KB, a uint8 frame 28 KB


@pytest.fixture(scope="module")
def long_subjects(smoke_subject, tmp_path_factory, load_script):
    """The smoke subject looped to 132 and to 528 frames at 96 px (test splits of 12 and 48 frames)."""
    make = load_script("benchmarks/eval_memory.py").make_long_subject
    root = tmp_path_factory.mktemp("long_subjects")
    return {n: make(smoke_subject.root, root / f"s{n}", n, SIZE) for n in (132, 528)}


@pytest.fixture(scope="module")
def model_and_data(long_subjects, tmp_path_factory):
    """An untrained model (evaluation reads its renders, not their quality) and the 528-frame subject's frames."""
    from etlib.train import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(long_subjects[528], tmp_path_factory.mktemp("run") / "run", "smoke", progress=False, device="cpu")
    return trainer.model.eval(), trainer.data


def numpy_peak(fn) -> tuple[int, object]:
    """Peak bytes of NumPy/OpenCV arrays alive at once while ``fn()`` runs, and its result."""
    tracemalloc.start()
    try:
        result = fn()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_evaluate_model_holds_no_frames(model_and_data):
    from etlib.train.run_metrics import evaluate_model

    model, data = model_and_data
    ids = data.test_ids
    assert len(ids) >= 48
    small, _ = numpy_peak(lambda: evaluate_model(model, data, ids[:12], progress=False))
    large, result = numpy_peak(lambda: evaluate_model(model, data, ids[:48], progress=False))
    frame = SIZE * SIZE * 3 * 4
    # holding 36 more frames as float32 (truths, renders, stacked copies) would add >= 36 frames; streaming adds
    # only 36 x 3 landmark sets
    assert large - small < 4 * frame, (small, large)
    assert result["frames"] == 48


def test_streamed_metrics_equal_the_stacked_ones(model_and_data):
    """PSNR and SSIM averaged frame by frame are the clip's (``etlib.metrics`` averages over frames too)."""
    from etlib.metrics import psnr, ssim
    from etlib.train.run_metrics import evaluate_model, render_frame

    model, data = model_and_data
    ids = data.test_ids[:4]
    pred = np.stack([render_frame(model, data, i) for i in ids])
    true = np.stack([data.subject.read_frame(i) for i in ids]).astype(np.float32) / 255.0
    nchw = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2)  # noqa: E731
    streamed = evaluate_model(model, data, ids, progress=False)
    assert streamed["psnr"] == pytest.approx(psnr(nchw(pred), nchw(true)), rel=1e-6)
    assert streamed["ssim"] == pytest.approx(ssim(nchw(pred), nchw(true)), rel=1e-5)


def test_table1_keeps_crops_and_landmarks_not_frames(model_and_data, tmp_path, monkeypatch):
    from etlib.audio.syncnet import load_syncnet, train_syncnet
    from etlib.evaluation import paper_tables as ev
    from etlib.preprocess.landmarks import DlibLandmarks

    monkeypatch.setattr(ev, "CROP_BATCH", 8)  # a stream holds at most 8 frames (64 by default): both runs fill it
    model, data = model_and_data
    crops = np.zeros((40, 24, 48, 3), np.uint8)
    mel = np.random.default_rng(0).uniform(-4, 4, (80, 200)).astype(np.float32)
    train_syncnet(crops, mel, iterations=1, batch_size=2, checkpoint_path=tmp_path / "s.pt", progress=False)
    backends = ev.Backends(None, load_syncnet(tmp_path / "s.pt"), "tiny", None, "unavailable: test", DlibLandmarks())
    ids = data.test_ids
    run = lambda n: ev.self_reconstruction(model, data, backends, ids[:n], fps_iters=1, progress=False)  # noqa: E731
    small, _ = numpy_peak(lambda: run(12))
    large, result = numpy_peak(lambda: run(48))
    kept = 36 * (24 * 48 * 3 * 3 + 3 * 68 * 2 * 8)  # three clips' mouth crops and landmark sets per frame
    assert large - small < kept + 4 * SIZE * SIZE * 3 * 4, (small, large)
    assert len(result["truth"]) == ev.SHOWN_FRAMES and result["shown"][0] == ids[0]
    assert all(len(v) == ev.SHOWN_FRAMES for v in result["renders"].values())


def test_syncnet_clip_reads_frames_a_batch_at_a_time(long_subjects):
    from etlib.base import LazyFrames
    from etlib.evaluation.syncnet_check import load_subject_clip
    from etlib.preprocess import SubjectDir

    peaks = {n: numpy_peak(lambda s=s: load_subject_clip(s, (24, 48)))[0] for n, s in long_subjects.items()}
    crops = 396 * 24 * 48 * 3
    assert peaks[528] - peaks[132] < crops + 2 * 64 * SIZE * SIZE * 3, peaks  # not the 396 frames (10.9 MB)
    s = SubjectDir(long_subjects[132])
    frames = LazyFrames(s.read_frame, s.n_frames)
    assert len(frames) == 132 and frames[5:8].shape == (3, SIZE, SIZE, 3)
    np.testing.assert_array_equal(frames[-1], s.read_frame(131))
    with pytest.raises(IndexError):
        frames[132]


def test_streamed_mouth_crops_equal_the_batched_ones(long_subjects):
    from etlib.audio.sync_metrics import MouthCropper, mouth_crops
    from etlib.preprocess import SubjectDir

    s = SubjectDir(long_subjects[132])
    frames = np.stack([s.read_frame(i) for i in range(100)])
    landmarks = np.load(s.landmarks)[:100]
    cropper = MouthCropper(landmarks, (24, 48), batch_size=16)
    for frame in frames:
        cropper.add(frame)
    np.testing.assert_array_equal(cropper.crops(), mouth_crops(frames, landmarks, (24, 48), batch_size=16))


def test_a_streamed_clip_scores_as_the_whole_clip_with_either_syncnet(tmp_path):
    """Table 1-3's clips are scored frame by frame (:class:`ClipStream`); with SyncNet v2 (whole-face crops cut one
    frame at a time) and with a Wav2Lip-style SyncNet (mouth crops a batch at a time) the cells equal those of the
    whole clip at once (``clip_sync``)."""
    from etlib.audio import syncnet_v2
    from etlib.audio.syncnet import load_syncnet, train_syncnet
    from etlib.evaluation import paper_tables as ev
    from etlib.evaluation.sync_scorer import SyncNetV2Scorer

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (40, 96, 96, 3), dtype=np.uint8)
    lm = rng.uniform(30, 66, (1, 68, 2)) + rng.normal(0, 1.0, (40, 1, 2))
    audio = rng.normal(0, 0.1, 40 * 640).astype(np.float32)
    torch.manual_seed(0)
    v2 = SyncNetV2Scorer(syncnet_v2.SyncNetV2().eval())
    train_syncnet(np.zeros((40, 24, 48, 3), np.uint8), rng.uniform(-4, 4, (80, 200)).astype(np.float32),
                  iterations=1, batch_size=2, checkpoint_path=tmp_path / "s.pt", progress=False)  # fmt: skip
    for scorer in (v2, load_syncnet(tmp_path / "s.pt")):
        stream = ev.ClipStream(lm, scorer, crop_batch=16)
        for frame in frames:
            stream.add(frame)
        streamed, whole = stream.sync(audio), ev.clip_sync(frames, lm, audio, scorer)
        np.testing.assert_allclose(streamed["mean_distances"], whole["mean_distances"], rtol=1e-5, atol=1e-6)
        assert streamed["av_offset"] == whole["av_offset"]

"""SyncNet (Wav2Lip lip-sync expert layout), its offline trainer, Sync-E/Sync-C and Eq. 9.

The end-to-end check trains a tiny SyncNet on a synthetic "talking" clip: a drawn mouth opens with
the envelope of a syllable-like buzz at 25 fps. A working SyncNet must then recover the audio-video
offset of held-out clips and give mismatched audio a lower Sync-C.
"""

import numpy as np
import pytest
import torch

from etlib.audio.features import log_mel, mel_window_for_frame
from etlib.audio.sync_metrics import (
    calc_pdist,
    eq9_sync_loss,
    face_box_from_landmarks,
    face_stacks,
    lower_half_crops,
    mouth_crops,
    scores_from_embeddings,
    smooth_boxes,
    sync_loss,
    sync_scores,
)
from etlib.audio.syncnet import (
    MAX_NEGATIVE_SHIFT,
    MIN_NEGATIVE_SHIFT,
    SyncNet,
    cosine_bce_loss,
    freeze,
    load_lipsync_expert,
    load_syncnet,
    load_wav2lip_checkpoint,
    stack_windows,
    to_bgr_chw,
    train_syncnet,
)
from etlib.audio.syncnet import _sample_batch as sample_batch
from etlib.config import PRESETS, SyncNetConfig
from etlib.weights import WeightsMissingError

FPS, SR = 25, 16000
CROP = (16, 32)  # tiny lower-half crops keep the test fast


# ----------------------------------------------------------------------------------------------
# Synthetic talking clips
# ----------------------------------------------------------------------------------------------


def syllable_envelope(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Mouth opening a frame: runs of 2-6 frames, silent or open by a random amount."""
    env = np.zeros(n_frames)
    t = 0
    while t < n_frames:
        run = int(rng.integers(2, 7))
        env[t : t + run] = 0.0 if rng.random() < 0.35 else rng.uniform(0.3, 1.0)
        t += run
    return env


def buzz(env: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 140 Hz harmonic buzz plus noise whose loudness follows the per-frame envelope."""
    n = int(len(env) * SR / FPS)
    t = np.arange(n) / SR
    loudness = np.interp(t * FPS, np.arange(len(env)) + 0.5, env)
    voice = sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 8)) + 0.5 * rng.standard_normal(n)
    return (0.15 * loudness * voice + 0.002 * rng.standard_normal(n)).astype(np.float32)


def mouth_frames(env: np.ndarray, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Lower-half crops (RGB uint8): a dark ellipse whose height follows the envelope, with jitter."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    skin, inner = np.array([205, 150, 125], np.float32), np.array([70, 20, 30], np.float32)
    frames = np.empty((len(env), h, w, 3), np.uint8)
    for i, opening in enumerate(env):
        cx, cy = w / 2 + rng.normal(0, 0.5), h * 0.45 + rng.normal(0, 0.3)
        r = ((xx - cx) / (w * 0.25)) ** 2 + ((yy - cy) / (0.5 + opening * h * 0.3)) ** 2
        alpha = np.clip((1.0 - r) * 4, 0, 1)[..., None]
        img = skin * (1 - alpha) + inner * alpha + rng.normal(0, 4, (h, w, 3))
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def talking_clip(n_frames: int, seed: int, hw=CROP):
    rng = np.random.default_rng(seed)
    env = syllable_envelope(n_frames, rng)
    return buzz(env, rng), mouth_frames(env, hw, rng)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run faster on one thread, and far faster when other jobs share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(one_thread):
    torch.manual_seed(0)
    wave, frames = talking_clip(250, seed=0)
    return train_syncnet(
        frames,
        log_mel(wave),
        iterations=120,
        batch_size=16,
        lr=2e-3,
        width=0.125,
        embed_dim=64,
        subject="synthetic",
        progress=False,
    )


# ----------------------------------------------------------------------------------------------
# Architecture
# ----------------------------------------------------------------------------------------------

# Wav2Lip models/syncnet.py SyncNet_color, written out from its description:
# (in, out, kernel) of each Conv2d(conv_block = [Conv2d, BatchNorm2d]) block.
WAV2LIP_FACE = [(15, 32, 7), (32, 64, 5), (64, 64, 3), (64, 64, 3), (64, 128, 3)] + [(128, 128, 3)] * 3 + [
    (128, 256, 3), (256, 256, 3), (256, 256, 3), (256, 512, 3), (512, 512, 3), (512, 512, 3),
    (512, 512, 3), (512, 512, 3), (512, 512, 1),
]  # fmt: skip
WAV2LIP_AUDIO = [(1, 32, 3), (32, 32, 3), (32, 32, 3), (32, 64, 3), (64, 64, 3), (64, 64, 3), (64, 128, 3),
    (128, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3), (256, 256, 3), (256, 512, 3), (512, 512, 1),
]  # fmt: skip


def wav2lip_state_layout() -> dict[str, tuple[int, ...]]:
    layout = {}
    for enc, table in (("face_encoder", WAV2LIP_FACE), ("audio_encoder", WAV2LIP_AUDIO)):
        for i, (cin, cout, k) in enumerate(table):
            p = f"{enc}.{i}.conv_block"
            layout[f"{p}.0.weight"] = (cout, cin, k, k)
            layout[f"{p}.0.bias"] = (cout,)
            for name in ("weight", "bias", "running_mean", "running_var"):
                layout[f"{p}.1.{name}"] = (cout,)
            layout[f"{p}.1.num_batches_tracked"] = ()
    return layout


def test_default_state_dict_matches_wav2lip_lipsync_expert():
    state = SyncNet().state_dict()
    expected = wav2lip_state_layout()
    assert len(state) == len(expected) == (17 + 14) * 7
    assert list(state) == list(expected)  # same names in the same order
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_default_forward_gives_unit_512d_embeddings():
    model = SyncNet().eval()
    mel, faces = torch.randn(1, 1, 80, 16), torch.rand(1, 15, 48, 96)
    with torch.no_grad():
        audio, face = model(mel, faces)
        face_map, audio_map = model.face_encoder(faces), model.audio_encoder(mel)
    assert audio.shape == face.shape == (1, 512)
    # At Wav2Lip's size both encoders end in a 1x1 map: the embedding is Wav2Lip's view + normalize.
    assert face_map.shape == audio_map.shape == (1, 512, 1, 1)
    torch.testing.assert_close(face, torch.nn.functional.normalize(face_map.view(1, -1), dim=1))
    torch.testing.assert_close(audio, torch.nn.functional.normalize(audio_map.view(1, -1), dim=1))
    np.testing.assert_allclose(audio.norm(dim=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "config", [PRESETS["smoke"].syncnet, PRESETS["quick"].syncnet, SyncNetConfig((16, 32), 0.125, 64)]
)
def test_small_configs_run(config):
    model = SyncNet(config).eval()
    with torch.no_grad():
        audio, face = model(torch.randn(3, 1, 80, 16), torch.rand(3, 15, *config.face_hw))
    assert audio.shape == face.shape == (3, config.embed_dim)


def test_compact_syncnet_standardises_its_input():
    """The offline SyncNet sees grayscale, per-stack standardised faces: a re-lit stack (gain and offset on
    every channel) embeds as the original (up to the std epsilon), a moved mouth does not."""
    config = SyncNetConfig((16, 32), 0.25, 32, arch="compact")
    assert not config.is_wav2lip and SyncNetConfig().is_wav2lip
    torch.manual_seed(0)
    compact = SyncNet(config).eval()
    faces = 0.2 + 0.5 * torch.rand(4, 15, 16, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            compact.embed_faces(0.6 * faces + 0.1), compact.embed_faces(faces), atol=2e-3, rtol=0
        )
        relit = (compact.embed_faces(0.6 * faces + 0.1) - compact.embed_faces(faces)).abs().max()
        other = (compact.embed_faces(faces.roll(3, dims=-1)) - compact.embed_faces(faces)).abs().max()
        assert other > 10 * relit  # the content still matters
        audio = compact.embed_audio(torch.rand(4, 1, 80, 16) * 8 - 4)
    assert audio.shape == (4, 32)
    assert compact.face_encoder[0].conv_block[0].in_channels == 5  # five grayscale frames
    with pytest.raises(ValueError, match="arch"):
        SyncNet(SyncNetConfig((16, 32), 0.25, 32, arch="resnet"))


def test_negatives_are_the_same_window_shifted_by_5_to_15_frames():
    labels, shifts = [], []
    for it in range(50):
        starts, audio, lab = sample_batch(np.random.default_rng([0, it]), 40, 16)
        assert np.all(audio[lab == 1] == starts[lab == 1]) and np.all((audio >= 0) & (audio < 40))
        shifts += list(np.abs(audio - starts)[lab == 0])
        labels += list(lab)
    assert 0.4 < np.mean(labels) < 0.6
    assert min(shifts) == MIN_NEGATIVE_SHIFT and max(shifts) == MAX_NEGATIVE_SHIFT


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="too small"):
        SyncNet(SyncNetConfig((8, 8), 0.125, 32))
    model = SyncNet(SyncNetConfig((16, 32), 0.125, 32))
    with pytest.raises(ValueError, match="face stack"):
        model.embed_faces(torch.rand(2, 15, 48, 96))
    with pytest.raises(ValueError, match="mel windows"):
        model.embed_audio(torch.rand(2, 1, 80, 20))


def test_lipsync_expert_loads_from_the_weights_cache(weights_cache):
    with pytest.raises(WeightsMissingError, match="lipsync_expert"):
        load_lipsync_expert()
    source = SyncNet().eval()
    with torch.no_grad():
        for p in source.parameters():
            p.uniform_(-0.1, 0.1)
    # Wav2Lip saves {"state_dict", "optimizer", "global_step", ...}, sometimes from DataParallel.
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 7, "global_epoch": 1}, weights_cache / "lipsync_expert.pth")
    from etlib import weights

    weights.accept("lipsync_expert")  # no published digest: placed by hand, then accepted
    loaded = load_lipsync_expert()
    assert loaded.name == "lipsync_expert" and not loaded.training
    for k, v in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    with pytest.raises(FileNotFoundError):
        load_wav2lip_checkpoint(weights_cache / "missing.pth")


def test_cosine_bce_loss_values():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    v = torch.tensor([[1.0, 1.0], [1.0, 1.0]]) / 2**0.5  # cosine 0.7071
    loss = cosine_bce_loss(a, v, torch.tensor([1.0, 0.0]))
    expected = -(np.log(2**-0.5) + np.log(1 - 2**-0.5)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_face_stack_layout_is_bgr_frame_major():
    frames = np.zeros((6, 4, 8, 3), np.uint8)
    for t in range(6):
        frames[t, ..., 0] = 10 * t  # R
        frames[t, ..., 2] = 100 + t  # B
    chw = to_bgr_chw(frames)
    stacks = stack_windows(chw, torch.tensor([0, 1]))
    assert stacks.shape == (2, 15, 4, 8)
    # Window 1, frame offset 2 -> video frame 3: channels 6 (B), 7 (G), 8 (R).
    assert float(stacks[1, 6, 0, 0]) == pytest.approx(103 / 255)
    assert float(stacks[1, 8, 0, 0]) == pytest.approx(30 / 255)
    torch.testing.assert_close(
        face_stacks(torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255), stack_windows(chw, torch.arange(2))
    )


# ----------------------------------------------------------------------------------------------
# Scores: syncnet_python's definition
# ----------------------------------------------------------------------------------------------


def naive_mean_distances(face: np.ndarray, audio: np.ndarray, vshift: int) -> np.ndarray:
    """Mean over windows i of |face_i - audio_{i + k - vshift}| with zero rows outside (calc_pdist)."""
    n, d = face.shape
    out = []
    for k in range(2 * vshift + 1):
        dists = []
        for i in range(n):
            j = i + k - vshift
            other = audio[j] if 0 <= j < n else np.zeros(d)
            dists.append(np.linalg.norm(face[i] - other + 1e-6))  # pairwise_distance adds eps
        out.append(np.mean(dists))
    return np.array(out)


def test_scores_follow_syncnet_python_definition():
    rng = np.random.default_rng(0)
    face = rng.standard_normal((40, 16))
    face /= np.linalg.norm(face, axis=1, keepdims=True)
    lag = 3
    audio = np.roll(face, lag, axis=0)  # audio window j shows video window j - 3: the audio lags
    audio[:lag] = rng.standard_normal((lag, 16)) / 4
    f, a = torch.tensor(face, dtype=torch.float32), torch.tensor(audio, dtype=torch.float32)
    expected = naive_mean_distances(face, audio, vshift=5)
    scores = scores_from_embeddings(f, a, vshift=5, syncnet_name="test")
    np.testing.assert_allclose(scores.mean_distances, expected, rtol=1e-5)
    assert scores.sync_e == pytest.approx(expected.min(), rel=1e-5)
    assert scores.sync_c == pytest.approx(np.median(expected) - expected.min(), rel=1e-4)
    assert scores.av_offset == -lag and scores.offsets[np.argmin(expected)] == -lag
    assert scores.syncnet == "test" and scores.n_windows == 40
    assert len(calc_pdist(f, a, vshift=5)) == 40


# ----------------------------------------------------------------------------------------------
# Eq. 9 and differentiable crops
# ----------------------------------------------------------------------------------------------


def test_sync_loss_is_squared_l2_mean():
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    assert float(sync_loss(a, b)) == pytest.approx(float(((a - b) ** 2).sum(1).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="shapes"):
        sync_loss(a, b[:, :4])


def test_lower_half_crop_is_exact_and_downsamples_by_averaging():
    img = torch.rand(2, 3, 16, 32)
    full_box = torch.tensor([0.0, 0.0, 32.0, 16.0])
    torch.testing.assert_close(lower_half_crops(img, full_box, out_hw=(8, 32)), img[:, :, 8:])
    half = lower_half_crops(img, full_box, out_hw=(4, 16))
    torch.testing.assert_close(half, torch.nn.functional.avg_pool2d(img[:, :, 8:], 2))
    # A box in pixel units picks the right region.
    crop = lower_half_crops(img, torch.tensor([8.0, 4.0, 24.0, 12.0]), out_hw=(4, 16))
    torch.testing.assert_close(crop, img[:, :, 8:12, 8:24])


def test_face_box_from_landmarks_is_a_square_around_the_points():
    pts = np.array([[[10.0, 20.0], [50.0, 30.0], [30.0, 80.0]]])
    box = face_box_from_landmarks(pts, margin=0.0)[0]
    torch.testing.assert_close(box, torch.tensor([0.0, 20.0, 60.0, 80.0]))


def test_mouth_crops_follow_the_landmarks():
    frames = np.zeros((6, 64, 64, 3), np.uint8)
    frames[:, 40:, :, 0] = 200  # red below row 40
    pts = np.array([[16.0, 16.0], [48.0, 16.0], [32.0, 48.0]])
    landmarks = np.stack([pts + [t % 2, 0] for t in range(6)])  # +-1 px jitter is smoothed away
    crops = mouth_crops(frames, landmarks, out_hw=(16, 32), margin=0.0)
    assert crops.shape == (6, 16, 32, 3) and crops.dtype == np.uint8
    # Lower half of the box [16.5, 16, 48.5, 48] covers rows 32-48: red from row 40 on, i.e. crop row 8.
    assert np.all(crops[:, 9:, :, 0] == 200) and np.all(crops[:, :7, :, 0] == 0)
    boxes = smooth_boxes(face_box_from_landmarks(landmarks, 0.0), window=5)
    torch.testing.assert_close(boxes[0, 0], torch.tensor(16.4))  # mean of 16, 17, 16, 17, 16


def test_eq9_gradient_reaches_the_rendered_mouth_only():
    syncnet = freeze(SyncNet(SyncNetConfig((16, 32), 0.125, 32)))
    rendered = torch.rand(5, 3, 64, 64, requires_grad=True)
    box = torch.tensor([16.0, 16.0, 48.0, 48.0])
    crops = lower_half_crops(rendered, box, out_hw=(16, 32))
    mel = mel_window_for_frame(log_mel(np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1), 0)
    loss = eq9_sync_loss(syncnet, crops, mel)
    loss.backward()
    grad = rendered.grad.abs().sum(dim=(0, 1))
    assert loss.item() > 0 and grad[32:48, 16:48].sum() > 0
    assert float(grad[:30].sum()) == 0.0 and float(grad[:, :15].sum()) == 0.0  # outside the mouth box
    assert all(p.grad is None for p in syncnet.parameters())


# ----------------------------------------------------------------------------------------------
# Training on a synthetic talking clip
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_lowers_the_loss(trained):
    assert trained.iterations == 120 and len(trained.losses) == 120
    assert np.mean(trained.losses[-30:]) < np.mean(trained.losses[:10]) - 0.08
    assert trained.model.name == "syncnet:offline-trained(subject=synthetic)"


@pytest.mark.slow
def test_trained_syncnet_finds_the_offset_on_held_out_clips(trained):
    hits = 0
    for seed in range(1, 6):
        wave, frames = talking_clip(60, seed=100 + seed)
        scores = sync_scores(frames, log_mel(wave), trained.model)
        hits += abs(scores.av_offset) <= 1
        assert scores.syncnet == "syncnet:offline-trained(subject=synthetic)"
    assert hits >= 4


@pytest.mark.slow
def test_shifted_and_mismatched_audio(trained):
    wave, frames = talking_clip(80, seed=200)
    lag = 10
    delayed = np.concatenate([np.zeros(lag * SR // FPS, np.float32), wave])[: len(wave)]
    other_wave, _ = talking_clip(80, seed=201)
    true = sync_scores(frames, log_mel(wave), trained.model)
    shifted = sync_scores(frames, log_mel(delayed), trained.model)
    mismatched = sync_scores(frames, log_mel(other_wave), trained.model)
    assert abs(shifted.av_offset + lag) <= 1  # audio lagging by 10 frames -> offset -10
    assert true.sync_c > mismatched.sync_c and true.sync_e < mismatched.sync_e
    assert true.sync_c > 0.05


def test_checkpoint_resume_continues_exactly(tmp_path):
    wave, frames = talking_clip(40, seed=3)
    mel = log_mel(wave)
    kwargs = dict(batch_size=4, width=0.125, embed_dim=16, progress=False, checkpoint_every=2, seed=5)
    straight = train_syncnet(frames, mel, iterations=4, checkpoint_path=tmp_path / "a.pt", **kwargs)
    train_syncnet(frames, mel, iterations=2, checkpoint_path=tmp_path / "b.pt", **kwargs)
    resumed = train_syncnet(frames, mel, iterations=4, checkpoint_path=tmp_path / "b.pt", **kwargs)
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-5)
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=1e-4, atol=1e-6)
    loaded = load_syncnet(tmp_path / "a.pt")
    assert loaded.name == straight.model.name and loaded.config == straight.model.config
    with pytest.raises(ValueError, match="config"):
        train_syncnet(frames, mel, iterations=4, checkpoint_path=tmp_path / "a.pt", **{**kwargs, "width": 0.25})


def test_training_rejects_too_short_clips():
    wave, frames = talking_clip(8, seed=4)
    with pytest.raises(ValueError, match="too little data"):
        train_syncnet(frames, log_mel(wave), iterations=1, progress=False)
    with pytest.raises(ValueError, match="no frames"):
        train_syncnet(frames[:0], log_mel(wave), iterations=1, progress=False)
    with pytest.raises(ValueError, match="log-mel"):
        train_syncnet(frames, log_mel(wave).T, iterations=1, progress=False)

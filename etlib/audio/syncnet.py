"""SyncNet [14] in the style of Wav2Lip's lip-sync expert: the S_I and S_A of Eq. 9.

Two encoders map five stacked lower-half face crops (15 channels, BGR, frame-major: ``f0.B f0.G f0.R
f1.B ...``, values in [0, 1]) and the 80 x 16 log-mel window of the same 0.2 s
(:mod:`etlib.audio.features`) to L2-normalised 512-d embeddings. Their cosine similarity, read as a
probability, is trained with binary cross-entropy ("cosine-BCE", Wav2Lip's ``color_syncnet_train.py``).

At the default size (``face_hw=(48, 96)``, the lower half of a 96 x 96 face, ``width=1``,
``arch="wav2lip"``) the modules and state-dict keys are those of Wav2Lip's ``models/syncnet.py``
``SyncNet_color``, so ``lipsync_expert.pth`` loads as is (:func:`load_lipsync_expert`).

Without the pretrained file, :func:`train_syncnet` trains one on the subject's own video: in-sync
windows are positives, the same video window with audio shifted by 5-15 frames the (hard) negatives.
That offline SyncNet uses ``arch="compact"``: the same 15-channel input, turned into five grayscale
frames standardised per stack (mean 0, std 1) and a mel window scaled to [-1, 1], then four stride-2
stages. On the sample subject, Wav2Lip's layout on raw [0, 1] colour with random far negatives stayed near
chance (loss 0.68 after 1500 iterations); the compact one reaches 0.36 in 600 and finds the offset of every
held-out window (``etlib.evaluation.syncnet_check``). Either encoder's output map is average-pooled to 1 x 1 (a
no-op for Wav2Lip's layout at its default size).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from etlib.audio.features import MAX_ABS_VALUE, MEL_FPS, SYNC_WINDOW, mel_start
from etlib.config import SyncNetConfig

FRAMES_PER_WINDOW = 5  # video frames in one SyncNet window (0.2 s at 25 fps)
MIN_NEGATIVE_SHIFT = 5  # frames: a negative's audio never overlaps the positive window
MAX_NEGATIVE_SHIFT = 15  # frames: hard negatives come from the offsets Sync-C searches (+-15)
ARCHS = ("wav2lip", "compact")
CHECKPOINT_FORMAT = "etlib.syncnet/1"

# (in, out, kernel, stride, padding, residual) of Wav2Lip's SyncNet_color, in module order.
_FACE_LAYERS: tuple[tuple[int, int, int, int | tuple[int, int], int, bool], ...] = (
    (15, 32, 7, 1, 3, False),
    (32, 64, 5, (1, 2), 1, False),
    (64, 64, 3, 1, 1, True),
    (64, 64, 3, 1, 1, True),
    (64, 128, 3, 2, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 128, 3, 1, 1, True),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, 2, 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 256, 3, 1, 1, True),
    (256, 512, 3, 2, 1, False),
    (512, 512, 3, 1, 1, True),
    (512, 512, 3, 1, 1, True),
    (512, 512, 3, 2, 1, False),
    (512, 512, 3, 1, 0, False),  # "valid" conv: 3x3 -> 1x1 at the default size
    (512, 512, 1, 1, 0, False),
)
_AUDIO_LAYERS: tuple[tuple[int, int, int, int | tuple[int, int], int, bool], ...] = (
    (1, 32, 3, 1, 1, False),
    (32, 32, 3, 1, 1, True),
    (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False),
    (64, 64, 3, 1, 1, True),
    (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False),
    (512, 512, 1, 1, 0, False),
)
#: The offline SyncNet: grayscale, standardised input; four stride-2 stages with one residual block each.
_COMPACT_FACE_LAYERS: tuple[tuple[int, int, int, int | tuple[int, int], int, bool], ...] = (
    (FRAMES_PER_WINDOW, 32, 5, 2, 2, False),
    (32, 64, 3, 2, 1, False),
    (64, 64, 3, 1, 1, True),
    (64, 128, 3, 2, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, 2, 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 512, 1, 1, 0, False),
)
_COMPACT_AUDIO_LAYERS: tuple[tuple[int, int, int, int | tuple[int, int], int, bool], ...] = (
    (1, 32, 3, 1, 1, False),
    (32, 64, 3, 2, 1, False),
    (64, 64, 3, 1, 1, True),
    (64, 128, 3, 2, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, 2, 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 512, 1, 1, 0, False),
)
_LAYERS = {"wav2lip": (_FACE_LAYERS, _AUDIO_LAYERS), "compact": (_COMPACT_FACE_LAYERS, _COMPACT_AUDIO_LAYERS)}


class ConvBlock(nn.Module):
    """Conv -> BatchNorm (-> + input) -> ReLU; Wav2Lip's ``models/conv.py`` ``Conv2d`` (same keys)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


def _encoder(layers, width: float, embed_dim: int, in_hw: tuple[int, int] | None, name: str) -> nn.Sequential:
    """Build one encoder from a layer table, scaling hidden channels by ``width``.

    When ``in_hw`` is given (the face encoder) the "valid" 3x3 conv gets padding 1 wherever the map
    is already smaller than 3x3, so small crops still work.
    """

    def channels(c: int) -> int:
        return max(4, int(round(c * width)))

    blocks = []
    h, w = in_hw if in_hw is not None else (16, 16)
    if min(h, w) < 16:
        raise ValueError(f"{name} input {in_hw} is too small: use crops of at least 16 x 16 pixels (height, width)")
    for i, (cin, cout, k, s, p, res) in enumerate(layers):
        cin = cin if i == 0 else channels(cin)
        cout = embed_dim if i == len(layers) - 1 else channels(cout)
        sh, sw = _pair(s)
        if in_hw is not None:
            if p == 0 and k == 3 and min(h, w) < 3:
                p = 1
            h, w = _out_size(h, k, sh, p), _out_size(w, k, sw, p)
        blocks.append(ConvBlock(cin, cout, k, s, p, res))
    return nn.Sequential(*blocks)


class SyncNet(nn.Module):
    """Lip-sync expert: ``face_encoder`` (S_I) and ``audio_encoder`` (S_A) of Eq. 9.

    ``forward(audio, faces)`` takes mel windows ``(B, 1, 80, 16)`` and face stacks ``(B, 15, h, w)``
    and returns ``(audio_embedding, face_embedding)``, each ``(B, embed_dim)`` and unit-length, in
    Wav2Lip's order, whatever ``config.arch``. ``name`` says which SyncNet this is; metrics report it
    next to their numbers.
    """

    def __init__(self, config: SyncNetConfig | None = None, name: str = "syncnet:untrained"):
        super().__init__()
        config = config or SyncNetConfig()  # Wav2Lip's expert
        if config.arch not in _LAYERS:
            raise ValueError(f"unknown SyncNet arch {config.arch!r}: choose one of {ARCHS}")
        self.config = config
        self.name = name
        face_layers, audio_layers = _LAYERS[config.arch]
        self.face_encoder = _encoder(face_layers, config.width, config.embed_dim, tuple(config.face_hw), "face")
        self.audio_encoder = _encoder(audio_layers, config.width, config.embed_dim, None, "audio")

    def _face_input(self, faces: torch.Tensor) -> torch.Tensor:
        """Wav2Lip: the BGR stack as is. Compact: five grayscale frames, standardised per stack, so the
        encoder sees the mouth's shape rather than the subject's lighting."""
        if self.config.arch == "wav2lip":
            return faces
        bgr = faces.reshape(faces.shape[0], FRAMES_PER_WINDOW, 3, *faces.shape[-2:])
        gray = 0.114 * bgr[:, :, 0] + 0.587 * bgr[:, :, 1] + 0.299 * bgr[:, :, 2]  # ITU-R BT.601 luma
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)
        std = gray.std(dim=(1, 2, 3), keepdim=True)
        return (gray - mean) / (std + 1e-3)

    def _audio_input(self, mels: torch.Tensor) -> torch.Tensor:
        """Wav2Lip: the [-4, 4] log-mel as is. Compact: scaled to [-1, 1]."""
        return mels if self.config.arch == "wav2lip" else mels / MAX_ABS_VALUE

    def embed_faces(self, faces: torch.Tensor) -> torch.Tensor:
        """S_I: ``(B, 15, h, w)`` five stacked BGR lower-half crops in [0, 1] -> ``(B, D)`` unit vectors."""
        expected = (3 * FRAMES_PER_WINDOW, *self.config.face_hw)
        if faces.ndim != 4 or tuple(faces.shape[1:]) != expected:
            raise ValueError(
                f"face stack must be (B, {expected[0]}, {expected[1]}, {expected[2]}), got {tuple(faces.shape)}; "
                "build it with etlib.audio.sync_metrics.face_stacks"
            )
        return F.normalize(self.face_encoder(self._face_input(faces)).mean(dim=(2, 3)), p=2, dim=1)

    def embed_audio(self, mels: torch.Tensor) -> torch.Tensor:
        """S_A: ``(B, 1, 80, 16)`` (or ``(B, 80, 16)``) mel windows -> ``(B, D)`` unit vectors."""
        if mels.ndim == 3:
            mels = mels.unsqueeze(1)
        if mels.ndim != 4 or tuple(mels.shape[1:]) != (1, 80, SYNC_WINDOW):
            raise ValueError(f"mel windows must be (B, 1, 80, {SYNC_WINDOW}), got {tuple(mels.shape)}")
        return F.normalize(self.audio_encoder(self._audio_input(mels)).mean(dim=(2, 3)), p=2, dim=1)

    def forward(self, audio: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_audio(audio), self.embed_faces(faces)


def cosine_bce_loss(audio_emb: torch.Tensor, face_emb: torch.Tensor, in_sync: torch.Tensor) -> torch.Tensor:
    """Wav2Lip's SyncNet loss: BCE of the cosine similarity (in [0, 1] after ReLU features) against
    the in-sync label."""
    sim = F.cosine_similarity(audio_emb, face_emb).clamp(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(sim, in_sync.to(sim.dtype))


def freeze(syncnet: SyncNet) -> SyncNet:
    """Evaluation mode, no parameter gradients: a fixed expert for Eq. 9 and the metrics."""
    syncnet.eval()
    for p in syncnet.parameters():
        p.requires_grad_(False)
    return syncnet


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def load_wav2lip_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyncNet:
    """Load a Wav2Lip lip-sync expert file (``{"state_dict": ...}``, optional ``module.`` prefixes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lip-sync expert checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    state = {k.removeprefix("module."): v for k, v in state.items()}
    with torch.device("cpu"):  # built where its weights were loaded, then moved
        model = SyncNet(SyncNetConfig(), name="lipsync_expert")
    model.load_state_dict(state, strict=True)
    return freeze(model.to(device))


def load_lipsync_expert(device: str | torch.device = "cpu") -> SyncNet:
    """Wav2Lip's pretrained ``lipsync_expert.pth`` through the weights registry.

    Raises ``etlib.weights.WeightsMissingError`` (naming the file, source, licence and the download
    command) when it is absent; nothing is downloaded here.
    """
    from etlib.weights import ensure

    return load_wav2lip_checkpoint(ensure("lipsync_expert"), device=device)


def load_syncnet(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyncNet:
    """Load a SyncNet saved by :func:`train_syncnet` (frozen, evaluation mode)."""
    ckpt = _read_checkpoint(Path(path))
    with torch.device("cpu"):  # built where its weights were loaded, then moved
        model = SyncNet(SyncNetConfig(**ckpt["config"]), name=ckpt["name"])
    model.load_state_dict(ckpt["state_dict"])
    return freeze(model.to(device))


# ----------------------------------------------------------------------------------------------
# Training on the subject's own video
# ----------------------------------------------------------------------------------------------


@dataclass
class SyncNetTraining:
    """Result of :func:`train_syncnet`: the frozen model and its loss per iteration."""

    model: SyncNet
    losses: list[float]
    iterations: int
    checkpoint_path: Path | None


def to_bgr_chw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(T, h, w, 3)`` RGB frames (uint8, or float in [0, 1]) -> ``(T, 3, h, w)`` float BGR in [0, 1]."""
    x = torch.as_tensor(np.asarray(frames), device="cpu") if not isinstance(frames, torch.Tensor) else frames
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be (T, h, w, 3) RGB, got shape {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x.flip(-1).permute(0, 3, 1, 2).contiguous()


def stack_windows(frames_bgr: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """``(T, 3, h, w)`` -> ``(N, 15, h, w)``: frames ``s .. s+4`` of each start ``s``, frame-major."""
    idx = starts[:, None] + torch.arange(FRAMES_PER_WINDOW, device=starts.device)[None, :]
    win = frames_bgr[idx]  # (N, 5, 3, h, w)
    return win.reshape(win.shape[0], -1, *win.shape[-2:])


def valid_window_starts(n_frames: int, n_mel_frames: int, fps: float = 25.0) -> int:
    """How many 5-frame windows have both all their video frames and a full 16-frame mel window."""
    n = 0
    while n + FRAMES_PER_WINDOW <= n_frames and mel_start(n, fps) + SYNC_WINDOW <= n_mel_frames:
        n += 1
    return n


def _read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"SyncNet checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not an etlib SyncNet checkpoint; a Wav2Lip file loads with load_wav2lip_checkpoint"
        )
    return ckpt


def _save_checkpoint(path: Path, model: SyncNet, opt: torch.optim.Optimizer, it: int, losses, seed: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "config": dataclasses.asdict(model.config),
            "name": model.name,
            "state_dict": model.state_dict(),
            "optimizer": opt.state_dict(),
            "iteration": it,
            "losses": list(losses),
            "seed": seed,
        },
        tmp,
    )
    os.replace(tmp, path)  # atomic: an interrupted save never corrupts the last good checkpoint


def _sample_batch(rng: np.random.Generator, n_windows: int, batch_size: int) -> tuple[np.ndarray, ...]:
    """Video starts, audio starts and labels: half in sync, half hard negatives.

    A negative keeps its video window and takes the audio 5-15 frames earlier or later (a shift inside
    the clip): the very confusions the offset search of Sync-C must rule out. Random far-away audio is
    told apart by loudness alone (speech vs pause) and teaches little about timing.
    """
    starts = rng.integers(0, n_windows, size=batch_size)
    in_sync = rng.random(batch_size) < 0.5
    audio = starts.copy()
    shifts = np.arange(MIN_NEGATIVE_SHIFT, MAX_NEGATIVE_SHIFT + 1)
    shifts = np.concatenate([-shifts, shifts])
    for i in np.nonzero(~in_sync)[0]:
        # n_windows >= 2 * MIN_NEGATIVE_SHIFT + 1 (train_syncnet checks), so some shift always fits.
        fits = shifts[(starts[i] + shifts >= 0) & (starts[i] + shifts < n_windows)]
        audio[i] = starts[i] + rng.choice(fits)
    return starts, audio, in_sync.astype(np.float32)


def train_syncnet(
    frames_lower_half: np.ndarray | Sequence[np.ndarray],
    mel: np.ndarray,
    fps: float = 25.0,
    iterations: int = 600,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint_path: str | os.PathLike | None = None,
    progress: bool = True,
    width: float = 0.25,
    embed_dim: int = 256,
    arch: str = "compact",
    subject: str = "subject",
    checkpoint_every: int = 100,
    augment: bool = True,
) -> SyncNetTraining:
    """Train a SyncNet on one subject's video (the offline stand-in for the pretrained expert [14]).

    ``frames_lower_half``: ``(T, h, w, 3)`` RGB lower-half face crops at 25 fps (array, or any sequence
    of frames, e.g. an h5py dataset), already at the SyncNet crop size; ``mel``: the ``(80, M)``
    :func:`etlib.audio.features.log_mel` of the same clip. Each step draws ``batch_size`` 5-frame
    windows; half get their own audio (label 1), half the audio 5-15 frames away (label 0); the loss
    is :func:`cosine_bce_loss` (Adam). ``arch``, ``width`` and ``embed_dim`` size the network
    (:class:`SyncNetConfig`; ``"compact"`` learns on one subject within a few hundred iterations).
    ``augment`` jitters the audio window by up to one mel frame (mirroring and re-lighting the faces as
    well slowed learning on the sample subject: loss 0.64 against 0.55 after 100 iterations). Batches
    depend only on ``(seed, iteration)``, so a run resumed from ``checkpoint_path`` (saved every
    ``checkpoint_every`` steps and at the end) continues exactly.
    """
    if iterations < 0 or batch_size < 2:
        raise ValueError(f"need iterations >= 0 and batch_size >= 2, got {iterations}, {batch_size}")
    if len(frames_lower_half) == 0:
        raise ValueError("no frames given: pass (T, h, w, 3) lower-half crops (etlib.audio.sync_metrics.mouth_crops)")
    if mel.ndim != 2 or mel.shape[0] != 80:
        raise ValueError(f"mel must be the (80, M) log-mel of the clip (etlib.audio.features.log_mel), got {mel.shape}")
    first = np.asarray(frames_lower_half[0])
    if first.ndim != 3 or first.shape[-1] != 3:
        raise ValueError(f"frames must be (h, w, 3) RGB lower-half crops, got a frame of shape {first.shape}")
    config = SyncNetConfig(face_hw=tuple(int(v) for v in first.shape[:2]), width=width, embed_dim=embed_dim, arch=arch)
    frames = to_bgr_chw(np.stack([np.asarray(f) for f in frames_lower_half]))
    n_windows = valid_window_starts(len(frames), mel.shape[1], fps)
    if n_windows < 2 * MIN_NEGATIVE_SHIFT + 1:
        raise ValueError(
            f"too little data to train SyncNet: {len(frames)} frames and {mel.shape[1] / MEL_FPS:.2f} s of audio "
            f"give {n_windows} windows; need at least {2 * MIN_NEGATIVE_SHIFT + 1} (about half a second)"
        )
    mel_t = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))
    mel_starts = np.array([mel_start(i, fps) for i in range(n_windows)])

    torch.manual_seed(seed)
    with torch.device("cpu"):  # the CPU generator draws the initial weights: the same net on every device
        model = SyncNet(config, name=f"syncnet:offline-trained(subject={subject})")
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    start_it = 0
    ckpt_path = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = _read_checkpoint(ckpt_path)
        if SyncNetConfig(**ckpt["config"]) != config:
            raise ValueError(
                f"checkpoint {ckpt_path} has SyncNet config {ckpt['config']}, this run asks for "
                f"{dataclasses.asdict(config)}; delete the checkpoint or match the settings"
            )
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        start_it, losses = int(ckpt["iteration"]), list(ckpt["losses"])

    model.train()
    bar = tqdm(range(start_it, iterations), desc="SyncNet", disable=not progress, initial=start_it, total=iterations)
    for it in bar:
        rng = np.random.default_rng([seed, it])
        v_starts, a_starts, labels = _sample_batch(rng, n_windows, batch_size)
        faces = stack_windows(frames, torch.from_numpy(v_starts))
        starts = mel_starts[a_starts]
        if augment:
            # Up to one mel frame (12.5 ms) of jitter: well inside a video frame, so labels hold.
            starts = np.clip(starts + rng.integers(-1, 2, size=len(starts)), 0, mel_t.shape[1] - SYNC_WINDOW)
        audio = torch.stack([mel_t[:, s : s + SYNC_WINDOW] for s in starts]).unsqueeze(1)
        faces, audio = faces.to(device), audio.to(device)
        audio_emb, face_emb = model(audio, faces)
        loss = cosine_bce_loss(audio_emb, face_emb, torch.from_numpy(labels).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if ckpt_path is not None and (it + 1) % checkpoint_every == 0:
            _save_checkpoint(ckpt_path, model, opt, it + 1, losses, seed)
    if ckpt_path is not None and start_it < iterations:
        _save_checkpoint(ckpt_path, model, opt, iterations, losses, seed)
    return SyncNetTraining(freeze(model), losses, max(iterations, start_it), ckpt_path)

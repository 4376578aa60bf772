"""Lip-sync scores (Sync-E, Sync-C, AV offset; Tables 1-3) and the sync loss of Eq. 9.

Scores follow ``syncnet_python``'s ``SyncNetInstance.evaluate`` exactly: every 5-frame window gets a
face embedding and an audio embedding; ``calc_pdist`` pads the audio embeddings with ``vshift`` zero
rows at both ends and, for every video window ``i`` and offset index ``k`` in ``0 .. 2 vshift``,
measures the Euclidean distance between face ``i`` and padded audio ``i + k``; averaging over the
windows gives one mean distance per offset. Then

* Sync-E (``minval``) = the smallest mean distance,
* Sync-C (``conf``)   = median of the mean distances minus that minimum,
* AV offset           = ``vshift - argmin``: the best match pairs video window ``i`` with audio window
  ``i - offset``, so audio lagging the video by ``d`` frames scores ``-d``.

Our SyncNets give unit-length embeddings, so distances lie in [0, 2] (a zero pad row is at distance
~1). Every result names the SyncNet that produced it: numbers from an offline-trained SyncNet are
not comparable with the paper's, which come from the pretrained one.

:func:`sync_scores` scores with a Wav2Lip-style :class:`~etlib.audio.syncnet.SyncNet` (the lip-sync
expert or one trained offline); :func:`sync_scores_v2` with ``syncnet_python``'s pretrained SyncNet
v2 on MFCCs, the evaluator behind the paper's tables, when its weights are present.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from etlib.audio.features import mel_windows, syncnet_mfcc
from etlib.audio.syncnet import FRAMES_PER_WINDOW, SyncNet, stack_windows, to_bgr_chw, valid_window_starts
from etlib.audio.syncnet_v2 import SyncNetV2
from etlib.base import face_box


@dataclass(frozen=True)
class SyncScores:
    """Sync-E (lower is better), Sync-C (higher is better) and the AV offset of one clip."""

    sync_e: float
    sync_c: float
    av_offset: int
    mean_distances: np.ndarray  # (2 vshift + 1,), index k is offset vshift - k
    n_windows: int
    syncnet: str  # which SyncNet produced the numbers, e.g. "lipsync_expert"

    @property
    def offsets(self) -> np.ndarray:
        vshift = (len(self.mean_distances) - 1) // 2
        return vshift - np.arange(len(self.mean_distances))


def calc_pdist(feat1: torch.Tensor, feat2: torch.Tensor, vshift: int = 10) -> list[torch.Tensor]:
    """``syncnet_python``'s ``calc_pdist``: for each row ``i`` of ``feat1`` the distances to rows
    ``i - vshift .. i + vshift`` of ``feat2`` (zero rows beyond its ends), ``2 vshift + 1`` each."""
    win_size = vshift * 2 + 1
    feat2p = F.pad(feat2, (0, 0, vshift, vshift))
    return [
        F.pairwise_distance(feat1[[i], :].repeat(win_size, 1), feat2p[i : i + win_size, :]) for i in range(len(feat1))
    ]


@torch.no_grad()
def clip_embeddings(
    frames_lower_half: np.ndarray | torch.Tensor,
    mel: np.ndarray,
    syncnet: SyncNet,
    fps: float = 25.0,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Face and audio embeddings ``(N, D)`` of every complete 5-frame window of a clip.

    ``frames_lower_half``: ``(T, h, w, 3)`` RGB lower-half crops (uint8 or float in [0, 1]) at the
    SyncNet's ``config.face_hw``; ``mel``: ``(80, M)`` log-mel of the clip's audio.
    """
    crops = frames_lower_half
    if not isinstance(crops, torch.Tensor):
        crops = torch.from_numpy(np.ascontiguousarray(crops))  # no copy: a whole clip's crops stay as they came
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"frames must be (T, h, w, 3) RGB, got shape {tuple(crops.shape)}")
    if tuple(crops.shape[1:3]) != tuple(syncnet.config.face_hw):
        raise ValueError(
            f"crops are {tuple(crops.shape[1:3])} but {syncnet.name} expects {tuple(syncnet.config.face_hw)} "
            "(height, width); cut them with lower_half_crops(..., out_hw=syncnet.config.face_hw)"
        )
    n = valid_window_starts(len(crops), mel.shape[1], fps)
    if n < 1:
        raise ValueError(f"clip too short for SyncNet: {len(crops)} frames, need at least {FRAMES_PER_WINDOW}")
    device = next(syncnet.parameters()).device
    was_training = syncnet.training
    syncnet.eval()
    face_emb, audio_emb = [], []
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        # one batch of windows at a time in float: the frames lo .. hi + 3 they read
        frames = to_bgr_chw(crops[lo : hi + FRAMES_PER_WINDOW - 1]).to(device)
        starts = torch.arange(0, hi - lo, device=device)
        face_emb.append(syncnet.embed_faces(stack_windows(frames, starts)).cpu())
        starts = torch.arange(lo, hi, device="cpu")
        audio = torch.from_numpy(mel_windows(mel, starts.tolist(), fps)).to(device)
        audio_emb.append(syncnet.embed_audio(audio).cpu())
    syncnet.train(was_training)
    return torch.cat(face_emb), torch.cat(audio_emb)


def scores_from_embeddings(
    face_emb: torch.Tensor, audio_emb: torch.Tensor, vshift: int = 15, syncnet_name: str = "unknown"
) -> SyncScores:
    """Sync-E, Sync-C and AV offset from per-window embeddings (``SyncNetInstance.evaluate``)."""
    dists = calc_pdist(face_emb, audio_emb, vshift=vshift)
    return scores_from_distances(torch.mean(torch.stack(dists, 1), 1), vshift, len(face_emb), syncnet_name)


def scores_from_distances(mdist: torch.Tensor, vshift: int, n_windows: int, syncnet_name: str) -> SyncScores:
    """Sync-E = min over offsets of the mean distance, Sync-C = median - min, AV offset = vshift - argmin."""
    minval, minidx = torch.min(mdist, 0)
    return SyncScores(
        sync_e=float(minval),
        sync_c=float(torch.median(mdist) - minval),
        av_offset=int(vshift - minidx),
        mean_distances=mdist.numpy(),
        n_windows=n_windows,
        syncnet=syncnet_name,
    )


def sync_scores(
    frames_lower_half: np.ndarray | torch.Tensor,
    mel: np.ndarray,
    syncnet: SyncNet,
    fps: float = 25.0,
    vshift: int = 15,
) -> SyncScores:
    """Sync-E / Sync-C / AV offset of a clip (Tables 1-3), searching offsets in ``[-vshift, vshift]``."""
    face_emb, audio_emb = clip_embeddings(frames_lower_half, mel, syncnet, fps)
    return scores_from_embeddings(face_emb, audio_emb, vshift=vshift, syncnet_name=syncnet.name)


# ----------------------------------------------------------------------------------------------
# Eq. 9 and the differentiable mouth crops it needs
# ----------------------------------------------------------------------------------------------


def sync_loss(image_embeddings: torch.Tensor, audio_embeddings: torch.Tensor) -> torch.Tensor:
    """Eq. 9: ``L_sync = ||S_I(I_hat) - S_A(A)||_2^2``, averaged over the batch."""
    if image_embeddings.shape != audio_embeddings.shape:
        raise ValueError(f"embedding shapes differ: {tuple(image_embeddings.shape)} vs {tuple(audio_embeddings.shape)}")
    return (image_embeddings - audio_embeddings).pow(2).sum(dim=-1).mean()


def face_box_from_landmarks(landmarks: np.ndarray | torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Square face boxes ``(..., 4)`` = ``(x0, y0, x1, y1)`` in pixels around 68-point landmarks
    ``(..., 68, 2)`` (x, y), the side enlarged by ``margin`` in all (:func:`etlib.base.face_box` with half the
    margin a side); the lower half holds the mouth."""
    if torch.is_tensor(landmarks):
        landmarks = landmarks.detach().cpu().numpy()
    box = face_box(np.asarray(landmarks, np.float64), margin=margin / 2)
    return torch.as_tensor(np.asarray(box), dtype=torch.float32, device="cpu")


def crop_factor(boxes: torch.Tensor | np.ndarray, out_hw: tuple[int, int]) -> int:
    """The supersampling factor of :func:`lower_half_crops` for face boxes ``(T, 4)``: the largest box sets it, so
    no crop of the batch is aliased."""
    boxes = torch.as_tensor(boxes, dtype=torch.float64, device="cpu").reshape(-1, 4)
    x0, y0, x1, y1 = boxes.unbind(-1)
    h, w = out_hw
    return max(1, int(np.ceil(float(((x1 - x0) / w).max()))), int(np.ceil(float(((y1 - y0) / 2 / h).max()))))


def lower_half_crops(
    images: torch.Tensor,
    boxes: torch.Tensor | np.ndarray | tuple,
    out_hw: tuple[int, int] = (48, 96),
    factor: int | None = None,
) -> torch.Tensor:
    """Differentiable lower-half crops: ``(T, 3, H, W)`` images, face boxes ``(T, 4)`` or ``(4,)``
    ``(x0, y0, x1, y1)`` in pixels -> ``(T, 3, h, w)`` crops of rows ``(y0 + y1) / 2 .. y1``.

    Bilinear ``grid_sample`` at an integer multiple of the output size (``factor``, default :func:`crop_factor` of
    these boxes), then average pooling, so large renders are low-passed rather than aliased; gradients flow back to
    ``images``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (T, 3, H, W), got {tuple(images.shape)}")
    t, _, H, W = images.shape
    boxes = torch.as_tensor(boxes, dtype=images.dtype, device=images.device).reshape(-1, 4)
    if len(boxes) not in (1, t):
        raise ValueError(f"need one face box or one per image ({t}), got {len(boxes)}")
    boxes = boxes.expand(t, 4)
    x0, y0, x1, y1 = boxes.unbind(-1)
    if torch.any(x1 <= x0) or torch.any(y1 <= y0):
        raise ValueError("face boxes must have x1 > x0 and y1 > y0")
    h, w = out_hw
    factor = crop_factor(boxes.detach(), out_hw) if factor is None else int(factor)
    sh, sw = h * factor, w * factor
    ym = (y0 + y1) / 2
    u = (torch.arange(sw, device=images.device, dtype=images.dtype) + 0.5) / sw
    v = (torch.arange(sh, device=images.device, dtype=images.dtype) + 0.5) / sh
    xs = x0[:, None] + u[None, :] * (x1 - x0)[:, None]  # (T, sw) pixel coordinates
    ys = ym[:, None] + v[None, :] * (y1 - ym)[:, None]  # (T, sh)
    grid = torch.stack(
        [(xs / W * 2 - 1)[:, None, :].expand(t, sh, sw), (ys / H * 2 - 1)[:, :, None].expand(t, sh, sw)], dim=-1
    )
    crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.avg_pool2d(crops, factor) if factor > 1 else crops


def smooth_boxes(boxes: np.ndarray | torch.Tensor, window: int = 5) -> torch.Tensor:
    """Wav2Lip's ``get_smoothened_boxes``: each box is the mean of it and the next ``window - 1``
    (the last ``window`` near the end), so crops do not jitter from frame to frame."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device="cpu")
    out = boxes.clone()
    for i in range(len(boxes)):
        lo = min(i, max(len(boxes) - window, 0))
        out[i] = boxes[lo : lo + window].mean(dim=0)
    return out


def _smoothed_boxes(landmarks: np.ndarray, margin: float, smooth: int) -> torch.Tensor:
    boxes = face_box_from_landmarks(landmarks, margin)
    return smooth_boxes(boxes, smooth) if smooth > 1 else boxes


def _crop_batch(frames: np.ndarray, boxes: torch.Tensor, out_hw: tuple[int, int], device) -> np.ndarray:
    """``(B, H, W, 3)`` uint8 frames and their ``(B, 4)`` boxes -> ``(B, h, w, 3)`` uint8 lower-half crops, at the
    batch's one supersampling factor, one frame at a time in float (64 frames of 512 px would be 200 MB as floats)."""
    factor = crop_factor(boxes, out_hw)
    out = np.empty((len(frames), *out_hw, 3), np.uint8)
    for k in range(len(frames)):
        frame = torch.from_numpy(np.ascontiguousarray(frames[k])).to(device).permute(2, 0, 1)[None].float() / 255
        crop = lower_half_crops(frame, boxes[k : k + 1], out_hw, factor)
        out[k] = (crop[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().cpu().numpy()
    return out


def mouth_crops(
    frames: np.ndarray | Sequence[np.ndarray],
    landmarks: np.ndarray,
    out_hw: tuple[int, int] = (32, 64),
    margin: float = 0.1,
    smooth: int = 5,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """SyncNet training crops of a clip: ``(T, H, W, 3)`` uint8 RGB frames and ``(T, 68, 2)``
    landmarks -> ``(T, h, w, 3)`` uint8 lower halves of the (smoothed) landmark face boxes.

    ``frames`` may be any sequence that slices into arrays (:class:`etlib.base.LazyFrames` reads them from disk):
    only ``batch_size`` frames are in memory at once, so a long clip costs its crops, not its frames. The crops
    are cut on ``device``. :class:`MouthCropper` gives the same crops for frames that arrive one at a time."""
    if len(frames) != len(landmarks):
        raise ValueError(f"{len(frames)} frames but {len(landmarks)} landmark sets")
    boxes = _smoothed_boxes(landmarks, margin, smooth)
    out = np.empty((len(frames), *out_hw, 3), np.uint8)
    for lo in range(0, len(frames), batch_size):
        batch = np.asarray(frames[lo : lo + batch_size])
        out[lo : lo + len(batch)] = _crop_batch(batch, boxes[lo : lo + len(batch)], out_hw, device)
    return out


class MouthCropper:
    """:func:`mouth_crops` for a clip whose frames arrive one at a time (a render loop): ``add(frame)`` each
    ``(H, W, 3)`` uint8 frame in order, then ``crops()``. The boxes come from the clip's ``(T, 68, 2)`` landmarks,
    known up front; frames are cropped in the same batches as :func:`mouth_crops`, so the crops are equal, and at
    most ``batch_size`` frames are held."""

    def __init__(
        self,
        landmarks: np.ndarray,
        out_hw: tuple[int, int] = (32, 64),
        margin: float = 0.1,
        smooth: int = 5,
        batch_size: int = 64,
        device: torch.device | str = "cpu",
    ) -> None:
        self.boxes = _smoothed_boxes(landmarks, margin, smooth)
        self.out_hw, self.batch_size, self.device = tuple(out_hw), int(batch_size), device
        self.out = np.empty((len(landmarks), *self.out_hw, 3), np.uint8)
        self.done, self._pending = 0, []

    def add(self, frame: np.ndarray) -> None:
        if self.done + len(self._pending) >= len(self.out):
            raise ValueError(f"more frames than the {len(self.out)} landmark sets this cropper was given")
        self._pending.append(np.asarray(frame))
        if len(self._pending) == self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            n, lo = len(self._pending), self.done
            self.out[lo : lo + n] = _crop_batch(
                np.stack(self._pending), self.boxes[lo : lo + n], self.out_hw, self.device
            )
            self.done, self._pending = lo + n, []

    def crops(self) -> np.ndarray:
        """The ``(T, h, w, 3)`` uint8 crops of the frames added (all ``T`` of them)."""
        self._flush()
        if self.done != len(self.out):
            raise ValueError(f"{self.done} frames were added for {len(self.out)} landmark sets")
        return self.out


def face_stacks(crops_rgb: torch.Tensor) -> torch.Tensor:
    """``(T, 3, h, w)`` RGB crops in [0, 1] -> ``(T - 4, 15, h, w)`` SyncNet face stacks (BGR,
    frame-major, Wav2Lip's layout), one per complete 5-frame window; differentiable."""
    if crops_rgb.ndim != 4 or crops_rgb.shape[1] != 3 or crops_rgb.shape[0] < FRAMES_PER_WINDOW:
        raise ValueError(f"need (T >= {FRAMES_PER_WINDOW}, 3, h, w) RGB crops, got {tuple(crops_rgb.shape)}")
    bgr = crops_rgb.flip(1)
    return stack_windows(bgr, torch.arange(crops_rgb.shape[0] - FRAMES_PER_WINDOW + 1, device=bgr.device))


def eq9_sync_loss(syncnet: SyncNet, crops_rgb: torch.Tensor, mel_window: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Eq. 9 for rendered frames: five consecutive ``(5, 3, h, w)`` RGB lower-half crops of the
    rendered images and the ``(80, 16)`` mel window of the audio that drove them (or batches
    ``(B, 5, 3, h, w)`` and ``(B, 80, 16)``). Gradients reach the images only; freeze the SyncNet
    with :func:`etlib.audio.syncnet.freeze`."""
    if crops_rgb.ndim == 4:
        crops_rgb = crops_rgb.unsqueeze(0)
    if crops_rgb.ndim != 5 or crops_rgb.shape[1:3] != (FRAMES_PER_WINDOW, 3):
        raise ValueError(f"crops must be (B, 5, 3, h, w), got {tuple(crops_rgb.shape)}")
    mel = torch.as_tensor(mel_window, dtype=crops_rgb.dtype, device=crops_rgb.device)
    if mel.ndim == 2:
        mel = mel.unsqueeze(0)
    faces = crops_rgb.flip(2).reshape(crops_rgb.shape[0], -1, *crops_rgb.shape[-2:])
    with torch.no_grad():
        audio_emb = syncnet.embed_audio(mel)
    return sync_loss(syncnet.embed_faces(faces), audio_emb)


# ----------------------------------------------------------------------------------------------
# The paper's evaluator: pretrained SyncNet v2 on 224 x 224 face crops and MFCCs
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def sync_scores_v2(
    faces_224: np.ndarray | torch.Tensor,
    wave: np.ndarray | torch.Tensor,
    model: SyncNetV2,
    sr: int = 16000,
    vshift: int = 15,
    batch_size: int = 20,
) -> SyncScores:
    """Sync-E / Sync-C / AV offset exactly as ``syncnet_python``'s ``SyncNetInstance.evaluate``.

    ``faces_224``: ``(T, 224, 224, 3)`` RGB face crops at 25 fps (uint8 or 0-255 floats; the
    ``run_pipeline`` face track); ``wave``: the clip's 16 kHz audio. Windows ``0 .. min_length - 6``
    with ``min_length = min(T, floor(n_samples / 640))``, MFCC window ``4 i .. 4 i + 20``.
    """
    frames = faces_224 if isinstance(faces_224, torch.Tensor) else torch.as_tensor(np.asarray(faces_224), device="cpu")
    if frames.ndim != 4 or tuple(frames.shape[1:]) != (224, 224, 3):
        raise ValueError(f"faces must be (T, 224, 224, 3) RGB crops, got {tuple(frames.shape)}")
    video = frames.float().flip(-1).permute(3, 0, 1, 2)  # (3, T, 224, 224), BGR 0-255 like cv2.imread
    mfcc = torch.from_numpy(syncnet_mfcc(wave, sr)).float()  # (13, M)
    n_samples = len(np.asarray(wave)) if not isinstance(wave, torch.Tensor) else wave.shape[0]
    last = min(len(frames), n_samples // 640) - FRAMES_PER_WINDOW
    if last < 1:
        raise ValueError(f"clip too short for SyncNet v2: {len(frames)} frames, {n_samples} samples")
    device = next(model.parameters()).device
    model.eval()
    face_emb, audio_emb = [], []
    for lo in range(0, last, batch_size):
        idx = range(lo, min(last, lo + batch_size))
        faces = torch.stack([video[:, i : i + FRAMES_PER_WINDOW] for i in idx]).to(device)
        face_emb.append(model.embed_faces(faces).cpu())
        windows = torch.stack([mfcc[None, :, 4 * i : 4 * i + 20] for i in idx]).to(device)
        audio_emb.append(model.embed_audio(windows).cpu())
    return scores_from_embeddings(torch.cat(face_emb), torch.cat(audio_emb), vshift=vshift, syncnet_name=model.name)

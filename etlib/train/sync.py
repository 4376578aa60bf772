"""L_sync in the training stages (Eq. 9, Sec. 3.3.2): self-supervision from audio that has no video.

A sync step renders five consecutive frames driven by a speech clip (one of the TTS-curated sentences of
Sec. S5, or the subject's own audio), crops the lower half of each rendered face, and pulls SyncNet's image
embedding of that 5-frame window towards its audio embedding of the matching 80x16 mel window:

    L_sync = || S_I(I_hat) - S_A(A) ||_2^2

Poses, backgrounds and action units come from five consecutive training frames (TTS audio has no video);
only the audio features and the mel window come from the clip. The SyncNet is frozen. Five renders cost
more than a training step even when only SyncNet's window is rendered and H(mu) is shared
(``etlib.encoders.reuse_encodings``), so the term is applied every ``every`` iterations (its weight is
unchanged when it is applied: beta_6 of Eqs. S12, S14, S15).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from etlib.audio.features import log_mel, mel_window_for_frame
from etlib.audio.sync_metrics import eq9_sync_loss, face_box_from_landmarks, lower_half_crops
from etlib.audio.syncnet import SyncNet, freeze
from etlib.base import FPS, SAMPLE_RATE
from etlib.train.data import SubjectFrames

WINDOW = 5


class SyncLossTerm:
    """Callable ``(model, stage_name, sample_index, rng, deform_face) -> L_sync`` for the trainer.

    Args:
        syncnet: a (pretrained or subject-trained) SyncNet; frozen here.
        data: the subject's frames.
        clips: 16 kHz waveforms of speech without video (the curated TTS sentences); the subject's own
            training audio is used for the other half of the steps.
        every: apply the term every ``every`` iterations.
        crop_renders: render only the window SyncNet looks at (the same pixels, a fraction of the cost).
    """

    def __init__(
        self, syncnet: SyncNet, data: SubjectFrames, clips: list[np.ndarray], every: int = 4, crop_renders: bool = True
    ) -> None:
        self.syncnet = freeze(syncnet).to(data.device)
        self.crop_renders = crop_renders
        self.data = data
        self.every = max(1, int(every))
        self.name = f"L_sync (Eq. 9) with {syncnet.name}, every {self.every} iterations"
        from etlib.io import read_audio

        own = read_audio(data.subject.audio, sr=SAMPLE_RATE)
        self.sources = [(own, data.audio_features, log_mel(own))]
        for clip in clips:
            if len(clip) < SAMPLE_RATE * 0.5:
                continue
            self.sources.append((clip, data.features_for(clip, SAMPLE_RATE, FPS), log_mel(clip)))

    def applies(self, iteration: int) -> bool:
        return iteration % self.every == 0

    def to(self, device: torch.device | str) -> SyncLossTerm:
        """Put the SyncNet on ``device`` (the trainer's), where the renders it judges are; returns ``self``."""
        self.syncnet = self.syncnet.to(device)
        return self

    def __call__(
        self, model, stage_name: str, sample_index: int, rng: np.random.Generator, deform_face: bool = True
    ) -> torch.Tensor:
        """L_sync for one 5-frame window; ``deform_face`` says whether f_F is trained (it is not yet
        when the inside-mouth branch trains first)."""
        data = self.data
        k = 0 if rng.random() < 0.5 or len(self.sources) == 1 else int(rng.integers(1, len(self.sources)))
        _, feats, mel = self.sources[k]
        n_audio = len(feats)
        t0 = int(rng.integers(0, max(1, n_audio - WINDOW)))
        if k == 0:  # the subject's own audio: its own frames, in sync
            start = min(sample_index, data.n - WINDOW)
            frames = list(range(start, start + WINDOW))
            t0 = start
        else:  # TTS audio: poses and backgrounds from five consecutive training frames
            ids = data.train_ids
            j = int(rng.integers(0, max(1, len(ids) - WINDOW)))
            frames = ids[j : j + WINDOW]
        emotion = stage_name == "emotion_network"
        crops = []
        device = model.device  # the run's: the frames, the renders and the SyncNet all live there
        for offset, i in enumerate(frames):
            cond = data.condition(i, audio=feats, audio_index=min(t0 + offset, n_audio - 1)).to(device)
            background = data.background(i).to(device)
            camera, box = data.camera(i).to(device), face_box_from_landmarks(data.landmarks[i])
            if self.crop_renders:  # SyncNet sees the lower half of the face box: render just that window
                x0, y0, w, h = lower_half_window(box, camera.width, camera.height)
                camera, background = camera.crop(x0, y0, w, h), background[y0 : y0 + h, x0 : x0 + w]
                box = box - torch.tensor([x0, y0, x0, y0], dtype=box.dtype, device=box.device)
            out = model(camera, cond, background, deform_face=deform_face, emotion=emotion)
            crops.append(lower_half_crops(out.image.permute(2, 0, 1)[None], box, tuple(self.syncnet.config.face_hw)))
        crops = torch.cat(crops)
        window = mel_window_for_frame(mel, t0, FPS)
        return eq9_sync_loss(self.syncnet, crops, window)


def lower_half_window(box: torch.Tensor, width: int, height: int, margin: int = 2) -> tuple[int, int, int, int]:
    """``(x0, y0, w, h)``: the integer pixel window, inside the image, that holds the lower half of a face box
    ``(x0, y0, x1, y1)`` plus ``margin`` pixels for the bilinear sampling of :func:`lower_half_crops`."""
    bx0, by0, bx1, by1 = (float(v) for v in box)
    x0 = max(0, int(np.floor(bx0)) - margin)
    y0 = max(0, int(np.floor((by0 + by1) / 2)) - margin)
    x1 = min(width, int(np.ceil(bx1)) + margin)
    y1 = min(height, int(np.ceil(by1)) + margin)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the face box {box.tolist()} lies outside the {width}x{height} image")
    return x0, y0, x1 - x0, y1 - y0


def make_sync_loss(data: SubjectFrames, syncnet_path: str | Path | None = None, every: int = 4) -> SyncLossTerm | None:
    """L_sync with the pretrained lip-sync expert when present, else a SyncNet trained on this subject at
    ``syncnet_path`` (``etlib.evaluation.syncnet_check`` / notebook 05 write one); None when neither is
    given (the trainer says so and records it). A ``syncnet_path`` that does not exist is an error, never a
    silently skipped term."""
    from etlib.audio.sentences import curated_texts
    from etlib.audio.syncnet import load_lipsync_expert, load_syncnet
    from etlib.audio.tts import synthesize, voice_name
    from etlib.weights import is_present

    if syncnet_path is not None and not Path(syncnet_path).is_file():
        raise FileNotFoundError(
            f"no SyncNet checkpoint at {syncnet_path} (given for L_sync): check the path, or write one with "
            "`python -m etlib.evaluation.syncnet_check --subject SUBJECT --out DIR` (DIR/syncnet.pt)"
        )
    if is_present("lipsync_expert"):
        syncnet = load_lipsync_expert()
    elif syncnet_path is not None:
        syncnet = load_syncnet(syncnet_path)
    else:
        return None
    clips = [synthesize(text, sr=SAMPLE_RATE) for text in curated_texts()]
    term = SyncLossTerm(syncnet, data, clips, every)
    term.name += f"; TTS sentences spoken by {voice_name()}"  # state.json says who spoke
    return term

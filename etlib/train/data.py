"""Training frames of a processed subject, as tensors (read lazily: nothing holds the whole video).

A sample carries what the stages compare against (Fig. S6): the frame I, its face and inside-mouth
masks, the masked images I^F_mask and I^M_mask, the masked normal map N^F_mask, the per-frame
background C_background (the frame with the head inpainted), the camera, and the conditions a, u, e.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from etlib.base import check_va_array
from etlib.gaussians import Camera
from etlib.preprocess.action_units import UPPER_FACE_AUS
from etlib.preprocess.subject import SubjectDir
from etlib.talking.model import FrameCondition
from etlib.train.checkpoints import read_run_state

#: Per-frame audio features (etlib.audio.features.per_frame_features) are 16 mel bands x 4 time bins.
AUDIO_BANDS, AUDIO_BINS = 16, 4
#: How a frame's feature row unfolds into the (channels, window) input of the AudioNet, per extractor:
#: log-mel (16 bands x 4 bins) and HuBERT (1024 channels x the 2 states of the frame, as TalkingGaussian).
AUDIO_LAYOUTS: dict[int, tuple[str, int, int]] = {
    AUDIO_BANDS * AUDIO_BINS: ("logmel", AUDIO_BANDS, AUDIO_BINS),
    2 * 1024: ("hubert", 1024, 2),
}
#: Standard deviation, in seconds, of the Gaussian that turns the judge's per-frame valence/arousal readings into
#: the frames' emotion track (:func:`emotion_track`).
EMOTION_TRACK_SIGMA_S = 0.5


def emotion_track(readings: np.ndarray, fps: float, sigma_s: float = EMOTION_TRACK_SIGMA_S) -> np.ndarray:
    """(T, 2) valence/arousal of each frame: the judge's (T, 2) per-frame ``readings`` smoothed in time by a Gaussian
    of ``sigma_s`` seconds (edges held; ``sigma_s = 0`` returns the readings).

    A face's emotion changes over seconds, but an image judge's readings of a talking face jitter with the visemes
    (a real clip: frame to frame by 0.11-0.13, as much as its emotion moved over the clip). Conditioning on the raw
    readings let f_E add the generator's expressions to unseen frames at random (clip3, quick: Table 1 LMD 1.18 px
    with f_E against 1.09 without, PSNR 0.3 dB lower); on the track it adds none (1.09 px, 0.1 dB lower)."""
    from scipy.ndimage import gaussian_filter1d

    readings = np.asarray(readings, dtype=np.float32)
    if readings.ndim != 2 or readings.shape[1] != 2:
        raise ValueError(f"readings must be (T, 2) valence/arousal, got {readings.shape}")
    if sigma_s < 0 or fps <= 0:
        raise ValueError(f"sigma_s must be >= 0 and fps > 0, got {sigma_s} and {fps}")
    if sigma_s == 0 or len(readings) < 2:
        return readings.copy()
    smoothed = gaussian_filter1d(readings.astype(np.float64), sigma_s * fps, axis=0, mode="nearest")
    return smoothed.astype(np.float32)


@dataclass
class Sample:
    index: int
    image: Tensor  # (H, W, 3) in [0, 1]
    face_mask: Tensor  # (H, W, 1)
    mouth_mask: Tensor  # (H, W, 1)
    normal: Tensor  # (H, W, 3) template normals, zero outside the face
    background: Tensor  # (H, W, 3)
    camera: Camera
    cond: FrameCondition
    landmarks: Tensor  # (68, 2), on the CPU: only numpy-side code (crops, boxes, the generator) reads them


class SubjectFrames:
    """Random access to a subject's frames and conditions.

    Args:
        subject: a processed subject folder.
        audio_frames: frames in the audio window of the region attention (Sec. 3.2: 8).
        va_origin: valence/arousal of the subject's resting face as the judge reads it; when given, ``va``
            holds the frames' emotion track relative to it. ``va`` is the track (:func:`emotion_track`, the
            judge's readings smoothed in time), ``va_measured`` the readings as read. A run trained with the
            offline generator records its origin (:meth:`for_run`).
        device: where the tensors of :meth:`sample`, :meth:`condition` and :meth:`camera` are made (the run's
            device: a frame is read from disk, then copied there once).
    """

    #: The preprocessing steps whose outputs training and rendering read.
    REQUIRED_STEPS = ("landmarks", "pose", "masks", "normals", "aus", "va", "split")

    def __init__(
        self,
        subject: SubjectDir | str,
        audio_frames: int = 8,
        va_origin: np.ndarray | list | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.subject = subject if isinstance(subject, SubjectDir) else SubjectDir(subject)
        s = self.subject
        meta = s.require_processed(self.REQUIRED_STEPS)
        self.n = s.n_frames
        self.resolution = int(meta["resolution"])
        self.K, self.w2c = s.cameras()
        self.landmarks = np.load(s.landmarks)
        feats = np.load(s.audio_features).astype(np.float32)
        if feats.shape[1] not in AUDIO_LAYOUTS:
            raise ValueError(
                f"audio features have {feats.shape[1]} dims; expected one of {sorted(AUDIO_LAYOUTS)} "
                "(log-mel or HuBERT): re-run `python -m etlib.preprocess ... --steps audio`"
            )
        self.audio_features = feats
        self.audio_extractor, self.audio_channels, self.audio_bins = AUDIO_LAYOUTS[feats.shape[1]]
        names, aus = s.read_au()
        cols = [names.index(f"{n}_r") for n in UPPER_FACE_AUS]
        self.au = aus[:, cols] / 5.0  # OpenFace's 0-5 intensities to 0-1
        self.va_measured = np.load(s.va).astype(np.float32)
        track = emotion_track(self.va_measured, float(meta.get("fps", 25.0)))
        self.va_origin = None if va_origin is None else np.asarray(va_origin, dtype=np.float32).reshape(2)
        self.va = track if self.va_origin is None else track - self.va_origin
        split = s.read_split()
        self.train_ids, self.test_ids = split["train"], split["test"]
        # Standardise each feature dimension with the training frames' statistics (any audio fed to the model
        # goes through the same transform): raw log-mel sits at ~-1.7 +- 1.3 with very unequal bands, and the
        # short CPU schedules learn the mouth's audio mapping ~2.5x faster on standardised input.
        self.audio_mean = feats[self.train_ids].mean(0)
        self.audio_std = feats[self.train_ids].std(0) + 1e-5
        self.audio_frames = audio_frames

    @classmethod
    def for_run(
        cls,
        run_dir: str | Path,
        audio_frames: int = 8,
        subject: SubjectDir | str | None = None,
        device: torch.device | str = "cpu",
    ):
        """The frames of a training run's subject (or ``subject``), with the run's valence/arousal origin, made on
        ``device`` (give the model's, :attr:`~etlib.talking.model.EmoTalkingGaussian.device`)."""
        state = read_run_state(run_dir)
        if subject is None:
            subject = state["subject"]
            if not Path(subject).is_dir():
                raise FileNotFoundError(
                    f"the subject folder this run was trained on, {subject} (recorded in "
                    f"{Path(run_dir) / 'state.json'}), does not exist: put it back, or pass the subject explicitly"
                )
        return cls(subject, audio_frames, state.get("va_origin"), device)

    # -- conditions ---------------------------------------------------------------------------------
    def features_for(self, wave: np.ndarray, sr: int = 16000, fps: float = 25.0) -> np.ndarray:
        """Per-frame features of new speech from the extractor that made this subject's (drives the model)."""
        from etlib.audio.features import audio_features

        return audio_features(wave, sr, fps, prefer=self.audio_extractor)[0]

    def audio_window(self, i: int, features: np.ndarray | None = None) -> Tensor:
        """(audio_frames, C, W) (log-mel: 16 x 4): the features of frames i-4 .. i+3 (clamped at the ends)."""
        feats = self.audio_features if features is None else features
        half = self.audio_frames // 2
        idx = np.clip(np.arange(i - half, i - half + self.audio_frames), 0, len(feats) - 1)
        window = ((feats[idx] - self.audio_mean) / self.audio_std).astype(np.float32)
        window = window.reshape(self.audio_frames, self.audio_channels, self.audio_bins)
        return torch.from_numpy(window.copy()).to(self.device)

    def condition(
        self,
        i: int,
        va: np.ndarray | None = None,
        audio: np.ndarray | None = None,
        audio_index=None,
        *,
        check_va: bool = True,
    ) -> FrameCondition:
        """The frame's own a, u, e; ``va`` and ``audio`` (features of other speech) override them.

        A given ``va`` must lie in [-1, 1] (:func:`etlib.base.check_va`); ``check_va=False`` is for labels
        measured on the subject's own frames, which, relative to its resting face (``va_origin``), may go
        beyond that range."""
        if va is not None and check_va:
            va = check_va_array(va)
        return FrameCondition(
            audio=self.audio_window(i if audio_index is None else audio_index, audio),
            au=torch.from_numpy(self.au[i].astype(np.float32)).to(self.device),
            va=torch.as_tensor(self.va[i] if va is None else va, dtype=torch.float32, device=self.device),
        )

    def camera(self, i: int) -> Camera:
        r, dev = self.resolution, self.device
        return Camera(torch.from_numpy(self.w2c[i]).float().to(dev), torch.from_numpy(self.K).float().to(dev), r, r)

    def background(self, i: int) -> Tensor:
        """(H, W, 3) in [0, 1] on the device: frame ``i``'s C_background of Eq. S9 (the head inpainted)."""
        return torch.from_numpy(self.subject.read_bg(i).astype(np.float32) / 255.0).to(self.device)

    # -- images ------------------------------------------------------------------------------------
    def sample(self, i: int) -> Sample:
        s = self.subject

        def img(a: np.ndarray) -> Tensor:
            return torch.from_numpy(a.astype(np.float32) / 255.0).to(self.device)

        def mask(name: str) -> Tensor:
            return torch.from_numpy(s.read_mask(name, i)[..., None].astype(np.float32)).to(self.device)

        return Sample(
            index=i,
            image=img(s.read_frame(i)),
            face_mask=mask("face"),
            mouth_mask=mask("mouth"),
            normal=torch.from_numpy(s.read_normal(i)).to(self.device),
            background=self.background(i),
            camera=self.camera(i),
            cond=self.condition(i),
            landmarks=torch.from_numpy(self.landmarks[i]),
        )

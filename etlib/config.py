"""Presets, paths and every loss weight of the paper.

One code path, three sizes: ``smoke`` (CI, seconds), ``quick`` (any CPU, a visibly working result in
minutes) and ``paper`` (a CUDA GPU, the paper's setting, Sec. 4.1 and S1). Presets change sizes, never
the method: the loss weights below are the paper's and are shared by every preset.

Equation numbers refer to the paper (main text Eqs. 1-17, supplementary Eqs. S1-S18).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

# ----------------------------------------------------------------------------------------------
# Loss weights (the paper's numbers; presets never change them)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanonicalWeights:
    """Weights of the canonical-Gaussian stages: Eq. 10-11, S11 (inside-mouth) and S13 (face).

    ``L = L1 + gamma1 * D-SSIM + gamma2 * L1(normals) + gamma3 * TV(normals) + gamma4 * ||dn||``
    (the normal terms apply to the face only).
    """

    gamma1_dssim: float = 0.2
    gamma2_normal_l1: float = 0.05
    gamma3_normal_tv: float = 0.005
    gamma4_normal_residual: float = 0.001


@dataclass(frozen=True)
class BranchWeights:
    """Weights of a branch's network stage: Eqs. 12-14 with S12 (mouth) and S14 (face);
    Eqs. 15-17 with S15 (emotion) use the same layout (kappa_1..5 and the sync weight).

    ``L = L1 + b1 D-SSIM + b2 LPIPS + b3 L1(normals) + b4 TV(normals) + b5 ||dn|| + b6 L_sync``.
    """

    beta1_dssim: float = 0.2
    beta2_lpips: float = 0.2
    beta3_normal_l1: float = 0.05
    beta4_normal_tv: float = 0.005
    beta5_normal_residual: float = 0.001
    beta6_sync: float = 0.05


@dataclass(frozen=True)
class FinetuneWeights:
    """Eq. S16: fine-tuning opacity and colour of the face canonical Gaussians on the composite
    image of Eq. S10. ``L = L1 + eta1 D-SSIM + eta2 LPIPS``."""

    eta1_dssim: float = 0.2
    eta2_lpips: float = 0.5


@dataclass(frozen=True)
class GeneratorWeights:
    """Eq. 7 / S6: training the lip-aligned emotional face generator g_LEF.

    ``L = l1 L_ll (S1) + l2 L_lp (S2) + l3 L_reg (S3) + l4 L_emo (S4) + l5 L_id (S5)``."""

    lambda1_lip_landmark: float = 1.0
    lambda2_lip_pixel: float = 5.0
    lambda3_regularization: float = 0.03
    lambda4_emotion: float = 0.2
    lambda5_identity: float = 1.5


#: Eq. S11 (mouth canonical): only gamma1 applies.
MOUTH_CANONICAL = CanonicalWeights()
#: Eq. S13 (face canonical with normals, Eq. 11).
FACE_CANONICAL = CanonicalWeights()
#: Eq. S12 (mouth network): no normal terms (S8: the inside-mouth normals are unreliable).
MOUTH_BRANCH = BranchWeights(beta3_normal_l1=0.0, beta4_normal_tv=0.0, beta5_normal_residual=0.0)
#: Eq. S14 (face network).
FACE_BRANCH = BranchWeights()
#: Eq. S15 (emotion network, the kappas of Eqs. 16-17): the sync weight is 0.001 here.
EMOTION_BRANCH = BranchWeights(beta6_sync=0.001)
#: Eq. S16 (face canonical fine-tune).
FINETUNE = FinetuneWeights()
#: Eq. S6 (g_LEF).
GENERATOR = GeneratorWeights()


@dataclass(frozen=True)
class OptimizerSettings:
    """Sec. S1: AdamW, 5e-3 for the hash encoders, 5e-4 for everything else, exponential decay.
    g_LEF: Adam 1e-4 for 10 epochs."""

    lr_hash_encoder: float = 5e-3
    lr_other: float = 5e-4
    # Exponential decay to this fraction of the initial rate by the end of a stage.
    final_lr_fraction: float = 0.1
    generator_lr: float = 1e-4
    generator_epochs: int = 10


OPTIMIZER = OptimizerSettings()

#: Sec. S6: the 12 valence/arousal points of the emotion-conditioned scenario and their labels.
S6_POINTS: tuple[tuple[float, float, str], ...] = (
    (0.74, 0.31, "Happy"),
    (0.31, 0.74, "Surprise"),
    (-0.31, 0.74, "Angry"),
    (-0.74, 0.31, "Disgust"),
    (-0.74, -0.31, "Sad"),
    (-0.31, -0.74, "Sad"),
    (0.31, -0.74, "Contempt"),
    (0.74, -0.31, "Contempt"),
    (0.35, 0.35, "Happy"),
    (-0.35, 0.35, "Angry"),
    (-0.35, -0.35, "Sad"),
    (0.35, -0.35, "Contempt"),
)

# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageIterations:
    """Iterations of the six training stages (Sec. 3.4, S1, S4.3).

    The paper trains each branch for 50k iterations and fine-tunes for 20k more (S1); following
    TalkingGaussian, a branch's first iterations optimise its canonical Gaussians alone.
    """

    mouth_canonical: int
    face_canonical: int
    mouth_network: int
    face_network: int
    emotion_network: int
    finetune: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class HashGridSettings:
    """Tri-plane hash encoder H (Sec. 3.2, [36]); TalkingGaussian's defaults."""

    n_levels: int = 12
    features_per_level: int = 1
    log2_hashmap_size: int = 17
    base_resolution_mouth: int = 64
    base_resolution_face: int = 16
    desired_resolution: int = 2048
    bound: float = 0.15
    # Features start uniform in [-init_scale, init_scale]. tinycudann's 1e-4 suits 50k-iteration schedules;
    # the region-attention maps A = MLP(H(mu)) start at that scale too, so a few hundred CPU steps barely
    # leave the origin (the quick preset starts larger, see PRESETS).
    init_scale: float = 1e-4


@dataclass(frozen=True)
class SyncNetConfig:
    """Sizes of a SyncNet (Eq. 9). The defaults are Wav2Lip's lip-sync expert (96 x 96 faces)."""

    face_hw: tuple[int, int] = (48, 96)  # (height, width) of the lower-half crop
    width: float = 1.0  # channel multiplier of the hidden layers
    embed_dim: int = 512
    arch: str = "wav2lip"  # "wav2lip": raw BGR input, Wav2Lip's layers; "compact": see etlib.audio.syncnet

    @property
    def is_wav2lip(self) -> bool:
        return (
            self.arch == "wav2lip" and tuple(self.face_hw) == (48, 96) and self.width == 1.0 and self.embed_dim == 512
        )


@dataclass(frozen=True)
class EvalSettings:
    """How much of each scenario of Tables 1-4 to render (CPU time grows with every number here).

    ``max_test_frames`` caps Table 1 at the first N test frames (a contiguous block, so SyncNet windows stay
    whole; None: the whole test split); ``tts_sentences`` sentences of each held-out set
    (:data:`etlib.audio.heldout.CROSS_DOMAIN_SETS`, never heard in training) make Table 2; ``frames_per_point``
    frames at each of the 12 S6 points make one continuous Table 3 clip; ``au_sources`` training frames feed
    the offline generator for the AU baseline; ``emotion_clip_frames`` frames of ``--emotion-subject``;
    ``max_audio_seconds`` trims each Table 2 clip (None: whole sentences).
    """

    max_test_frames: int | None = None
    tts_sentences: int = 10
    frames_per_point: int = 25
    au_sources: int = 5
    emotion_clip_frames: int = 200
    fps_iters: int = 50
    max_audio_seconds: float | None = None


@dataclass(frozen=True)
class DemoSizes:
    """Sizes of the notebooks' demonstrations (not of the model): the splatting fit of notebook 02 and the
    g_LEF training demo of notebook 03."""

    splat_image: int = 128  # notebook 02: side of the fitted photo crop
    splat_gaussians: int = 2000
    splat_steps: int = 150
    splat_min_psnr: float = 30.0  # what the fit must reach
    lef_crops: int = 8  # notebook 03: face crops the tiny g_LEF trains on
    lef_size: int = 32
    lef_width: int = 16
    lef_fit_steps: int = 100
    lef_detector_steps: int = 100
    lef_steps: int = 60


@dataclass(frozen=True)
class Preset:
    """Sizes of one run. ``paper`` is the paper's setting; the others shrink sizes only."""

    name: str
    resolution: int  # square frames, pixels
    n_gaussians_face: int  # initial face Gaussians (densification changes the count)
    n_gaussians_mouth: int
    iterations: StageIterations
    batch_size: int
    hash_grid: HashGridSettings = field(default_factory=HashGridSettings)
    audio_window: int = 8  # frames of audio features seen by the region attention (Sec. 3.2)
    syncnet_iterations: int = 2000
    generator_size: int = 1024  # StyleGAN2 output size for g_LEF
    max_frames: int | None = None  # cap on frames used from a subject (None: all)
    checkpoint_every: int = 1000
    densify_every: int = 100
    densify_until_fraction: float = 0.5  # of the canonical stage
    # Multiplies the networks' 5e-4 learning rate (Sec. S1; not the hash tables' 5e-3). 1 in the paper's
    # schedule; the short CPU schedules take larger steps (MLPs, attention, audio encoders) so the
    # audio and emotion mappings form within hundreds of steps.
    network_lr_scale: float = 1.0
    # Weight of an extra L1 on the lips' box in the face-network stage (TalkingGaussian adds an LPIPS on its
    # ``lips_rect`` too; not in Eq. S14, so 0 in the paper preset). The lips are ~2 % of a frame: under the
    # frame-mean L1 a few hundred CPU steps leave them under-fitted and the mouth moves too little.
    lip_region_l1: float = 0.0
    # Weight of an extra L1 over the pixels an emotion target changed (``losses.changed_region``) in the emotion
    # stage; not in Eq. S15, so 0 in the paper preset. An expression moves brows, lids and lip corners: a few
    # hundred pixels of a 128-px frame, whose share of the frame-mean L1 a short CPU schedule barely feels.
    emotion_region_l1: float = 0.0
    # Share of the emotion stage's steps that train on a generated emotional image (S4.1, Eq. S15); the rest use
    # the subject's own frame at its measured emotion. The paper trains on generated images only, and so do the
    # presets (a quarter on the frame lowered what f_E learnt on a real clip: 0.63x of the targets' change, not 0.71x).
    emotion_target_share: float = 1.0
    # The emotion stage's network learning-rate multiplier (None: ``network_lr_scale``). f_E starts from zero offsets
    # and must learn a 2-D condition from a few hundred CPU steps.
    emotion_lr_scale: float | None = None
    # The SyncNet trained offline on the subject (``paper``: the pretrained expert's sizes, Wav2Lip's).
    syncnet: SyncNetConfig = field(default_factory=SyncNetConfig)
    evaluation: EvalSettings = field(default_factory=EvalSettings)  # Tables 1-4
    generator_check_frames: int = 24  # source frames of ``python -m etlib.evaluation.generator_check``
    demos: DemoSizes = field(default_factory=DemoSizes)

    def with_overrides(self, **kwargs) -> Preset:
        return dataclasses.replace(self, **kwargs)


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        resolution=64,
        n_gaussians_face=1500,
        n_gaussians_mouth=300,
        iterations=StageIterations(20, 20, 10, 10, 10, 10),
        batch_size=1,
        hash_grid=HashGridSettings(n_levels=4, log2_hashmap_size=12, init_scale=0.5),
        network_lr_scale=5.0,
        emotion_lr_scale=10.0,
        emotion_region_l1=3.0,
        lip_region_l1=1.0,
        syncnet_iterations=20,
        syncnet=SyncNetConfig(face_hw=(24, 48), width=0.25, embed_dim=64, arch="compact"),
        evaluation=EvalSettings(
            tts_sentences=1, frames_per_point=2, au_sources=1, emotion_clip_frames=8, fps_iters=2, max_audio_seconds=1.2
        ),  # fmt: skip
        generator_check_frames=2,
        demos=DemoSizes(
            splat_image=64,
            splat_gaussians=300,
            splat_steps=60,
            splat_min_psnr=18.0,
            lef_crops=4,
            lef_fit_steps=10,
            lef_detector_steps=15,
            lef_steps=8,
        ),  # fmt: skip
        generator_size=64,
        max_frames=60,
        checkpoint_every=10,
        densify_every=10,
    ),
    "quick": Preset(
        name="quick",
        resolution=128,
        n_gaussians_face=8000,
        n_gaussians_mouth=1500,
        # Why these sizes depart from the paper's schedule, with what they measured: README, "Known limits".
        # face_network: the lips need several hundred steps to follow the audio; emotion_network: f_E starts from
        # zero offsets and must learn a 2-D condition. On a real clip (anchored f_E, 550 steps) the renders changed the
        # face by 0.63x what the targets did when a quarter of the steps trained on the subject's own frame at its
        # measured emotion, 0.71x when every step trains on a generated image as the paper does (landmark-motion
        # cosine 0.77 -> 0.85; the frames' per-frame readings jitter by +-0.2 with speech and taught f_E to move the
        # lips with them). More steps (0.64x at 1200), twice the learning rate, a wider f_E or a stronger attention
        # bias did not help. A step with L_sync costs ~0.42 s on one core (idle), so 900 took notebook 08 to 7.1 min.
        iterations=StageIterations(300, 400, 300, 750, 550, 150),
        batch_size=1,
        hash_grid=HashGridSettings(n_levels=8, log2_hashmap_size=14, init_scale=0.5),
        network_lr_scale=5.0,
        emotion_lr_scale=10.0,
        emotion_region_l1=3.0,
        lip_region_l1=1.0,
        syncnet_iterations=600,
        # 32x64 lower-half crops at half width train 600 iterations in about 130 CPU seconds
        syncnet=SyncNetConfig(face_hw=(32, 64), width=0.5, embed_dim=256, arch="compact"),
        evaluation=EvalSettings(
            max_test_frames=48,
            tts_sentences=1,
            frames_per_point=5,
            au_sources=3,
            emotion_clip_frames=12,
            fps_iters=5,
            max_audio_seconds=2.0,
        ),  # fmt: skip
        generator_check_frames=8,
        generator_size=128,
        checkpoint_every=100,
        densify_every=100,
    ),
    "paper": Preset(
        name="paper",
        resolution=512,
        n_gaussians_face=50_000,
        n_gaussians_mouth=10_000,
        iterations=StageIterations(10_000, 10_000, 40_000, 40_000, 50_000, 20_000),
        batch_size=1,
        syncnet_iterations=0,  # the pretrained lip-sync expert is used
        generator_size=1024,
        checkpoint_every=2000,
        densify_every=100,
    ),
}


def get_preset(name: str | Preset) -> Preset:
    """Return the preset called ``name`` (``smoke``, ``quick`` or ``paper``)."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}: choose one of {', '.join(PRESETS)} "
            "(smoke: CI-sized, quick: a CPU in minutes, paper: the paper's setting on a CUDA GPU)"
        ) from None


# ----------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent


def outputs_dir() -> Path:
    """Where the course writes its results (``$ETLIB_OUTPUTS`` or ``<repo>/outputs``)."""
    return Path(os.environ.get("ETLIB_OUTPUTS", REPO_ROOT / "outputs"))


def sample_subject_dir() -> Path:
    """The embedded sample subject, built by ``data_scripts/make_sample_subject.py``."""
    return Path(os.environ.get("ETLIB_SAMPLE_SUBJECT", outputs_dir() / "sample_subject"))


def real_data_dir() -> Path | None:
    """``../shared/data/real`` beside the repository, when it exists (developer machines only)."""
    candidate = Path(os.environ.get("ETLIB_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "real"))
    return candidate if candidate.is_dir() else None

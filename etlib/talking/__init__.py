"""The talking-head networks of EmoTalkingGaussian (Sec. 3.2, Eqs. 3-5, S9-S10).

Region attention and audio encoding (:mod:`~etlib.talking.attention`), the manipulation networks
``f_M``, ``f_F``, ``f_E`` (:mod:`~etlib.talking.branches`) and the layer composition of Eqs. S9-S10
(:mod:`~etlib.talking.composition`).
"""

from etlib.talking.attention import MLP, AudioAttNet, AudioEncoder, AudioNet, RegionAttention
from etlib.talking.branches import Deformation, EmotionBranch, FaceBranch, MouthBranch
from etlib.talking.composition import Composite, composite, mouth_over_background, over

__all__ = [
    "MLP",
    "AudioAttNet",
    "AudioEncoder",
    "AudioNet",
    "Composite",
    "Deformation",
    "EmotionBranch",
    "FaceBranch",
    "MouthBranch",
    "RegionAttention",
    "composite",
    "mouth_over_background",
    "over",
]

"""The six training stages (Sec. 3.4, S1, S4.3) and their losses.

=================  =========================================  =========================  ================
stage              renders                                    target                     loss
=================  =========================================  =========================  ================
mouth_canonical    theta^M_C                                  I^M_mask                   Eq. S11 (10)
mouth_network      theta^M = theta^M_C + f_M                  I^M_mask                   Eq. S12 (12-13)
face_canonical     theta^F_C (+ normals)                      I^F_mask, N^F_mask         Eq. S13 (10-11)
face_network       theta^F = theta^F_C + f_F (+ normals)      I^F_mask, N^F_mask         Eq. S14 (12-14)
emotion_network    theta^E = theta^F + f_E (+ normals)        I^E_mask, N^E_mask         Eq. S15 (15-17)
finetune           Eq. S10 composite; only alpha, c of F_C    I                          Eq. S16
=================  =========================================  =========================  ================

The branches are trained independently (Sec. 3.4), the inside of the mouth first (TalkingGaussian's
order); each stage trains its own parts: the canonical stages optimise (and densify) their Gaussians; the
network stages their manipulation network with the Gaussians it deforms; the emotion stage f_E alone; the
fine-tuning the face's opacity and colour. In the "Combined face b." ablation of Table 4, where valence/arousal
enter f_F, the emotion stage trains f_F on the same emotional images instead (``Trainer._stage_networks``).
"""

from __future__ import annotations

from dataclasses import dataclass

from etlib.config import (
    EMOTION_BRANCH,
    FACE_BRANCH,
    FACE_CANONICAL,
    FINETUNE,
    MOUTH_BRANCH,
    MOUTH_CANONICAL,
    BranchWeights,
    CanonicalWeights,
    FinetuneWeights,
)


@dataclass(frozen=True)
class Stage:
    name: str
    equation: str
    gaussians: str | None  # "mouth" | "face": the Gaussian set this stage optimises
    gaussian_params: tuple[str, ...] | None  # None: all of its parameters
    networks: tuple[str, ...]
    densify: bool
    weights: CanonicalWeights | BranchWeights | FinetuneWeights


STAGES: tuple[Stage, ...] = (
    Stage("mouth_canonical", "S11", "mouth", None, (), True, MOUTH_CANONICAL),
    Stage("mouth_network", "S12", "mouth", None, ("f_M",), False, MOUTH_BRANCH),
    Stage("face_canonical", "S13", "face", None, (), True, FACE_CANONICAL),
    Stage("face_network", "S14", "face", None, ("f_F",), False, FACE_BRANCH),
    Stage("emotion_network", "S15", None, None, ("f_E",), False, EMOTION_BRANCH),
    Stage("finetune", "S16", "face", ("opacities", "sh0", "shN"), (), False, FINETUNE),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise ValueError(f"unknown stage {name!r}; stages are {', '.join(STAGE_NAMES)}")

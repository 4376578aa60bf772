"""Training EmoTalkingGaussian: the six stages of Sec. 3.4 / S4.3, resumable (``python -m etlib.train``)."""

from etlib.train.data import SubjectFrames
from etlib.train.stages import STAGE_NAMES, STAGES, get_stage
from etlib.train.trainer import Trainer, build_model, load_model, model_state

__all__ = ["STAGES", "STAGE_NAMES", "SubjectFrames", "Trainer", "build_model", "get_stage", "load_model", "model_state"]

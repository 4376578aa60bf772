"""Preprocessing: any talking-head video to a training-ready subject folder (paper Sec. 4.1, S4.2).

``python -m etlib.preprocess VIDEO OUTDIR [--preset quick] [--steps ...]``; see :mod:`etlib.preprocess.pipeline`
for the steps and :mod:`etlib.preprocess.subject` for the folder layout.
"""

from etlib.preprocess.pipeline import STEPS, NoFaceError, preprocess
from etlib.preprocess.subject import SubjectDir

__all__ = ["STEPS", "NoFaceError", "SubjectDir", "preprocess"]

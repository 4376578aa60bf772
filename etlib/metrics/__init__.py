"""Evaluation metrics of Sec. 4.1 and S6 (Tables 1-4).

* image quality: :func:`psnr`, :func:`ssim` [66], :class:`LPIPSMetric` [72] (raises :class:`MetricUnavailable`
  where its AlexNet weights or packages are missing);
* lip sync: :func:`lmd` [10] (Sync-E/Sync-C live in :mod:`etlib.audio.sync_metrics`);
* action units: :func:`aue` (AUE-U / AUE-L);
* emotion: :func:`va_rmse` (Eq. S17), :func:`sign_agreement` (Eq. S18), :func:`top3_accuracy`;
* speed: :func:`fps`.
"""

from etlib.metrics.au import LOWER_FACE_AUS, UPPER_FACE_AUS, AUError, aue, normalize_au_name
from etlib.metrics.emotion import (
    LABEL_TO_CLASS,
    TopKAccuracy,
    label_to_class_index,
    s6_label,
    sign_agreement,
    top3_accuracy,
    va_rmse,
)
from etlib.metrics.image import LPIPSMetric, MetricUnavailable, lpips_status, psnr, ssim, try_lpips
from etlib.metrics.landmarks import lmd
from etlib.metrics.timing import Timing, fps

__all__ = [
    "LABEL_TO_CLASS",
    "LOWER_FACE_AUS",
    "UPPER_FACE_AUS",
    "AUError",
    "LPIPSMetric",
    "MetricUnavailable",
    "Timing",
    "TopKAccuracy",
    "aue",
    "fps",
    "label_to_class_index",
    "lmd",
    "lpips_status",
    "normalize_au_name",
    "psnr",
    "s6_label",
    "sign_agreement",
    "ssim",
    "top3_accuracy",
    "try_lpips",
    "va_rmse",
]

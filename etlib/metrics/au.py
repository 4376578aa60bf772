"""Action-unit errors AUE-U and AUE-L (Sec. 4.1, Table 1; OpenFace [5, 6]).

The mean absolute error between the AU intensities (0-5) of rendered and ground-truth frames, split into
upper-face units (brows, lids, cheeks) and lower-face units (nose, lips, jaw) following FACS' own split.
AU tables may come from OpenFace (``AU01_r`` columns, leading spaces and all) or from etlib's landmark
AU extractor; names are normalised (``" AU01_r"``, ``"AU1"`` -> ``"AU01"``) and only units present in both
tables are compared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: OpenFace's intensity AUs, split by FACS region (AU45, blink, belongs to the eyes: upper face).
UPPER_FACE_AUS: tuple[str, ...] = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU43", "AU45")
LOWER_FACE_AUS: tuple[str, ...] = (
    "AU09", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26",
)  # fmt: skip


def normalize_au_name(name: str) -> str:
    """``" AU01_r"``, ``"AU1"``, ``"au01"`` -> ``"AU01"``."""
    match = re.fullmatch(r"\s*AU0*(\d+)(?:_[rc])?\s*", str(name), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"{name!r} is not an action-unit name like 'AU01' or 'AU01_r'")
    return f"AU{int(match.group(1)):02d}"


def _table(aus: Mapping[str, object], name: str) -> dict[str, np.ndarray]:
    table: dict[str, np.ndarray] = {}
    for key in aus.keys():
        try:
            au = normalize_au_name(key)
        except ValueError:
            continue  # other columns of an OpenFace csv (frame, confidence, AU01_c, ...)
        if str(key).strip().lower().endswith("_c"):
            continue  # presence, not intensity
        table[au] = np.atleast_1d(np.asarray(aus[key], dtype=np.float64))
    if not table:
        raise ValueError(f"{name} has no action-unit entries (expected keys like 'AU01' or 'AU01_r')")
    return table


@dataclass(frozen=True)
class AUError:
    """AUE-U and AUE-L (mean absolute intensity error) and the units each one averaged over."""

    upper: float
    lower: float
    upper_units: tuple[str, ...]
    lower_units: tuple[str, ...]


def _group_error(
    pred: dict[str, np.ndarray], gt: dict[str, np.ndarray], units: Sequence[str], label: str
) -> tuple[float, tuple[str, ...]]:
    common = tuple(u for u in (normalize_au_name(x) for x in units) if u in pred and u in gt)
    if not common:
        raise ValueError(
            f"no {label} action unit is in both tables (wanted {list(units)}, pred has {sorted(pred)}, "
            f"gt has {sorted(gt)})"
        )
    errors = []
    for unit in common:
        if pred[unit].shape != gt[unit].shape:
            raise ValueError(f"{unit}: pred has {pred[unit].shape} frames, gt {gt[unit].shape}")
        errors.append(np.abs(pred[unit] - gt[unit]))
    return float(np.mean(np.stack(errors))), common


def aue(
    pred_aus: Mapping[str, object],
    gt_aus: Mapping[str, object],
    upper: Sequence[str] = UPPER_FACE_AUS,
    lower: Sequence[str] = LOWER_FACE_AUS,
) -> AUError:
    """AUE-U / AUE-L: mean over frames and over the units of a group of ``|AU_pred - AU_gt|``.

    Args:
        pred_aus, gt_aus: AU name -> intensity per frame (a dict of arrays ``[T]`` or a pandas DataFrame).
        upper, lower: the units of each group; units absent from either table are skipped (the result
            lists those used), and a group with none in common is an error.
    """
    pred, gt = _table(pred_aus, "pred_aus"), _table(gt_aus, "gt_aus")
    upper_error, upper_units = _group_error(pred, gt, upper, "upper-face")
    lower_error, lower_units = _group_error(pred, gt, lower, "lower-face")
    return AUError(upper_error, lower_error, upper_units, lower_units)

"""A training run on disk, read defensively: ``state.json`` validated, checkpoints loaded without running code.

A run folder may come from anyone (a shared archive, a colleague's disk), so nothing in it is trusted:

* ``state.json`` names completed stages; a stage name becomes part of a checkpoint's path, so only the six
  known names (in their order) are accepted, never a path such as ``../../elsewhere``;
* checkpoints hold tensors and plain Python containers, numbers and strings only, and are loaded with
  ``torch.load(weights_only=True)``: a file that needs anything else to unpickle (which could run code)
  is refused;
* a checkpoint that cannot be read (cut short by a full disk, corrupted by a copy) is reported by name as
  a :class:`CheckpointError`; the trainer then falls back to the previous good one.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from etlib.base import EtlibError
from etlib.train.stages import STAGE_NAMES

STATE_FILE = "state.json"
CHECKPOINT_DIR = "checkpoints"


class RunStateError(EtlibError, ValueError):
    """A run's ``state.json`` is unreadable or names something other than etlib's stages."""


class CheckpointError(EtlibError):
    """A checkpoint that cannot be loaded: truncated, corrupted, or holding more than tensors and plain data."""


def model_path(run_dir: str | Path, stage: str) -> Path:
    """``RUN/checkpoints/model_<stage>.pt``: the model at the end of ``stage`` (a known stage name only)."""
    if stage not in STAGE_NAMES:
        raise RunStateError(f"unknown stage {stage!r}; stages are {', '.join(STAGE_NAMES)}")
    return Path(run_dir) / CHECKPOINT_DIR / f"model_{stage}.pt"


def latest_paths(run_dir: str | Path, stage: str) -> tuple[Path, Path]:
    """The newest mid-stage checkpoint of ``stage`` and the one before it (kept in case the newest is bad)."""
    if stage not in STAGE_NAMES:
        raise RunStateError(f"unknown stage {stage!r}; stages are {', '.join(STAGE_NAMES)}")
    folder = Path(run_dir) / CHECKPOINT_DIR
    return folder / f"latest_{stage}.pt", folder / f"previous_{stage}.pt"


def validate_state(state: Any, where: str | Path) -> dict[str, Any]:
    """``state`` (a parsed ``state.json``) when its fields have the types etlib writes and its completed
    stages are the first stages of :data:`STAGE_NAMES` in order; a :class:`RunStateError` naming the field
    otherwise."""
    fix = "it was edited by hand or is not an etlib run; train into a new --out folder"
    if not isinstance(state, dict):
        raise RunStateError(f"{where} holds a {type(state).__name__}, not a run state: {fix}")
    completed = state.get("completed")
    if not isinstance(completed, list) or not all(isinstance(s, str) for s in completed):
        raise RunStateError(f"{where}: 'completed' must be a list of stage names, got {completed!r}: {fix}")
    unknown = [s for s in completed if s not in STAGE_NAMES]
    if unknown:
        raise RunStateError(f"{where} names unknown stage {unknown[0]!r} (stages are {', '.join(STAGE_NAMES)}): {fix}")
    if completed != list(STAGE_NAMES[: len(completed)]):
        raise RunStateError(
            f"{where} lists completed stages {completed}, which are not the first stages in order "
            f"({', '.join(STAGE_NAMES)}): {fix}"
        )
    for key in ("subject", "preset"):
        if not isinstance(state.get(key), str):
            raise RunStateError(f"{where}: {key!r} must be a string, got {state.get(key)!r}: {fix}")
    return state


def read_run_state(run_dir: str | Path) -> dict[str, Any]:
    """The validated ``state.json`` of a training run, or an error that says what to run."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(
            f"no training run at {run_dir}: train one with `python -m etlib.train --subject SUBJECT --out {run_dir}`"
        )
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a training run (no {STATE_FILE}); train one with "
            f"`python -m etlib.train --subject SUBJECT --out {run_dir}`"
        )
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunStateError(f"{path} is not valid JSON ({err}); train into a new --out folder") from None
    return validate_state(state, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, loaded on the CPU with ``weights_only=True`` (tensors and plain data only).

    Raises:
        CheckpointError: the file is missing, cut short, corrupt, or needs more than tensors and plain data
            to load (refused: unpickling arbitrary objects can execute code). The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} holds more than tensors and plain data and was refused (loading it could run "
            f"code): {first}"
        ) from err
    except Exception as err:  # torch reports a damaged file as RuntimeError, EOFError, OSError...
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}{': ' + first if first else ''}): "
            "it is truncated or corrupt"
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not an etlib checkpoint")
    return obj

"""Resumable training of the six stages.

    python -m etlib.train --subject DIR --preset quick --out RUN

``RUN/`` holds ``state.json`` (completed stages, seconds, the device and the rasterizer and hash grid that ran in
each stage, optional terms that are off),
``checkpoints/`` (the model after each stage, and the two newest mid-stage checkpoints: model, optimizers,
densification state, random generators (NumPy's, torch's CPU one and, on a GPU, its CUDA one), loss history),
``losses.csv`` and ``losses.png``. Re-running the same command continues exactly where it stopped: a resumed run
ends with the same parameters as an unbroken one (same seed, same device).

One device runs everything (``device``: ``auto``, ``cpu`` or ``cuda``): the model, the frames, the LPIPS network,
L_sync's SyncNet. On CUDA the rasterizer is gsplat and the hash grids tinycudann when they load; on the CPU, etlib's
PyTorch versions, even on a machine with a GPU.

Checkpoints hold tensors and plain data only and are loaded with ``weights_only=True``
(:mod:`etlib.train.checkpoints`). One that cannot be read is reported by name, set aside (``*.corrupt``) and
training resumes from the previous good one; a loss term that is not finite stops the stage before anything
of it is saved.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from etlib import losses
from etlib.base import EtlibError, atomic_torch_save, atomic_write_text
from etlib.config import OPTIMIZER, Preset, get_preset
from etlib.encoders import reuse_encodings, reuse_frozen_encodings
from etlib.gaussians.densify import Densifier
from etlib.gaussians.model import GaussianSet
from etlib.preprocess.subject import SubjectDir
from etlib.talking.init import initial_gaussians
from etlib.talking.model import Ablation, EmoTalkingGaussian
from etlib.train.checkpoints import (
    CheckpointError,
    latest_paths,
    load_checkpoint,
    model_path,
    read_run_state,
    validate_state,
)
from etlib.train.data import Sample, SubjectFrames, emotion_track
from etlib.train.stages import STAGE_NAMES, STAGES, Stage, get_stage

CHECKPOINT_FORMAT = "etlib.EmoTalkingGaussian/1"
#: The face layer is trained over this colour, against the masked frame over the same colour (as
#: TalkingGaussian's face training does, over green). Over black, dark opaque Gaussians across the open mouth
#: would cost nothing (the masked target is black there too) and would hide the inside-mouth layer, teeth
#: included, in the composite of Eq. S10; over a colour no face has, only transparency matches.
FACE_KEY_COLOR = (0.0, 1.0, 0.0)


class NonFiniteError(EtlibError, FloatingPointError):
    """A loss term or a parameter became NaN or infinite: the stage stops before saving anything of it."""


def _note(message: str) -> None:
    """One line for the person running the training (stderr, so it survives ``--quiet`` and stdout JSON)."""
    print(f"note: {message}", file=sys.stderr, flush=True)


class EmotionTargets(Protocol):
    """Where the emotion stage's targets come from (Sec. 3.3.1, S4.1): g_LEF + seamless cloning.

    Called with a source frame (H, W, 3 uint8), its 68 landmarks and a valence/arousal pair, it returns the
    lip-aligned emotional image (same size, uint8) and that image's 68 landmarks. An optional
    ``va_relative_to_source = True`` says that ``va`` is added to the frame's own expression (the offline
    generator); the run then labels the subject's frames relative to its resting face (``state["va_origin"]``).
    """

    name: str

    def __call__(self, frame: np.ndarray, landmarks: np.ndarray, va: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class SyncLoss(Protocol):
    """L_sync of Eq. 9 (see :class:`etlib.train.sync.SyncLossTerm`): renders a 5-frame window driven by
    speech and compares SyncNet's image and audio embeddings."""

    name: str

    def applies(self, iteration: int) -> bool: ...

    def __call__(
        self, model: EmoTalkingGaussian, stage_name: str, sample_index: int, rng: np.random.Generator, deform_face: bool
    ) -> torch.Tensor: ...


# --------------------------------------------------------------------------------------------------
# Model persistence
# --------------------------------------------------------------------------------------------------


def model_state(model: EmoTalkingGaussian) -> dict[str, Any]:
    """The model as CPU tensors and plain data (loadable with ``weights_only=True`` on any machine): Gaussians,
    networks, config."""
    cpu = torch.device("cpu")

    def copy(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(cpu, copy=True)

    networks = {n: getattr(model, n) for n in ("f_M", "f_F", "f_E") if getattr(model, n) is not None}
    return {
        "format": CHECKPOINT_FORMAT,
        "config": model.config,
        "mouth": {k: copy(v) for k, v in model.mouth.tensors().items()},
        "face": {k: copy(v) for k, v in model.face.tensors().items()},
        "networks": {n: {k: copy(v) for k, v in net.state_dict().items()} for n, net in networks.items()},
    }


def new_model(make: Callable[[], EmoTalkingGaussian], device: torch.device | str) -> EmoTalkingGaussian:
    """``make()`` built on the CPU, then moved to ``device``: the same initial values on every device (the networks
    draw them from torch's CPU generator), and nothing left on torch's default device."""
    with torch.device("cpu"):
        model = make()
    return model.to(device)


def _gaussians_from(t: dict[str, torch.Tensor]) -> GaussianSet:
    return GaussianSet(t["means"], t["log_scales"], t["quats"], t["opacity_logits"], t["sh"], t["dn"])


def build_model(
    state: dict[str, Any], preset: Preset, backend: str = "auto", device: torch.device | str = "cpu"
) -> EmoTalkingGaussian:
    """The model a :func:`model_state` dictionary describes, with ``preset``'s hash-grid sizes, on ``device``;
    ``backend`` is the hash grids' (``"auto"``: tinycudann for a CUDA device when it loads, see
    :func:`etlib.backends.hash_backend_for`)."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("not an EmoTalkingGaussian checkpoint (saved by etlib.train)")
    cfg = state["config"]
    device = torch.device(device)
    if backend == "auto":
        from etlib.backends import hash_backend_for

        backend = hash_backend_for(device)

    def make() -> EmoTalkingGaussian:
        model = EmoTalkingGaussian(
            _gaussians_from(state["mouth"]),
            _gaussians_from(state["face"]),
            audio_in_dim=cfg["audio_in_dim"],
            audio_window=cfg["audio_window"],
            audio_frames=cfg["audio_frames"],
            au_dim=cfg["au_dim"],
            hash_grid=preset.hash_grid,
            ablation=Ablation(**cfg["ablation"]),
            backend=backend,
            emotion_anchored=cfg.get("emotion_anchored", False),
        )
        for name, sd in state["networks"].items():
            getattr(model, name).load_state_dict(sd)
        return model

    return new_model(make, device)


def load_model(
    run_dir: str | Path, preset: str | Preset | None = None, backend: str = "auto", device: torch.device | str = "auto"
) -> EmoTalkingGaussian:
    """The model after the last completed stage of a run (``state.json`` validated, ``weights_only`` load), on
    ``device`` (``"auto"``: CUDA when usable, see :func:`etlib.backends.resolve_device`).

    Raises:
        FileNotFoundError: no run there, or no stage has completed.
        CheckpointError: the last stage's checkpoint cannot be read; the message says how to recover.
    """
    run_dir = Path(run_dir)
    st = read_run_state(run_dir)
    if not st["completed"]:
        raise FileNotFoundError(
            f"no stage of {run_dir} has completed yet: finish it with `python -m etlib.train --subject "
            f"{st['subject']} --out {run_dir}`"
        )
    path = model_path(run_dir, st["completed"][-1])
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(
            f"{err}. Run `python -m etlib.train --subject {st['subject']} --out {run_dir}` again: it sets the file "
            "aside and re-trains that stage from the last good checkpoint"
        ) from err
    from etlib.backends import resolve_device

    return build_model(ckpt, get_preset(preset or st["preset"]), backend=backend, device=resolve_device(device))


# --------------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------------


class Trainer:
    """Train EmoTalkingGaussian on one processed subject.

    Args:
        subject: a folder written by ``etlib.preprocess``.
        run_dir: where checkpoints, losses and metrics go; an existing run is resumed.
        preset: sizes and iterations.
        ablation: the Table 4 variant.
        emotion_targets: the source of the emotion stage's images (default: the offline generator with
            seamless cloning, or g_LEF when its weights are present).
        sync_loss: L_sync (Eq. 9); None disables the term (recorded in ``state.json``).
        device: ``"auto"`` (CUDA when usable), ``"cpu"`` or ``"cuda"``: where the model, the frames and every
            network of the losses live (:func:`etlib.backends.resolve_device`).
    """

    def __init__(
        self,
        subject: str | Path,
        run_dir: str | Path,
        preset: str | Preset = "quick",
        *,
        ablation: Ablation | str = "full",
        seed: int = 0,
        progress: bool = True,
        emotion_targets: EmotionTargets | None = None,
        sync_loss: SyncLoss | None = None,
        device: torch.device | str = "auto",
    ) -> None:
        from etlib.backends import resolve_device

        self.device = resolve_device(device)
        self.preset = get_preset(preset)
        self.ablation = Ablation.from_name(ablation) if isinstance(ablation, str) else ablation
        self.subject = SubjectDir(subject)
        self.subject.require_processed(SubjectFrames.REQUIRED_STEPS)
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.seed = seed
        self.progress = progress
        self.emotion_targets = emotion_targets
        self.sync = None
        self.lpips = losses.LPIPSLoss().to(self.device)
        self.state = self._load_or_create_state()
        self.data = SubjectFrames(self.subject, self.preset.audio_window, self.state.get("va_origin"), self.device)
        self.model = self._load_or_create_model()
        if "emotion_network" not in self.state["completed"]:
            # V/A relative to the resting face: (0, 0) is f_F's face, so f_E is anchored there (EmotionBranch).
            self.model.set_emotion_anchored(self.state.get("va_origin") is not None)
        self._ran_rasterizer: set[str] = set()  # RenderOutput.meta["backend"] of this stage's steps
        self.use_sync_loss(sync_loss)
        self.history: list[dict[str, float]] = self._read_history()

    def use_sync_loss(self, term: SyncLoss | None) -> None:
        """Set L_sync after construction (its SyncNet needs this trainer's subject data); ignored when the
        ablation has no sync loss. A term with a ``to(device)`` (:class:`etlib.train.sync.SyncLossTerm`) is moved to
        the run's device."""
        if term is not None and hasattr(term, "to"):
            term = term.to(self.device)
        self.sync = term if self.ablation.sync_loss else None

    # -- run bookkeeping ---------------------------------------------------------------------------
    def _load_or_create_state(self) -> dict[str, Any]:
        path = self.run_dir / "state.json"
        want = {
            "subject": str(self.subject.root.resolve()),
            "preset": self.preset.name,
            "ablation": self.ablation.to_dict(),
            "seed": self.seed,
        }
        if path.exists():
            st = read_run_state(self.run_dir)
            for key, value in want.items():
                if st.get(key) != value:
                    raise ValueError(
                        f"{self.run_dir} was trained with {key}={st.get(key)!r}, not {value!r}; "
                        "use another --out for a different run"
                    )
            return st
        from etlib.backends import device_label, summary

        st = {**want, "completed": [], "seconds": {}, "device": device_label(self.device), "backends": summary(),
              "va_origin": self._resting_va()}  # fmt: skip
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(st, indent=2))
        return st

    def _resting_va(self) -> list[float] | None:
        """The origin of the run's valence/arousal labels: None (the judge's readings as they are) unless the
        emotion targets add an expression to the frame they are given (the offline generator). Then the
        subject's own frames must be labelled relative to its resting face, the median of their emotion track
        (:func:`~etlib.train.data.emotion_track`) over the training frames: a subject who rests with a smile (the
        sample subject reads as (0.7, 0.3)) would otherwise teach f_E that "happy" means "no change" while the
        generator's happy images say otherwise."""
        if not getattr(self.emotion_targets, "va_relative_to_source", False):
            return None
        track = emotion_track(np.load(self.subject.va), float(self.subject.meta().get("fps", 25.0)))
        return [round(float(x), 4) for x in np.median(track[self.subject.read_split()["train"]], axis=0)]

    def _save_state(self) -> None:
        validate_state(self.state, self.run_dir / "state.json")  # never write what could not be read back
        atomic_write_text(self.run_dir / "state.json", json.dumps(self.state, indent=2))

    def _set_aside(self, path: Path) -> Path:
        """Rename an unreadable checkpoint to ``<name>.corrupt`` (kept for inspection, never loaded again)."""
        bad = path.with_name(path.name + ".corrupt")
        path.replace(bad)
        return bad

    def _load_or_create_model(self) -> EmoTalkingGaussian:
        """The model of the last completed stage whose checkpoint loads. An unreadable one is reported by name
        and set aside, and its stage and the ones after it count as not done (they train again)."""
        while self.state["completed"]:
            stage = self.state["completed"][-1]
            path = model_path(self.run_dir, stage)
            try:
                return self._record_model(build_model(load_checkpoint(path), self.preset, device=self.device))
            except CheckpointError as err:
                self._forget_stages_from(stage, err, self._set_aside(path) if path.exists() else None)
        from etlib.backends import hash_backend_for

        torch.manual_seed(self.seed)

        def make() -> EmoTalkingGaussian:
            mouth, face = initial_gaussians(
                self.subject,
                self.preset.n_gaussians_face,
                self.preset.n_gaussians_mouth,
                self.data.train_ids,
                seed=self.seed,
            )
            return EmoTalkingGaussian(
                mouth,
                face,
                audio_in_dim=self.data.audio_channels,
                audio_window=self.data.audio_bins,
                audio_frames=self.preset.audio_window,
                au_dim=self.data.au.shape[1],
                hash_grid=self.preset.hash_grid,
                ablation=self.ablation,
                backend=hash_backend_for(self.device),
            )

        return self._record_model(new_model(make, self.device))

    def _record_model(self, model: EmoTalkingGaussian) -> EmoTalkingGaussian:
        """Note in the run's state (``state.json`` at its next save) the device and hash grid this run's model
        actually has (a run resumed on another machine records the new ones) and the rasterizer its tensors will pick;
        each stage then records the rasterizer its renders reported (``ran``)."""
        from etlib.backends import HASH_ENCODER_LABELS, RASTERIZER_LABELS, device_label
        from etlib.encoders import TcnnHashGrid
        from etlib.gaussians.rasterize import choose_backend

        grid = "tcnn" if any(isinstance(m, TcnnHashGrid) for m in model.modules()) else "torch"
        self.state["device"] = device_label(self.device)
        self.state["backends"] = {
            **self.state.get("backends", {}),
            "rasterizer": RASTERIZER_LABELS[choose_backend(model.face.means)],
            "hash_encoder": HASH_ENCODER_LABELS[grid],
        }
        return model

    def _forget_stages_from(self, stage: str, err: CheckpointError, moved: Path | None) -> None:
        """Mark ``stage`` and every later one not done (their mid-stage checkpoints and loss rows go too),
        after its checkpoint failed to load; say so on stderr and in ``state.json`` (``recovered``)."""
        dropped = list(STAGE_NAMES[STAGE_NAMES.index(stage) :])
        self.state["completed"] = [s for s in self.state["completed"] if s not in dropped]
        for name in dropped:
            self.state["seconds"].pop(name, None)
            self.state.get("skipped", {}).pop(name, None)
            self.state.get("ran", {}).pop(name, None)
            for path in latest_paths(self.run_dir, name):
                path.unlink(missing_ok=True)
        previous = self.state["completed"][-1] if self.state["completed"] else None
        resume = (
            f"resuming from {model_path(self.run_dir, previous).name} and training {stage} again"
            if previous
            else "no good checkpoint is left, so training starts again from the first stage"
        )
        _note(f"{err}; {resume}" + (f" (the bad file is kept as {moved.name})" if moved else ""))
        self.state.setdefault("recovered", []).append(
            {
                "checkpoint": str(model_path(self.run_dir, stage).relative_to(self.run_dir)),
                "error": str(err),
                "resumed_from": previous,
            }
        )
        self._save_state()
        if (self.run_dir / "losses.csv").exists():
            self.history = [r for r in self._read_history() if r["stage"] not in dropped]
            self._write_history()

    def _read_history(self) -> list[dict[str, float]]:
        path = self.run_dir / "losses.csv"
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        keys = lines[0].split(",")
        return [
            {k: (v if k == "stage" else float(v)) for k, v in zip(keys, line.split(",")) if v != ""}
            for line in lines[1:]
        ]

    def _write_history(self) -> None:
        keys: list[str] = ["stage", "iteration", "loss"]
        for row in self.history:
            keys += [k for k in row if k not in keys]
        lines = [",".join(keys)] + [",".join(str(row.get(k, "")) for k in keys) for row in self.history]
        atomic_write_text(self.run_dir / "losses.csv", "\n".join(lines) + "\n")

    # -- stage set-up --------------------------------------------------------------------------------
    def _stage_iterations(self, stage: Stage) -> int:
        return int(self.preset.iterations.as_dict()[stage.name])

    def _stage_networks(self, stage: Stage) -> tuple[str, ...]:
        """The networks ``stage`` optimises. The emotion stage (Eq. S15) trains the network that takes valence/arousal:
        f_E (Eq. 5); in the "Combined face b." variant of Table 4, the face branch f_F that takes them instead, on the
        same emotional images with the same loss and schedule, so that the variant differs from the full model only in
        where e enters; in "w/o emo. b." none (the stage is skipped)."""
        if stage.name != "emotion_network" or self.model.f_E is not None:
            return stage.networks
        return ("f_F",) if self.ablation.combined_face_branch else ()

    def _skip_reason(self, stage: Stage) -> str | None:
        if stage.name == "emotion_network" and not self._stage_networks(stage):
            return "this ablation has no emotion branch"
        return None

    def _optimizers(self, stage: Stage) -> tuple[dict[str, torch.optim.Optimizer], torch.optim.Optimizer | None]:
        gauss_opts: dict[str, torch.optim.Optimizer] = {}
        if stage.gaussians is not None:
            g: GaussianSet = getattr(self.model, stage.gaussians)
            gauss_opts = g.make_optimizers()
            if stage.gaussian_params is not None:  # fine-tuning: opacity and colour only
                gauss_opts = {k: v for k, v in gauss_opts.items() if k in stage.gaussian_params}
        groups = []
        lr_hash = OPTIMIZER.lr_hash_encoder  # the hash tables already move fast (5e-3)
        scale = self.preset.network_lr_scale
        if stage.name == "emotion_network" and self.preset.emotion_lr_scale is not None:
            scale = self.preset.emotion_lr_scale
        lr_other = OPTIMIZER.lr_other * scale
        for name in self._stage_networks(stage):
            parts = self.model.network_parameters()[name]
            groups.append({"params": parts["hash"], "lr": lr_hash, "base_lr": lr_hash})
            groups.append({"params": parts["other"], "lr": lr_other, "base_lr": lr_other})
        net_opt = torch.optim.AdamW(groups) if groups else None
        for opt in gauss_opts.values():
            for group in opt.param_groups:
                group["base_lr"] = group["lr"]
        return gauss_opts, net_opt

    def _densifier(self, stage: Stage, gauss_opts, iterations: int) -> Densifier | None:
        if not stage.densify:
            return None
        stop = max(1, int(self.preset.densify_until_fraction * iterations))
        every = max(1, min(self.preset.densify_every, stop // 2 or 1))
        return Densifier(
            getattr(self.model, stage.gaussians),
            gauss_opts,
            refine_start_iter=every,
            refine_stop_iter=stop,
            refine_every=every,
            reset_every=iterations + 1,  # no opacity reset within these short schedules
            prune_opa=0.005,
            grow_grad2d=0.0002,
            verbose=False,
        )

    # -- losses ------------------------------------------------------------------------------------------
    def _image_terms(self, pred, target, w1: float, w_lpips: float) -> dict[str, torch.Tensor]:
        terms = {"l1": losses.l1(pred, target), "dssim": (w1, losses.d_ssim(pred, target))}
        if w_lpips and self.lpips.available:
            terms["lpips"] = (w_lpips, self.lpips(pred, target))
        return terms

    def _face_layer_terms(
        self,
        out,
        image,
        mask,
        w1: float,
        w_lpips: float,
        landmarks: torch.Tensor | None = None,
        changed: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The image terms of the face layer (Eqs. S13-S15) with the layer and ``image * mask`` both over
        :data:`FACE_KEY_COLOR`, so the face is transparent where the frame is not face (the open mouth).
        Given the frame's 68 ``landmarks``, also the preset's extra L1 on the lips' box (``lip_region_l1``); given
        the region an emotion target ``changed``, the preset's extra L1 over it (``emotion_region_l1``)."""
        key = out.color.new_tensor(FACE_KEY_COLOR)
        pred = out.color + key * (1 - out.alpha)
        target = image * mask + key * (1 - mask)
        terms = self._image_terms(pred, target, w1, w_lpips)
        if landmarks is not None and self.preset.lip_region_l1:
            rows, cols = losses.lip_box(landmarks, pred.shape[0])
            terms["lip_l1"] = (self.preset.lip_region_l1, losses.l1(pred[rows, cols], target[rows, cols]))
        if changed is not None and self.preset.emotion_region_l1:
            terms["emotion_l1"] = (self.preset.emotion_region_l1, losses.masked_l1(pred, target, changed))
        return terms

    def _normal_terms(self, out, target_normal, mask, layer, w_l1, w_tv, w_dn) -> dict[str, Any]:
        if not self.ablation.normal_loss:
            return {}
        return {
            "normal_l1": (w_l1, losses.normal_l1(out.normal, target_normal * mask, mask)),
            "normal_tv": (w_tv, losses.total_variation(out.normal)),
            "dn": (w_dn, losses.residual_norm(layer.dn)),
        }

    def _sync_term(self, stage: Stage, s: Sample, weight: float, rng: np.random.Generator, it: int) -> dict[str, Any]:
        if self.sync is None or weight == 0 or not self.sync.applies(it):
            return {}
        deform_face = stage.name != "mouth_network" or "face_network" in self.state["completed"]
        return {"sync": (weight, self.sync(self.model, stage.name, s.index, rng, deform_face))}

    def _emotion_target(self, sample: Sample, rng: np.random.Generator):
        """g_LEF's image at a random e (S4.1) for the preset's ``emotion_target_share`` of the steps, else the frame
        itself at its measured emotion.
        Returns ``(va, image, face mask, normal map, changed region)``; the region (where the target differs from
        the frame, :func:`etlib.losses.changed_region`) is None for the frame itself."""
        if self.emotion_targets is None or rng.random() >= self.preset.emotion_target_share:
            return self.data.va[sample.index], sample.image, sample.face_mask, sample.normal, None
        from etlib.preprocess.masks import frame_masks
        from etlib.preprocess.normals import render_normal_map
        from etlib.preprocess.pose import HeadPose, project_forehead

        radius, angle = np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        va = np.array([radius * np.cos(angle), radius * np.sin(angle)], np.float32)
        frame = (sample.image.cpu().numpy() * 255).round().astype(np.uint8)
        image, landmarks = self.emotion_targets(frame, sample.landmarks.numpy(), va)
        i = sample.index
        pose = HeadPose(self.data.K, self.data.w2c[i : i + 1], np.zeros(1), np.zeros(1))
        forehead = project_forehead(pose)[0]
        masks = frame_masks(image, landmarks, forehead)
        normal = render_normal_map(np.concatenate([landmarks, forehead]), self.data.w2c[i, :3, :3], image.shape[0])
        dev = self.device
        target = torch.from_numpy(image.astype(np.float32) / 255.0).to(dev)
        return (
            va,
            target,
            torch.from_numpy(masks["face"][..., None].astype(np.float32)).to(dev),
            torch.from_numpy(normal).to(dev),
            losses.changed_region(target, sample.image),
        )

    def stage_loss(
        self, stage: Stage, s: Sample, rng: np.random.Generator, it: int = 0
    ) -> tuple[torch.Tensor, dict, dict]:
        """Total loss, its weighted terms, and the rasterizer meta of the optimised layer."""
        m, w = self.model, stage.weights
        if stage.name == "mouth_canonical":  # Eq. S11
            out = m.render_layer(m.mouth_layer(None, deform=False), s.camera)
            terms = self._image_terms(out.color, s.image * s.mouth_mask, w.gamma1_dssim, 0)
        elif stage.name == "face_canonical":  # Eq. S13
            layer = m.face_layer(None, deform=False)
            out = m.render_layer(layer, s.camera, normals=self.ablation.normal_loss)
            terms = self._face_layer_terms(out, s.image, s.face_mask, w.gamma1_dssim, 0)
            terms |= self._normal_terms(
                out, s.normal, s.face_mask, layer, w.gamma2_normal_l1, w.gamma3_normal_tv, w.gamma4_normal_residual
            )
        elif stage.name == "mouth_network":  # Eq. S12
            out = m.render_layer(m.mouth_layer(s.cond), s.camera)
            terms = self._image_terms(out.color, s.image * s.mouth_mask, w.beta1_dssim, w.beta2_lpips)
            terms |= self._sync_term(stage, s, w.beta6_sync, rng, it)
        elif stage.name == "face_network":  # Eq. S14
            layer = m.face_layer(s.cond, emotion=False)
            out = m.render_layer(layer, s.camera, normals=self.ablation.normal_loss)
            terms = self._face_layer_terms(out, s.image, s.face_mask, w.beta1_dssim, w.beta2_lpips, s.landmarks)
            terms |= self._normal_terms(
                out, s.normal, s.face_mask, layer, w.beta3_normal_l1, w.beta4_normal_tv, w.beta5_normal_residual
            )
            terms |= self._sync_term(stage, s, w.beta6_sync, rng, it)
        elif stage.name == "emotion_network":  # Eq. S15
            va, image, mask, normal, changed = self._emotion_target(s, rng)
            cond = self.data.condition(s.index, va=va, check_va=False)  # relative labels may leave [-1, 1]
            layer = m.face_layer(cond, emotion=True)
            out = m.render_layer(layer, s.camera, normals=self.ablation.normal_loss)
            terms = self._face_layer_terms(out, image, mask, w.beta1_dssim, w.beta2_lpips, changed=changed)
            terms |= self._normal_terms(
                out, normal, mask, layer, w.beta3_normal_l1, w.beta4_normal_tv, w.beta5_normal_residual
            )
            terms |= self._sync_term(stage, s, w.beta6_sync, rng, it)
        elif stage.name == "finetune":  # Eq. S16 on the composite of Eq. S10
            frame = m(s.camera, s.cond, s.background)
            out = frame.face
            terms = self._image_terms(frame.image, s.image, w.eta1_dssim, w.eta2_lpips)
        else:
            raise ValueError(stage.name)
        total = torch.zeros((), device=self.device)
        values = []
        for term in terms.values():
            weight, value = (1.0, term) if isinstance(term, torch.Tensor) else term
            total = total + weight * value
            values.append(value.detach().reshape(()))
        # one copy to the host for all terms: on a GPU each float() would wait for the queue on its own
        logged = dict(zip(terms, torch.stack(values).tolist())) if values else {}
        return total, logged, out.meta

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _latest_path(self, stage: Stage) -> Path:
        return latest_paths(self.run_dir, stage.name)[0]

    def _check_finite_parameters(self, stage: Stage, iteration: int) -> None:
        """Refuse to save a model with a NaN or infinite parameter (a finite loss can still step into one)."""
        for layer in ("mouth", "face"):
            for key, value in getattr(self.model, layer).tensors().items():
                if not torch.isfinite(value).all():
                    raise NonFiniteError(
                        f"stage {stage.name}, step {iteration}: the {layer} Gaussians' {key} became non-finite, so "
                        f"nothing of this step was saved; {self._resume_hint(stage)}"
                    )
        for name in ("f_M", "f_F", "f_E"):
            net = getattr(self.model, name)
            if net is None:
                continue
            for key, value in net.state_dict().items():
                if torch.is_floating_point(value) and not torch.isfinite(value).all():
                    raise NonFiniteError(
                        f"stage {stage.name}, step {iteration}: {name}.{key} became non-finite, so nothing of this "
                        f"step was saved; {self._resume_hint(stage)}"
                    )

    def _resume_hint(self, stage: Stage) -> str:
        """Where a re-run would resume after a stage stopped, and what to try."""
        latest, previous = latest_paths(self.run_dir, stage.name)
        done = self.state["completed"]
        kept = next((p.name for p in (latest, previous) if p.exists()), None)
        kept = kept or (model_path(self.run_dir, done[-1]).name if done else None)
        where = f"the last good checkpoint, {kept}, is kept" if kept else "no checkpoint of this run was written yet"
        return (
            f"{where}. Check the subject's report.json for bad frames or use a smaller learning rate "
            "(config.OPTIMIZER), then run the same command again"
        )

    def _check_finite_loss(self, stage: Stage, iteration: int, total: torch.Tensor, terms: dict[str, float]) -> None:
        """Stop the stage, before backward, step or checkpoint, when a loss term is NaN or infinite."""
        bad = [(name, value) for name, value in terms.items() if not math.isfinite(value)]
        if not bad and not torch.isfinite(total.detach()).all():
            bad = [("total (weighted sum)", float(total.detach()))]
        if bad:
            name, value = bad[0]
            raise NonFiniteError(
                f"stage {stage.name}, step {iteration}: loss term {name} is {value} (not finite), so training "
                f"stopped before the update and nothing of this step was saved; {self._resume_hint(stage)}"
            )

    def _save_latest(self, stage, iteration, gauss_opts, net_opt, densifier, rng) -> None:
        """The mid-stage checkpoint after ``iteration``; the previous one is kept as a fall-back."""
        self._check_finite_parameters(stage, iteration)
        latest, previous = latest_paths(self.run_dir, stage.name)
        if latest.exists():
            latest.replace(previous)
        atomic_torch_save(
            {
                "stage": stage.name,
                "iteration": iteration,
                "model": model_state(self.model),
                "gauss_opts": {k: o.state_dict() for k, o in gauss_opts.items()},
                "net_opt": net_opt.state_dict() if net_opt else None,
                "densifier": densifier.state if densifier else None,
                "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                # gsplat's densification draws its splits on the GPU: a resumed CUDA run needs this generator too
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "history_len": len(self.history),
            },
            self._latest_path(stage),
        )
        self._write_history()

    def _restore_latest(self, stage: Stage) -> dict[str, Any] | None:
        """The newest mid-stage checkpoint of ``stage`` that loads (the model is restored from it), or None.
        An unreadable one is reported by name and set aside."""
        failed = False
        for path in latest_paths(self.run_dir, stage.name):
            if not path.exists():
                continue
            try:
                ckpt = load_checkpoint(path)
                model = build_model(ckpt["model"], self.preset, device=self.device)
                if ckpt.get("stage") != stage.name:
                    raise CheckpointError(f"checkpoint {path} belongs to stage {ckpt.get('stage')!r}")
            except (CheckpointError, KeyError, ValueError) as err:
                moved = self._set_aside(path)
                _note(f"{err}; the file is kept as {moved.name}")
                self.state.setdefault("recovered", []).append(
                    {"checkpoint": str(path.relative_to(self.run_dir)), "error": str(err)}
                )
                self._save_state()
                failed = True
                continue
            if failed:
                _note(f"{stage.name} resumes from the older checkpoint {path.name} (after step {ckpt['iteration']})")
            self.model = model
            self.history = self.history[: ckpt["history_len"]]
            return ckpt
        if failed:
            _note(
                f"no readable mid-stage checkpoint of {stage.name} is left: the stage starts again from its beginning"
            )
        return None

    # -- main loop -----------------------------------------------------------------------------------------
    def run_stage(self, stage: Stage) -> None:
        iterations = self._stage_iterations(stage)
        start, ckpt = 0, self._restore_latest(stage)
        if ckpt is not None:
            start = ckpt["iteration"] + 1
        else:
            self.history = [r for r in self.history if r["stage"] != stage.name]  # rows of an abandoned attempt
        gauss_opts, net_opt = self._optimizers(stage)
        self.model.requires_grad_(False)
        for opt in [*gauss_opts.values(), *([net_opt] if net_opt else [])]:
            for group in opt.param_groups:
                for p in group["params"]:
                    p.requires_grad_(True)
        densifier = self._densifier(stage, gauss_opts, iterations)
        rng = np.random.default_rng([self.seed, STAGE_NAMES.index(stage.name)])
        if ckpt is not None:
            for k, o in gauss_opts.items():
                o.load_state_dict(ckpt["gauss_opts"][k])
            if net_opt is not None:
                net_opt.load_state_dict(ckpt["net_opt"])
            if densifier is not None:  # loaded on the CPU: its running gradient sums go back to the run's device
                densifier.state = {
                    k: v.to(self.device) if torch.is_tensor(v) else v for k, v in ckpt["densifier"].items()
                }
            rng.bit_generator.state = ckpt["numpy_rng"]
            torch.set_rng_state(ckpt["torch_rng"])
            if ckpt.get("cuda_rng") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        else:
            torch.manual_seed(self.seed * 1000 + STAGE_NAMES.index(stage.name))
        t0 = time.perf_counter()
        self._ran_rasterizer = set()
        bar = tqdm(
            range(start, iterations), desc=stage.name, initial=start, total=iterations, disable=not self.progress
        )
        with reuse_frozen_encodings(self.model):  # H(mu) of what this stage does not train: once per stage
            self._run_steps(stage, bar, iterations, gauss_opts, net_opt, densifier, rng)
        self._check_finite_parameters(stage, iterations - 1)
        atomic_torch_save(model_state(self.model), model_path(self.run_dir, stage.name))
        self._write_history()
        self._record_ran(stage)
        self.state["completed"].append(stage.name)
        self.state["seconds"][stage.name] = round(
            self.state["seconds"].get(stage.name, 0) + time.perf_counter() - t0, 2
        )
        self._record_optional_terms()
        self._save_state()
        for path in latest_paths(self.run_dir, stage.name):
            path.unlink(missing_ok=True)

    def _run_steps(self, stage: Stage, bar, iterations: int, gauss_opts, net_opt, densifier, rng) -> None:
        """The optimisation steps of one stage (the loop of :meth:`run_stage`)."""
        for it in bar:
            decay = OPTIMIZER.final_lr_fraction ** (it / max(1, iterations))  # exponential schedule (S1)
            for opt in [*gauss_opts.values(), *([net_opt] if net_opt else [])]:
                for group in opt.param_groups:
                    group["lr"] = group["base_lr"] * decay
            sample = self.data.sample(int(rng.choice(self.data.train_ids)))
            with reuse_encodings(self.model):  # H(mu) once for the frame and L_sync's five renders
                total, terms, meta = self.stage_loss(stage, sample, rng, it)
            self._check_finite_loss(stage, it, total, terms)
            self._ran_rasterizer.add(meta["backend"])
            if densifier is not None:
                densifier.step_pre_backward(it, meta)
            total.backward()
            for opt in [*gauss_opts.values(), *([net_opt] if net_opt else [])]:
                opt.step()
                opt.zero_grad(set_to_none=True)
            if densifier is not None:
                densifier.step_post_backward(it, meta)
            loss = float(total.detach())
            self.history.append({"stage": stage.name, "iteration": it, "loss": loss, **terms})
            bar.set_postfix(loss=f"{loss:.4f}", n=len(getattr(self.model, stage.gaussians or "face")))
            if (it + 1) % self.preset.checkpoint_every == 0 and it + 1 < iterations:
                self._save_latest(stage, it, gauss_opts, net_opt, densifier, rng)

    def _record_ran(self, stage: Stage) -> None:
        """``state["ran"][stage]``: the device, the rasterizer the stage's renders reported (``meta["backend"]``) and
        the hash grid of the model, i.e. what ran rather than what this machine could run; ``backends`` follows."""
        from etlib.backends import RASTERIZER_LABELS, device_label

        self._record_model(self.model)
        ran = {"device": device_label(self.device), "hash_encoder": self.state["backends"]["hash_encoder"]}
        if self._ran_rasterizer:  # a resumed stage whose last steps were all done before has nothing new to say
            ran["rasterizer"] = " + ".join(RASTERIZER_LABELS[b] for b in sorted(self._ran_rasterizer))
            self.state["backends"]["rasterizer"] = ran["rasterizer"]
        self.state.setdefault("ran", {})[stage.name] = ran

    def _dropped_terms(self) -> dict[str, str]:
        """The optional loss terms that are off in this run, and why."""
        dropped = {}
        if not self.lpips.available:
            dropped["lpips"] = f"unavailable: {self.lpips.reason}"
        if self.sync is None:
            dropped["sync"] = (
                "disabled by the ablation"
                if not self.ablation.sync_loss
                else "no SyncNet given (python -m etlib.train --syncnet PATH, e.g. the syncnet.pt that "
                "python -m etlib.evaluation.syncnet_check writes) and no lipsync_expert weights"
            )
        return dropped

    def _record_optional_terms(self) -> dict[str, str]:
        """Write the optional terms that are off (``terms_dropped``) and L_sync's SyncNet (``sync``) to the state."""
        dropped = self._dropped_terms()
        self.state.setdefault("terms_dropped", {}).update(dropped)
        if self.sync is not None:
            self.state["sync"] = self.sync.name
        return dropped

    def run(
        self, stages: Iterable[str] | None = None, on_stage_end: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Run the given stages (default: all) in order; completed ones are skipped."""
        from etlib.backends import torch_threads

        with torch_threads():
            return self._run(stages, on_stage_end)

    def _run(self, stages: Iterable[str] | None, on_stage_end: Callable[[str], None] | None) -> dict[str, Any]:
        wanted = list(STAGE_NAMES) if stages is None else [get_stage(s).name for s in stages]
        if any(s not in self.state["completed"] for s in wanted):  # say once, up front, what is off
            for term, why in self._record_optional_terms().items():
                _note(f"optional loss term {term} is off: {why} (recorded in {self.run_dir / 'state.json'})")
            self._save_state()
        for stage in STAGES:
            if stage.name in self.state["completed"]:
                continue
            if stage.name not in wanted:
                if any(STAGE_NAMES.index(w) > STAGE_NAMES.index(stage.name) for w in wanted):
                    raise RuntimeError(
                        f"stage {stage.name!r} must run before {', '.join(wanted)}; "
                        f"run `python -m etlib.train ... --stages {stage.name}` first"
                    )
                continue
            reason = self._skip_reason(stage)
            if reason:
                self.state["completed"].append(stage.name)
                self.state.setdefault("skipped", {})[stage.name] = reason
                atomic_torch_save(model_state(self.model), model_path(self.run_dir, stage.name))
                self._save_state()
                continue
            self.run_stage(stage)
            self.plot_losses()
            if on_stage_end:
                on_stage_end(stage.name)
        return self.state

    def plot_losses(self) -> Path:
        """``RUN/losses.png``: one panel per stage. Drawn on a bare Figure (no pyplot), so it neither
        switches a notebook's backend nor shows up in its output."""
        from matplotlib.figure import Figure

        stages = [s for s in STAGE_NAMES if any(r["stage"] == s for r in self.history)]
        fig = Figure(figsize=(3.2 * max(1, len(stages)), 2.8))
        axes = fig.subplots(1, max(1, len(stages)), squeeze=False)
        for ax, name in zip(axes[0], stages):
            rows = [r for r in self.history if r["stage"] == name]
            ax.plot([r["iteration"] for r in rows], [r["loss"] for r in rows], lw=0.8)
            ax.set_title(f"{name} ({get_stage(name).equation})", fontsize=9)
            ax.set_xlabel("iteration")
            ax.set_yscale("log")
        fig.tight_layout()
        path = self.run_dir / "losses.png"
        fig.savefig(path, dpi=90)
        return path


def default_emotion_targets() -> EmotionTargets:
    """The emotion stage's target maker: the offline generator with seamless cloning (S4.1); see
    :func:`etlib.emoface.targets.make_emotion_targets`."""
    from etlib.emoface.targets import make_emotion_targets

    return make_emotion_targets()

"""One device for a run, checked without a GPU: training, rendering and evaluation with torch's default device set
to ``meta`` while the run's device is the CPU.

A tensor that etlib creates without naming a device goes to torch's default device. On a GPU machine that is the
CPU while the run lives on CUDA: the first operation that mixes the two fails, or (worse) work silently runs on the
CPU. Here the default device is ``meta`` (tensors without storage) while every call passes ``device="cpu"``: any
tensor etlib makes on the default device instead of the run's meets a CPU tensor and fails loudly ("Tensor on
device cpu is not on the expected device meta"), or cannot be copied out of ``meta``.

Why not ``torch.set_default_device("meta")`` as such: it also redirects tensors that third-party code creates on
purpose on the default device and then moves, e.g. pytorch-msssim's Gaussian window (``torch.arange`` then
``.to(X.device)``) and gsplat's densification, which are device-correct on a GPU but cannot copy out of ``meta``
(``test_a_global_meta_default_also_trips_libraries`` shows it). :class:`EtlibDefaultDevice` is torch's own default
device mechanism (``torch.utils._device.DeviceContext``, what ``set_default_device`` installs) applied to the calls
that etlib's own code makes: a factory call from a file of ``etlib/``, directly or through torch's module code (the
parameters of a module etlib builds), gets ``meta``; every other call keeps the CPU (torch's own bookkeeping too:
torch 2.10's Adam makes its step counter on the default device). ``test_the_check_catches_a_tensor_on_the_default_device`` shows it catches what it
is for.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._device import DeviceContext, _device_constructors

import etlib
from etlib.config import StageIterations, get_preset

ETLIB_DIR = str(Path(etlib.__file__).resolve().parent)
TORCH_DIR = str(Path(torch.__file__).resolve().parent)


#: torch's code that makes tensors *for* its caller: a module's parameters and buffers, their initialisation.
TORCH_ON_BEHALF = tuple(
    str(Path(TORCH_DIR, *p)) for p in (("nn", "modules"), ("nn", "parameter.py"), ("nn", "init.py"))
)


def _called_from_etlib() -> bool:
    """Whether etlib made this factory call: directly, or through torch's module and initialisation code (an
    ``nn.Linear`` that etlib builds). Tensors torch makes for its own bookkeeping (an optimiser's step counter, made on
    the default device on purpose) are torch's affair, like any other library's."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
        if not frame.f_code.co_filename.startswith(TORCH_ON_BEHALF):
            return False
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(ETLIB_DIR)


class EtlibDefaultDevice(DeviceContext):
    """``with EtlibDefaultDevice("meta"):`` makes ``meta`` the default device of etlib's own factory calls
    (``torch.zeros``, ``torch.tensor``, ``torch.as_tensor``, an ``nn.Linear`` built by etlib...), like
    ``torch.set_default_device`` but leaving the calls of other libraries on the CPU. A ``with torch.device(...)``
    block inside it takes over, as it does over ``set_default_device``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _device_constructors() and kwargs.get("device") is None and _called_from_etlib():
            kwargs["device"] = self.device
        return func(*args, **kwargs)


@pytest.fixture
def meta_default():
    """etlib's default device is ``meta`` for the test's duration; one torch thread (these are small kernels)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with EtlibDefaultDevice("meta"):
        yield
    torch.set_num_threads(threads)


def _tiny_preset(steps: int = 6):
    """The smoke preset with a few steps a stage and a mid-stage checkpoint every 2 steps (so the resume path runs),
    L_sync every step and every emotion step on a generated target."""
    preset = get_preset("smoke")
    return preset.with_overrides(
        iterations=StageIterations(*(steps,) * 6), checkpoint_every=2, emotion_target_share=1.0
    )


def _syncnet(subject, out: Path, name: str = "smoke") -> Path:
    """A SyncNet of the smoke subject named ``name`` (2 steps: only its devices matter here), made before the meta
    block. The tables score Sync-E/C with another SyncNet than L_sync's (``etlib.evaluation.sync_scorer``)."""
    from etlib.audio.features import log_mel
    from etlib.audio.sync_metrics import mouth_crops
    from etlib.audio.syncnet import train_syncnet
    from etlib.io import read_audio

    crops = mouth_crops(
        np.stack([subject.read_frame(i) for i in range(subject.n_frames)]), np.load(subject.landmarks), (16, 32)
    )
    mel = log_mel(read_audio(subject.audio, sr=16000))
    path = out / f"syncnet_{name}.pt"
    train_syncnet(crops, mel, iterations=2, batch_size=4, checkpoint_path=path, progress=False, subject=name)
    return path


class Interrupted(Exception):
    """Stands for a killed process: raised right after the first mid-stage checkpoint is written."""


@pytest.fixture(scope="module")
def meta_run(smoke_subject, tmp_path_factory):
    """Every stage of the smoke subject trained on ``device="cpu"`` under the meta default: L_sync (its SyncNet on
    the run's device), LPIPS when its weights are cached, the offline generator's targets, densification, a
    mid-stage checkpoint, an interruption after it and the resume from it (model, optimisers, densifier, random
    generators). Returns the run folder, a SyncNet for the tables (not L_sync's) and the trainer's state."""
    from etlib.emoface.targets import make_emotion_targets
    from etlib.train import Trainer
    from etlib.train.sync import make_sync_loss

    out = tmp_path_factory.mktemp("meta_run")
    syncnet, scorer = _syncnet(smoke_subject, out, "l_sync"), _syncnet(smoke_subject, out, "evaluator")
    run = out / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with EtlibDefaultDevice("meta"):
            trainer = Trainer(smoke_subject.root, run, _tiny_preset(), progress=False,
                              emotion_targets=make_emotion_targets(), device="cpu")  # fmt: skip
            trainer.use_sync_loss(make_sync_loss(trainer.data, syncnet))
            original = trainer._save_latest

            def save_then_stop(*args, **kwargs):
                original(*args, **kwargs)
                raise Interrupted

            trainer._save_latest = save_then_stop
            with pytest.raises(Interrupted):
                trainer.run(["mouth_canonical", "mouth_network", "face_canonical"])
            resumed = Trainer(smoke_subject.root, run, _tiny_preset(), progress=False,
                              emotion_targets=make_emotion_targets(), device="cpu")  # fmt: skip
            resumed.use_sync_loss(make_sync_loss(resumed.data, syncnet))
            state = resumed.run()
    finally:
        torch.set_num_threads(threads)
    return run, scorer, state


def test_every_stage_trains_and_resumes_on_the_run_device(meta_run):
    from etlib.train.stages import STAGE_NAMES

    run, _, state = meta_run
    assert state["completed"] == list(STAGE_NAMES)
    assert state["device"] == "cpu" and set(state["ran"]) == set(STAGE_NAMES)
    for stage, ran in state["ran"].items():
        assert ran["device"] == "cpu", stage
        assert ran["hash_encoder"].startswith("etlib PyTorch hash grid"), stage
    # the stage that was interrupted and resumed still reports the rasterizer its renders used
    assert state["ran"]["face_canonical"]["rasterizer"] == "etlib tiled PyTorch rasterizer"
    assert state["backends"]["rasterizer"] == "etlib tiled PyTorch rasterizer"
    assert "L_sync" in state["sync"]


def test_rendering_on_the_run_device(meta_run, meta_default, tmp_path):
    from etlib.io import probe
    from etlib.render import render_video
    from etlib.widgets import HeadRenderer

    run, _, _ = meta_run
    video = render_video(run, tmp_path / "head.mp4", text="Hello there.", va="circle", progress=False, device="cpu")
    assert probe(video).video.duration > 0.3
    head = HeadRenderer.from_run(run, size=48, device="cpu")
    fast, full = head(0.5, -0.3, 1), head.render_full(0.5, -0.3, 1)
    assert fast.shape == (48, 48, 3) and np.array_equal(fast, full)


def test_evaluation_on_the_run_device(meta_run, meta_default, smoke_subject, tmp_path):
    from etlib.evaluation import paper_tables as ev
    from etlib.evaluation.emotion_visibility import measure_model
    from etlib.train import SubjectFrames, load_model
    from etlib.train.run_metrics import evaluate_emotion_clip, evaluate_model

    run, syncnet, _ = meta_run
    evaluation = ev.evaluate(smoke_subject.root, run, tmp_path / "eval", settings=ev.settings_for("smoke"),
                             syncnet_path=syncnet, progress=False, device="cpu")  # fmt: skip
    ours = {r["Method"]: r for r in evaluation.tables["table1"].rows}["Ours"]
    assert np.isfinite(ours["psnr"]) and np.isfinite(ours["sync_c"])
    assert evaluation.backends["device"].startswith("cpu")
    model = load_model(run, device="cpu").eval()
    data = SubjectFrames.for_run(run, model.config["audio_frames"], device="cpu")
    assert evaluate_model(model, data, data.test_ids[:3], progress=False)["frames"] == 3
    assert evaluate_emotion_clip(model, smoke_subject.root, max_frames=2, progress=False)["frames"] == 2
    report, _ = measure_model(model, data, n_frames=1, identity=False, progress=False)
    assert "renders" in report


def test_syncnet_check_on_the_run_device(meta_default, smoke_subject, tmp_path):
    from etlib.evaluation.syncnet_check import evaluate_subject

    report = evaluate_subject(smoke_subject.root, tmp_path, "smoke", iterations=2, tts=False, progress=False,
                              device="cpu")  # fmt: skip
    assert report["device"] == "cpu" and report["syncnet_training"]["iterations"] == 2


def test_the_check_catches_a_tensor_on_the_default_device(meta_default):
    """A function of an etlib module that makes a tensor without a device fails under the check; the same code
    passing the run's device, a library's call, and an explicit ``torch.device`` block do not."""
    source = (
        "import torch\n"
        "def forgets(x):\n    return x + torch.zeros(3)\n"
        "def passes(x):\n    return x + torch.zeros(3, device=x.device)\n"
        "def builds():\n    with torch.device('cpu'):\n        return torch.nn.Linear(3, 3)\n"
        "def builds_anywhere():\n    return torch.nn.Linear(3, 3)\n"
    )
    namespace: dict = {}
    exec(compile(source, str(Path(ETLIB_DIR) / "_device_probe.py"), "exec"), namespace)
    x = torch.ones(3, device="cpu")
    with pytest.raises((RuntimeError, NotImplementedError)):
        namespace["forgets"](x)
    assert namespace["passes"](x).device.type == "cpu"
    assert namespace["builds"]().weight.device.type == "cpu"
    assert namespace["builds_anywhere"]().weight.device.type == "meta"  # a module etlib builds without a device
    assert torch.zeros(2).device.type == "cpu"  # this test file is not etlib: the CPU, as without the check


def test_a_global_meta_default_also_trips_libraries():
    """Why the check is limited to etlib's calls: under ``torch.set_default_device("meta")`` a library's own,
    device-correct code fails (pytorch-msssim makes its window on the default device, then moves it)."""
    from etlib.losses import ssim

    image = torch.rand(16, 16, 3, device="cpu")
    torch.set_default_device("meta")
    try:
        with pytest.raises((RuntimeError, NotImplementedError)):
            ssim(image, image)
    finally:
        torch.set_default_device(None)
    with EtlibDefaultDevice("meta"):
        assert float(ssim(image, image)) == pytest.approx(1.0)


def test_devices_are_resolved_once_and_refused_when_missing(monkeypatch):
    from etlib import backends

    assert backends.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be"):
        backends.resolve_device("tpu")
    monkeypatch.setenv("ETLIB_FORCE_CPU", "1")
    backends.cuda_available.cache_clear()
    try:
        assert backends.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="ETLIB_FORCE_CPU"):
            backends.resolve_device("cuda")
        assert backends.hash_backend_for("cuda") == "torch" or backends.tinycudann_available()
    finally:
        backends.cuda_available.cache_clear()
        backends.tinycudann_available.cache_clear()
    assert backends.hash_backend_for("cpu") == "torch"
    assert backends.device_label("cpu") == "cpu"


def test_frames_and_model_are_made_on_the_run_device(meta_run):
    """The other half of the check: what etlib reads from disk or numpy (``torch.from_numpy``, a checkpoint loaded on
    the CPU) must be moved to the run's device, which the meta default above cannot see when the run is on the CPU.
    Here the run's device is ``meta`` itself (copies *to* meta work): every tensor of a sample, a condition, a camera
    and a background, and every tensor the model holds, must land there."""
    from etlib.train import SubjectFrames
    from etlib.train.checkpoints import load_checkpoint, model_path
    from etlib.train.stages import STAGE_NAMES
    from etlib.train.trainer import build_model

    run, _, state = meta_run
    data = SubjectFrames.for_run(run, 8, device="meta")
    i = data.train_ids[0]
    sample = data.sample(i)
    tensors = {name: getattr(sample, name) for name in ("image", "face_mask", "mouth_mask", "normal", "background")}
    cond, camera = data.condition(i, va=np.zeros(2, np.float32)), data.camera(i)
    tensors |= {"audio": cond.audio, "au": cond.au, "va": cond.va, "viewmat": camera.viewmat, "K": camera.K}
    tensors |= {"sample camera": sample.camera.viewmat, "background()": data.background(i)}
    assert {k: t.device.type for k, t in tensors.items()} == dict.fromkeys(tensors, "meta")
    assert sample.landmarks.device.type == "cpu"  # read by numpy-side code only (documented in Sample)

    model = build_model(load_checkpoint(model_path(run, STAGE_NAMES[-1])), _tiny_preset(), device="meta")
    held = {f"{m}.{k}": v for m, module in model.named_modules() for k, v in vars(module).items()
            if isinstance(v, torch.Tensor)}  # fmt: skip
    held |= dict(model.named_parameters()) | dict(model.named_buffers())
    assert held and {k: v.device.type for k, v in held.items()} == dict.fromkeys(held, "meta")

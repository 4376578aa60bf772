"""Text to speech for the curated audio of Sec. 3.3.2 / S5 (the paper uses coqui TTS [18]).

Two backends behind one function:

- ``"espeak"`` (offline, the default): espeak-ng from the ``espeakng-loader`` wheel, which ships
  ``libespeak-ng.so`` and its voice data. It is driven through ctypes in synchronous mode, in a
  short-lived worker process (``_espeak.py``: a fresh engine a call makes the output reproducible); a
  synth callback collects the 22.05 kHz int16 PCM and the word / phoneme events, which give the timing
  of every phoneme (handy for visemes). The PCM is resampled to ``sr`` with a polyphase filter.
- ``"coqui"``: coqui-tts (``TTS`` package) with a model already in its cache. It cannot share an
  environment with the CPU torch of this course; GPU users install it beside it (the ``gpu`` extra)
  and fetch the model once.

Results are cached on disk under a hash of the text and every parameter.
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

#: Voices worth trying: espeak-ng language codes, optionally with a ``+variant`` (m1-m7, f1-f5...).
ESPEAK_VOICES: tuple[str, ...] = ("en-us", "en", "en-gb", "en+m3", "en+f2", "en-us+m1", "en-us+f3", "en-gb+m7")
COQUI_DEFAULT_MODEL = "tts_models/en/ljspeech/vits"
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


def _coqui_model_dir(model: str) -> Path:
    """Where coqui-tts keeps a downloaded model (``$TTS_HOME`` or the user data dir)."""
    base = os.environ.get("TTS_HOME") or os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tts" / model.replace("/", "--")


def _coqui_synth(text: str, model: str) -> tuple[np.ndarray, int]:
    how = (
        f"install coqui-tts in a separate environment (it needs its own torch; see the `gpu` extra) and "
        f"fetch the model once with: python -c \"from TTS.api import TTS; TTS('{model}')\""
    )
    try:
        from TTS.api import TTS
    except ImportError as err:
        raise TTSBackendError(f"the coqui backend needs the coqui-tts package (model {model}): {how}") from err
    if not _coqui_model_dir(model).is_dir():
        raise TTSBackendError(f"coqui model {model} is not cached at {_coqui_model_dir(model)}: {how}")
    engine = TTS(model, progress_bar=False)
    wav = np.asarray(engine.tts(text), dtype=np.float32)
    return wav, int(engine.synthesizer.output_sample_rate)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def _default_cache_dir() -> Path:
    from etlib.config import outputs_dir

    return Path(os.environ.get("ETLIB_TTS_CACHE", outputs_dir() / "cache" / "tts"))


def _resolve_backend(backend: str) -> str:
    if backend not in ("auto", "espeak", "coqui"):
        raise ValueError(f"unknown TTS backend {backend!r}: choose 'auto', 'espeak' or 'coqui'")
    if backend != "auto":
        return backend
    return "espeak" if espeak_available() else "coqui"


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
    timed word and phoneme events (espeak only; coqui gives an empty list).

    Args:
        voice: espeak-ng voice (``"en-us"``, ``"en"``, ``"en-gb"``, ``"en+m3"``, ``"en+f2"``...) or,
            for coqui, a model name (``"tts_models/en/ljspeech/vits"``; other voices select the default).
        rate: words a minute (espeak: 80-450). pitch: 0-100 (espeak).
        cache_dir: where results are kept (a hash of text and parameters names the file); None uses
            ``$ETLIB_TTS_CACHE`` or ``outputs/cache/tts``; False disables the cache.
        backend: ``"espeak"``, ``"coqui"``, or ``"auto"`` (espeak when available, else coqui).
    """
    if not text or not text.strip():
        raise ValueError("nothing to say: text is empty")
    if not 80 <= rate <= 450:
        raise ValueError(f"rate is words a minute and must lie in 80..450, got {rate}")
    if not 0 <= pitch <= 100:
        raise ValueError(f"pitch must lie in 0..100, got {pitch}")
    backend = _resolve_backend(backend)
    params = {"v": _CACHE_VERSION, "text": text, "voice": voice, "rate": rate, "pitch": pitch}
    params.update(sr=sr, backend=backend)
    if backend == "espeak":
        params["engine"] = espeak_version()
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
    else:
        model = voice if voice.startswith("tts_models/") else COQUI_DEFAULT_MODEL
        raw, raw_sr = _coqui_synth(text, model)
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

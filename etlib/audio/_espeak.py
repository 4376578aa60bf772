"""espeak-ng through ctypes, run as a short-lived worker process (stdlib only, starts in ~50 ms).

espeak-ng keeps global state between utterances (a pitch-flutter phase and the wave generator's
phase), so two calls in one process give slightly different waveforms. A fresh process for every
request makes the speech a pure function of (text, voice, rate, pitch): reproducible and cacheable.

Protocol: a JSON request ``{"text", "voice", "rate", "pitch"}`` on stdin; on stdout one JSON line
``{"sample_rate", "version", "events": [[kind, ms, text_position, length, label], ...]}`` followed by
the int16 little-endian PCM. Errors: a JSON line ``{"error": ...}`` and exit status 2.
"""

from __future__ import annotations

import ctypes
import json
import sys

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH = 1, 2, 3
EVENT_WORD, EVENT_PHONEME = 1, 7
_EVENT_LIST_TERMINATED = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def synth(text: str, voice: str, rate: int, pitch: int) -> tuple[dict, bytes]:
    """Speak ``text`` with a freshly initialised espeak-ng; return (header, int16 PCM bytes)."""
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_Callback]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]  # fmt: skip
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    data_path = espeakng_loader.get_data_path().encode()
    sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INIT_PHONEME_EVENTS)
    if sample_rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed with data path {data_path.decode()}")
    pcm = bytearray()
    events: list[list] = []

    def on_synth(wav, numsamples, evs) -> int:
        if numsamples > 0 and wav:
            pcm.extend(ctypes.string_at(wav, numsamples * 2))
        i = 0
        while evs[i].type != _EVENT_LIST_TERMINATED:
            e = evs[i]
            if e.type in (EVENT_WORD, EVENT_PHONEME):
                label = bytes(e.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                events.append([e.type, e.audio_position, e.text_position, e.length, label])
            i += 1
        return 0  # 0: go on

    callback = _Callback(on_synth)
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise LookupError(voice)
    lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
    lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
    lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
    lib.espeak_ng_SetRandSeed(0)
    raw = text.encode("utf-8") + b"\0"
    err = lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    if err != 0:
        raise RuntimeError(f"espeak_Synth failed with error {err}")
    version = lib.espeak_Info(None).decode()
    return {"sample_rate": sample_rate, "version": version, "events": events}, bytes(pcm)


def main() -> int:
    req = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    try:
        header, pcm = synth(req["text"], req["voice"], req["rate"], req["pitch"])
    except LookupError as err:
        sys.stdout.write(json.dumps({"error": f"no voice {err}"}) + "\n")
        return 2
    except (ImportError, OSError, RuntimeError) as err:
        sys.stdout.write(json.dumps({"error": f"{type(err).__name__}: {err}"}) + "\n")
        return 2
    out = sys.stdout.buffer
    out.write(json.dumps(header).encode() + b"\n")
    out.write(pcm)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Audio for the talking head: the curated sentences of Sec. S5 and text to speech (Sec. 3.3.2)."""

from etlib.audio.sentences import CURATED_SENTENCES, CuratedSentence, curated_texts
from etlib.audio.tts import (
    ESPEAK_VOICES,
    SpeechEvent,
    TTSBackendError,
    coqui_available,
    espeak_available,
    piper_available,
    resolve_backend,
    synthesize,
    synthesize_with_events,
    voice_name,
)

__all__ = [
    "CURATED_SENTENCES",
    "ESPEAK_VOICES",
    "CuratedSentence",
    "SpeechEvent",
    "TTSBackendError",
    "curated_texts",
    "coqui_available",
    "espeak_available",
    "piper_available",
    "resolve_backend",
    "synthesize",
    "synthesize_with_events",
    "voice_name",
]

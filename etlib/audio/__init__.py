"""Audio for the talking head: the curated sentences of Sec. S5 and text to speech (Sec. 3.3.2)."""

from etlib.audio.sentences import CURATED_SENTENCES, CuratedSentence, curated_texts
from etlib.audio.tts import (
    ESPEAK_VOICES,
    SpeechEvent,
    TTSBackendError,
    espeak_available,
    synthesize,
    synthesize_with_events,
)

__all__ = [
    "CURATED_SENTENCES",
    "ESPEAK_VOICES",
    "CuratedSentence",
    "SpeechEvent",
    "TTSBackendError",
    "curated_texts",
    "espeak_available",
    "synthesize",
    "synthesize_with_events",
]

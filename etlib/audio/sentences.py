"""The ten curated sentences of Sec. S5 (Sec. 3.3.2), with the paper's phonetic notes.

The paper prompts ChatGPT for ten texts covering English phonetic variation and speaks them with a
TTS network [18]; the synthetic speech trains lip sync on sounds the subject's video lacks (Eq. 9).
Notation is IPA, transcribed from the paper's ASCII rendering (``/Di:/`` -> ``/ði:/``, ``Ä`` -> ``ɚ``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CuratedSentence:
    """One sentence of Sec. S5: its text, per-word phonetic notation and the phenomena it covers."""

    index: int
    text: str
    phonetic: tuple[str, ...]
    notes: dict[str, str]


CURATED_SENTENCES: tuple[CuratedSentence, ...] = (
    CuratedSentence(
        1,
        "The quick brown fox jumps over the lazy dog.",
        ("/ði:/", "/kwɪk/", "/braʊn/", "/fɑ:ks/", "/dʒʌmps/", "/ˈoʊvɚ/", "/ði:/", "/ˈleɪzi/", "/dɑg/"),
        {
            "sound coverage": "nearly all English consonants and vowels",
            "liaison": "/r/ liaison in 'over the' (/oʊvə ðə/)",
            "stress": "content words quick, brown, fox, jumps, over, lazy, dog are stressed",
            "weak form": "'The' (/ðə/)",
        },
    ),
    CuratedSentence(
        2,
        "She's going to buy some new clothes at the mall.",
        ("/ʃi:z/", "/ˈgoʊɪŋ/", "/tu:/", "/baɪ/", "/sʌm/", "/nu:/", "/kloʊðz/", "/æt/", "/ði:/", "/mɑ:l/"),
        {
            "diphthongs": "/aɪ/ (buy), /oʊ/ (clothes)",
            "weak forms": "'to' /tə/, 'some' /səm/, 'at' /ət/, 'the' /ðə/",
        },
    ),
    CuratedSentence(
        3,
        "I can't believe it's already half past eight!",
        ("/aɪ/", "/kænt/", "/bɪˈli:v/", "/ɪts/", "/ɑ:lˈredi/", "/hæf/", "/pæst/", "/eɪt/"),
        {
            "contractions": "'can't' as /kænt/, 'it's' as /ɪts/",
            "stress": "can't, believe, already, half and eight are stressed",
            "silent letters": "the 'l' in 'half' is silent",
        },
    ),
    CuratedSentence(
        4,
        "Do you want to grab some water?",
        ("/du:/", "/ju:/", "/wɑ:nt/", "/tu:/", "/græb/", "/sʌm/", "/ˈwɑ:t̬ɚ/"),
        {
            "r-pronunciation": "'water' is pronounced /ˈwɑ:t̬ɚ/",
            "weak forms": "'to' /tə/, 'some' /səm/",
        },
    ),
    CuratedSentence(
        5,
        "Better late than never, they say.",
        ("/ˈbet̬ɚ/", "/leɪt/", "/ðæn/", "/ˈnevɚ/", "/ðeɪ/", "/seɪ/"),
        {
            "flapping": "'better' sounds like /ˈbet̬ɚ/ with a flapped t",
            "liaison": "connection in 'than never' with n",
            "weak form": "'than' (/ðən/)",
        },
    ),
    CuratedSentence(
        6,
        "She needs to see the doctor immediately.",
        ("/ʃi:/", "/ni:ds/", "/tu:/", "/si:/", "/ði:/", "/ˈdɑ:ktɚ/", "/ɪˈmi:diətli/"),
        {
            "long vowel": "long /i:/ in 'needs' and 'see'",
            "stress": "needs, see, doctor and immediately are stressed",
            "weak forms": "'to' /tə/, 'the' /ðə/",
        },
    ),
    CuratedSentence(
        7,
        "Did you eat yet?",
        ("/dɪd/", "/ju:/", "/i:t/", "/jet/"),
        {
            "liaison /j/": "'Did you' sounds like /dɪdʒu:/",
            "stress": "'eat' is stressed",
        },
    ),
    CuratedSentence(
        8,
        "Next stop is Central Park.",
        ("/nekst/", "/stɑ:p/", "/ɪz/", "/ˈsentrəl/", "/pɑ:rk/"),
        {
            "consonant cluster": "/ˈsentrəl/ in 'central'",
            "elision": "the 't' is dropped in 'next stop', sounding like /nɛks stɑp/",
            "stress": "next, stop, Central and Park are stressed",
        },
    ),
    CuratedSentence(
        9,
        "An unknown number called me yesterday.",
        ("/æn/", "/ʌnˈnoʊn/", "/ˈnʌmbɚ/", "/kɑ:ld/", "/mi:/", "/ˈjestɚdeɪ/"),
        {
            "double consonant": "the n is lengthened in 'unknown' (/nˈn/)",
            "r-pronunciation": "'number' has an r-coloured schwa (/ɚ/)",
            "stress": "unknown, number, called and yesterday are stressed",
            "weak form": "'An' (/ən/)",
        },
    ),
    CuratedSentence(
        10,
        "We can meet at the café if you'd like.",
        ("/wi:/", "/kæn/", "/mi:t/", "/æt/", "/ði:/", "/kæˈfeɪ/", "/ɪf/", "/ju:d/", "/laɪk/"),
        {
            "contraction": "'you'd' pronounced /ju:d/",
            "stress": "meet, café and like are stressed",
            "weak forms": "'can' /kən/, 'at' /ət/, 'the' /ðə/",
        },
    ),
)


def curated_texts() -> list[str]:
    """The ten sentence texts, in the paper's order."""
    return [s.text for s in CURATED_SENTENCES]

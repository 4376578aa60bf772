"""Speech, blink and head motion for the sample subject, and the rig that turns controls into
landmark motion. Independent of ``etlib`` (numpy and scipy only).

- Visemes: every espeak-ng phoneme event gets a mouth opening and a lip spread/rounding target;
  targets are held until the next phoneme, gated by the audio loudness (so pauses close the mouth),
  smoothed for coarticulation and averaged over each frame's 40 ms.
- Blinks: random-ish times (a seeded generator), a 7-frame close-open profile.
- Head: yaw, pitch, roll as sums of slow sinusoids with seeded phases, within +-10 degrees.
"""

from __future__ import annotations

import numpy as np
from sample_subject_expression import CONTROLS
from scipy.ndimage import gaussian_filter1d

# espeak-ng phoneme mnemonics (stress marks removed) -> (mouth opening 0..1, spread +1 / round -1)
_VOWELS = {
    "a": (0.95, 0.2), "aI": (0.9, 0.2), "aU": (0.9, -0.3), "A:": (1.0, 0.0), "A@": (0.9, 0.0),
    "0": (0.85, -0.3), "O:": (0.7, -0.6), "O@": (0.7, -0.5), "OI": (0.65, -0.5), "V": (0.7, 0.0),
    "a#": (0.75, 0.0), "E": (0.65, 0.4), "e": (0.6, 0.4), "eI": (0.6, 0.5), "e@": (0.6, 0.3),
    "3": (0.5, 0.0), "3:": (0.5, 0.0), "@": (0.45, 0.0), "@2": (0.4, 0.0), "@5": (0.4, 0.0),
    "@L": (0.4, 0.0), "I@": (0.45, 0.3), "U@": (0.45, -0.6), "i": (0.3, 0.8), "i:": (0.3, 0.9),
    "I": (0.35, 0.6), "I2": (0.35, 0.5), "i@": (0.35, 0.6), "u:": (0.3, -0.9), "U": (0.35, -0.7),
    "oU": (0.55, -0.8), "o@": (0.55, -0.6), "aa": (0.95, 0.1),
}  # fmt: skip
_CONSONANTS = {
    "p": (0.0, 0.0), "b": (0.0, 0.0), "m": (0.0, 0.0), "f": (0.08, 0.1), "v": (0.08, 0.1),
    "T": (0.22, 0.2), "D": (0.2, 0.2), "s": (0.12, 0.4), "z": (0.12, 0.4), "S": (0.15, -0.5),
    "Z": (0.15, -0.5), "tS": (0.15, -0.5), "dZ": (0.15, -0.5), "t": (0.2, 0.2), "d": (0.2, 0.2),
    "n": (0.2, 0.2), "l": (0.3, 0.2), "r": (0.25, -0.4), "r-": (0.25, -0.4), "k": (0.28, 0.0),
    "g": (0.28, 0.0), "N": (0.25, 0.0), "h": (0.35, 0.0), "j": (0.25, 0.5), "w": (0.12, -0.9),
    "t#": (0.2, 0.2), "_": (0.0, 0.0), "_:": (0.0, 0.0), "_!": (0.0, 0.0), "?": (0.1, 0.0),
}  # fmt: skip


def viseme(phoneme: str) -> tuple[float, float]:
    """(opening, spread) target of one espeak phoneme mnemonic."""
    p = phoneme.replace("'", "").replace(",", "").replace("%", "").replace("=", "")
    for table in (_VOWELS, _CONSONANTS):
        if p in table:
            return table[p]
    if p[:2] in _VOWELS:
        return _VOWELS[p[:2]]
    if p[:1] in _VOWELS:
        return _VOWELS[p[:1]]
    if p[:1] in _CONSONANTS:
        return _CONSONANTS[p[:1]]
    return (0.25, 0.0)


def loudness_envelope(audio: np.ndarray, sr: int, rate: float = 100.0) -> np.ndarray:
    """RMS loudness at ``rate`` Hz (20 ms windows), normalised so its 95th percentile is 1."""
    hop = int(round(sr / rate))
    n = int(np.ceil(len(audio) / hop))
    padded = np.pad(audio.astype(np.float64), (hop // 2, n * hop - len(audio) + hop))
    frames = np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::hop][:n]
    rms = np.sqrt(np.mean(frames**2, axis=1))
    ref = np.percentile(rms, 95) if np.any(rms > 0) else 1.0
    return rms / max(ref, 1e-9)


def speech_tracks(
    phonemes: list[tuple[float, str]], audio: np.ndarray, sr: int, n_frames: int, fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mouth opening (0..1) and lip spread (-1..1) from phoneme timing and loudness."""
    rate = 100.0
    n = int(np.ceil(n_frames / fps * rate)) + 1
    t = np.arange(n) / rate
    opening = np.zeros(n)
    spread = np.zeros(n)
    times = [p[0] for p in phonemes] + [phonemes[-1][0] + 0.15 if phonemes else 0.0]
    for (start, ph), end in zip(phonemes, times[1:]):
        o, s = viseme(ph)
        sel = (t >= start) & (t < end)
        opening[sel], spread[sel] = o, s
    env = loudness_envelope(audio, sr, rate)
    env = np.pad(env, (0, max(0, n - len(env))))[:n]
    gate = np.clip((env - 0.04) / 0.16, 0.0, 1.0)
    gate = gate * gate * (3 - 2 * gate)  # smoothstep
    opening = gaussian_filter1d(opening * gate * (0.75 + 0.25 * np.clip(env, 0, 1.5)), 2.5)
    spread = gaussian_filter1d(spread * gate, 3.0)
    # average the 100 Hz tracks over each frame's exposure [i / fps, (i + 1) / fps)
    edges = np.round(np.arange(n_frames + 1) / fps * rate).astype(int)
    cs_o = np.concatenate([[0], np.cumsum(opening)])
    cs_s = np.concatenate([[0], np.cumsum(spread)])
    cnt = np.maximum(edges[1:] - edges[:-1], 1)
    return (
        np.clip((cs_o[edges[1:]] - cs_o[edges[:-1]]) / cnt, 0, 1),
        np.clip((cs_s[edges[1:]] - cs_s[edges[:-1]]) / cnt, -1, 1),
    )


_BLINK_PROFILE = np.array([0.45, 0.9, 1.0, 1.0, 0.75, 0.45, 0.2, 0.05])


def blink_track(n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Per-frame eyelid closure (0 open .. 1 closed): blinks every 2-6 s at seeded times."""
    blink = np.zeros(n_frames)
    t = rng.uniform(0.6, 2.0)
    while True:
        start = int(round(t * fps))
        if start >= n_frames:
            break
        seg = _BLINK_PROFILE[: n_frames - start]
        blink[start : start + len(seg)] = np.maximum(blink[start : start + len(seg)], seg)
        t += 2.0 + rng.gamma(2.0, 0.9)
    return blink


#: Head motions of the sample subject: ``sway`` (the default clip) and ``fast`` (the same sways plus quick nods
#: and turns, for measuring pose tracking on fast-moving heads against the truth).
HEAD_MOTIONS = ("sway", "fast")


def head_track(n_frames: int, fps: float, rng: np.random.Generator, motion: str = "sway") -> np.ndarray:
    """Per-frame (yaw, pitch, roll) in radians: slow smooth sways, |angle| < 10 degrees.

    ``motion="fast"`` adds, every 0.8-1.6 s, a quick move of 8-15 degrees that lasts 0.2-0.4 s (5-10 frames at
    25 fps): a nod (pitch down and back), a turn (yaw, held until the next move or returned), or a shake (yaw
    there and back twice), as the heads of real clips that nod quickly. The sways draw from ``rng`` first, so the
    default clip does not change."""
    if motion not in HEAD_MOTIONS:
        raise ValueError(f"head motion must be one of {', '.join(HEAD_MOTIONS)}, not {motion!r}")
    t = np.arange(n_frames) / fps
    out = np.zeros((n_frames, 3))
    for k, amp in enumerate((7.0, 4.5, 2.5)):
        freqs = rng.uniform(0.06, 0.14), rng.uniform(0.18, 0.32)
        phases = rng.uniform(0, 2 * np.pi, 2)
        wave = 0.65 * np.sin(2 * np.pi * freqs[0] * t + phases[0]) + 0.35 * np.sin(2 * np.pi * freqs[1] * t + phases[1])
        out[:, k] = np.deg2rad(amp * wave)
    if motion == "fast":
        held = 0.0  # the yaw a turn left the head at (degrees)
        start = rng.uniform(0.5, 1.0)
        while start < t[-1]:
            kind = rng.choice(["nod", "turn", "shake"])
            amp, dur = rng.uniform(8.0, 15.0) * rng.choice([-1.0, 1.0]), rng.uniform(0.2, 0.4)
            x = np.clip((t - start) / dur, 0.0, 1.0)
            inside = (t >= start) & (t <= start + dur)
            if kind == "nod":
                out[:, 1] += np.deg2rad(amp * np.sin(np.pi * x) * inside)
            elif kind == "shake":
                out[:, 0] += np.deg2rad(0.6 * amp * np.sin(2 * np.pi * x) * inside)
            else:  # a smooth step to a new yaw (or back to the sway), held from then on
                target = 0.0 if held else amp
                out[:, 0] += np.deg2rad((target - held) * (3 * x**2 - 2 * x**3))  # 0 before the start, 1 after
                held = target
            start += dur + rng.uniform(0.8, 1.6)
    return out


def rig_offsets(
    lm_src: np.ndarray,
    face_width: float,
    opening: float,
    spread: float,
    blink: float,
    controls: np.ndarray,
    n_verts: int,
    forehead_of: np.ndarray,
) -> np.ndarray:
    """Offsets (V, 3) in output pixels (x right, y down, z away; head frame) of every vertex.

    ``lm_src``: the 68 rest landmarks (output px; the photo's mouth is slightly open and smiling, so
    the rig first closes and neutralises it). ``forehead_of``: for each forehead vertex, the brow
    landmark it follows.
    """
    w = face_width
    c = dict(zip(CONTROLS, controls))
    d = np.zeros((n_verts, 3))
    opening = float(np.clip(opening + 0.35 * c["jaw_drop"], 0.0, 1.0))

    # neutral mouth: close the photo's gap and relax its smile
    for up, lo in ((61, 67), (62, 66), (63, 65)):
        gap = lm_src[lo] - lm_src[up]
        d[up, :2] += 0.5 * gap
        d[lo, :2] -= 0.5 * gap
    gap0 = float(np.linalg.norm(lm_src[66] - lm_src[62]))
    for i in (50, 51, 52):
        d[i, 1] += 0.3 * gap0
    for i in (56, 57, 58):
        d[i, 1] -= 0.45 * gap0
    smile = c["smile"] - 0.45  # the photo smiles: 0.45 of a full smile is removed at rest
    # jaw and lips open
    G = 0.17 * w * opening
    for i in (65, 66, 67):
        d[i, 1] += G
    for i, k in ((56, 1.0), (57, 1.0), (58, 1.0), (55, 0.75), (59, 0.75)):
        d[i, 1] += k * G
    for i, k in ((7, 0.6), (8, 0.6), (9, 0.6), (6, 0.5), (10, 0.5), (5, 0.35), (11, 0.35)):
        d[i, 1] += k * G
    for i, k in ((4, 0.2), (12, 0.2), (3, 0.08), (13, 0.08)):
        d[i, 1] += k * G
    for i in (61, 62, 63):
        d[i, 1] -= 0.1 * G
    for i in (49, 50, 51, 52, 53):
        d[i, 1] -= 0.06 * G
    for i, side in ((48, -1), (60, -1), (54, 1), (64, 1)):
        d[i, 1] += 0.4 * G
        d[i, 0] -= side * 0.08 * G
        # spread (+) pulls the corners out, rounding (-) pushes them in and the lips forward
        d[i, 0] += side * (0.045 * w * spread if spread > 0 else 0.07 * w * spread)
    if spread < 0:
        for i in (49, 50, 51, 52, 53, 55, 56, 57, 58, 59, 61, 62, 63, 65, 66, 67):
            d[i, 2] += 0.03 * w * spread  # forward
    # expression: lip corners
    for i, side in ((48, -1), (60, -1), (54, 1), (64, 1)):
        d[i, 1] -= 0.06 * w * smile
        d[i, 0] += side * 0.035 * w * smile
        d[i, 1] += 0.07 * w * c["frown"]
        d[i, 0] -= side * 0.015 * w * c["frown"]
    for i in (49, 53, 55, 59):
        d[i, 1] -= 0.02 * w * smile
        d[i, 1] += 0.015 * w * c["frown"]
    for i in (54, 64):  # contempt: the subject's left corner (image right)
        d[i, 1] -= 0.05 * w * c["contempt"]
        d[i, 0] += 0.04 * w * c["contempt"]
    for i in (7, 8, 9):
        d[i, 1] -= 0.012 * w * c["frown"]
    for i, k in ((50, 1.0), (51, 1.0), (52, 1.0), (61, 0.8), (62, 0.8), (63, 0.8), (49, 0.6), (53, 0.6)):
        d[i, 1] -= 0.04 * w * k * c["upper_lip_raise"]
    for i in (31, 32, 33, 34, 35):
        d[i, 1] -= 0.018 * w * c["upper_lip_raise"]
    d[31, 0] -= 0.01 * w * max(smile, 0.0)
    d[35, 0] += 0.01 * w * max(smile, 0.0)
    # brows
    for i in range(17, 27):
        inner = 1.0 if i in (20, 21, 22, 23) else 0.5 if i in (19, 24) else 0.0
        d[i, 1] -= 0.08 * w * c["brow_raise"] + 0.09 * w * inner * c["inner_brow_raise"]
        d[i, 1] += 0.065 * w * (0.5 + 0.5 * inner) * c["brow_furrow"]
        toward = 1.0 if i < 22 else -1.0
        d[i, 0] += toward * 0.035 * w * inner * c["brow_furrow"]
        d[i, 1] += 0.012 * w * blink
    # eyes: (upper lid, lower lid) pairs
    for up, lo in ((37, 41), (38, 40), (43, 47), (44, 46)):
        gap = lm_src[lo, 1] - lm_src[up, 1]
        raise_up = 0.55 * c["eye_widen"] + 0.15 * c["brow_raise"] - 0.45 * c["lid_droop"] - 0.15 * c["brow_furrow"]
        lift_lo = 0.35 * c["eye_squint"] + 0.3 * max(smile, 0.0)
        open_gap = gap * (1 + raise_up - lift_lo)
        d[up, 1] -= gap * raise_up
        d[lo, 1] -= gap * lift_lo
        # blink: the upper lid travels 85 % of the way down, the lower lid 15 % up
        d[up, 1] += 0.85 * blink * open_gap
        d[lo, 1] -= 0.15 * blink * open_gap
    # forehead vertices follow their brows a little, so the skin stretches instead of folding
    for v, brow in enumerate(forehead_of):
        d[68 + v] = 0.4 * d[brow]
    return d

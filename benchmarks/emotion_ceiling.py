"""How much head PSNR can the emotion branch win on the sample subject's emotion clip, at best?

    python benchmarks/emotion_ceiling.py [--sample outputs/sample_subject] [--emotion-subject outputs/emotion_subject]

Issue #5 asks that f_E at the true valence/arousal raise the emotion clip's head PSNR by 1 dB over the model
without it. f_E learns from the emotion targets (the offline generator + seamless cloning, S4.1), so no f_E can
beat what those targets themselves reach. This measures that bound without training anything:

1. the *neutral twin* of ``emotion.mp4``: the sample subject's builder renders the same clip (same speech, head
   motion, blinks, camera) with valence/arousal held at 0. Against the real clip it is a perfect model
   without f_E: every remaining error is the expression;
2. the emotion targets made from each twin frame at the clip's true valence/arousal (gain 1, and a few other
   expression gains for scale): a perfect f_E trained on those targets.

Printed (JSON): head PSNR of both against the clip (the head mask of ``etlib.train.run_metrics``), the share of the
twin's error in the upper face and around the mouth, and per S6 point the mean squared error of both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from etlib.base import add_debug_flag, run_main

REPO = Path(__file__).resolve().parent.parent


def neutral_twin(sample_dir: Path, out: Path) -> tuple[Path, np.ndarray]:
    """Render ``emotion.mp4`` again with valence/arousal 0 (same seeds); returns the video and its landmarks."""
    sys.path.insert(0, str(REPO / "data_scripts"))
    import make_sample_subject as builder

    params = json.loads((sample_dir / "sample_subject.json").read_text())["params"]
    face = builder.build_face(params["size"])
    rng = np.random.default_rng(params["seed"])
    rng.integers(2**32)  # the talking clip's seed: build() draws it first
    clip_rng = np.random.default_rng(rng.integers(2**32))
    video = out / "emotion_neutral_twin.mp4"
    twin = builder.make_clip(
        face, builder.Renderer(face), builder.EMOTION_TEXT, params["emotion_seconds"], clip_rng, False, video
    )
    truth = np.load(sample_dir / "ground_truth" / "emotion.npz")
    if not np.allclose(twin["poses"], truth["poses"]):
        raise RuntimeError("the twin's head motion differs from emotion.mp4's: the builder's seeding changed")
    return video, twin["landmarks_2d"]


def measure(sample_dir: Path, emotion_subject: Path, max_frames: int = 40, gains=(0.5, 1.0, 1.5)) -> dict:
    from etlib.emoface.targets import make_emotion_targets
    from etlib.preprocess import SubjectDir
    from etlib.preprocess.crop import CropWindow, iter_cropped_frames
    from etlib.train.run_metrics import psnr

    s = SubjectDir(emotion_subject)
    meta = s.meta()
    window, size = CropWindow(**meta["crop"]), int(meta["resolution"])
    truth = np.load(sample_dir / "ground_truth" / "emotion.npz")
    with tempfile.TemporaryDirectory() as tmp:
        video, twin_landmarks = neutral_twin(sample_dir, Path(tmp))
        twin = np.stack(list(iter_cropped_frames(video, window, size, meta["fps"])))
    n = min(len(twin), s.n_frames)
    ids = list(range(0, n, max(1, -(-n // max_frames))))  # the frames evaluate_emotion_clip scores
    real = np.stack([s.read_frame(i) for i in ids]).astype(np.float32) / 255.0
    head = np.stack([s.read_mask("face", i) | s.read_mask("mouth", i) for i in ids])[..., None]
    head = np.broadcast_to(head, real.shape).astype(np.float32)
    targets = make_emotion_targets()

    def targets_at(gain: float) -> np.ndarray:
        out = []
        for i in ids:
            landmarks = window.to_crop_pixels(twin_landmarks[i], size).astype(np.float32)
            out.append(targets(twin[i], landmarks, truth["va"][i] * gain)[0])
        return np.stack(out).astype(np.float32) / 255.0

    neutral = twin[ids].astype(np.float32) / 255.0
    made = {gain: targets_at(gain) for gain in gains}
    result = {
        "frames": len(ids),
        "emotion_targets": targets.name,
        "psnr_head_neutral_twin": psnr(neutral, real, head),
        "psnr_head_targets_at_true_va": {str(g): psnr(img, real, head) for g, img in made.items()},
    }
    result["best_gain_db"] = max(result["psnr_head_targets_at_true_va"].values()) - result["psnr_head_neutral_twin"]
    # Where the expression error sits: above the nose tip (brows, lids) or around the lips.
    landmarks = np.load(s.landmarks)
    err = ((neutral - real) ** 2 * head).sum(-1)
    rows = np.arange(size)[None, :, None]
    upper = np.broadcast_to(rows < landmarks[ids, 30, 1][:, None, None], err.shape)
    lower = np.broadcast_to(rows >= landmarks[ids, 48:60, 1].min(1)[:, None, None] - 3, err.shape)
    result["twin_error_share"] = {
        "above_nose_tip": float(err[upper].sum() / err.sum()),
        "from_the_upper_lip_down": float(err[lower].sum() / err.sum()),
    }
    per_point = {}
    holds = truth["va_point_index"][ids]
    for k in sorted(set(holds.tolist()) - {-1}):
        sel = holds == k
        mask = head[sel]
        per_point[str(k)] = {
            "va": [round(float(x), 2) for x in truth["va"][np.array(ids)[sel]][0]],
            "mse_twin": float(((neutral[sel] - real[sel]) ** 2 * mask).sum() / mask.sum()),
            "mse_targets": float(((made[1.0][sel] - real[sel]) ** 2 * mask).sum() / mask.sum()),
        }
    result["per_s6_point"] = per_point
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=Path, default=REPO / "outputs" / "sample_subject")
    parser.add_argument("--emotion-subject", type=Path, default=REPO / "outputs" / "emotion_subject")
    parser.add_argument("--max-frames", type=int, default=40)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    for path, how in ((args.sample, "make sample"), (args.emotion_subject, "notebook 01 or etlib.preprocess")):
        if not path.exists():
            parser.error(f"{path} does not exist; build it first ({how})")
    print(json.dumps(measure(args.sample, args.emotion_subject, args.max_frames), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

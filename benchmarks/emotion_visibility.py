"""Does the emotion show? Targets and renders at the 12 S6 points, measured (etlib.evaluation.emotion_visibility).

    python benchmarks/emotion_visibility.py --run outputs/run --out outputs/emotion_visibility
    python benchmarks/emotion_visibility.py --video CLIP.mp4 --work /tmp/clip --out /tmp/clip/visibility

With ``--video`` the clip is preprocessed and trained in the preset first (both resume, so a second call only
measures; no SyncNet is trained for it, so L_sync is off, as in ``python -m etlib.train`` without ``--syncnet``). Writes ``OUT/emotion_visibility.json`` (every figure, the judge and generator that produced them) and
``OUT/contact_sheet.png`` (the frame and its 12 targets above, the render at (0, 0) and the 12 renders below).
Printed: the headline figures next to the goals of the emotion-visibility issue.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from etlib.base import add_debug_flag, run_main

#: What the emotion-visibility work aims at (targets, renders, judge); printed beside the measurement.
GOALS = {
    "target change (grey levels)": ">= 6",
    "target V-SA / A-SA / E-Acc": ">= 0.9 / 0.75 / 0.6",
    "render / target change": ">= 0.7",
    "landmark motion cosine": ">= 0.8",
}


def prepare(video: Path, work: Path, preset: str) -> Path:
    """Preprocess and train ``video`` under ``work`` (resumable); returns the run folder."""
    from etlib.emoface.targets import make_emotion_targets
    from etlib.preprocess.pipeline import preprocess
    from etlib.train.trainer import Trainer

    subject, run = work / "subject", work / "run"
    preprocess(video, subject, preset=preset, progress=True)
    Trainer(subject, run, preset, emotion_targets=make_emotion_targets()).run()
    return run


def _figures(block: dict) -> str:
    """V-SA / A-SA / E-Acc (Eq. S18, top-3) and V-RMSE / A-RMSE (Eq. S17) of one judge block."""
    text = (f"V-SA {block['V-SA']:.2f}, A-SA {block['A-SA']:.2f}, E-Acc {block['E-Acc']:.2f}, "
            f"V-RMSE {block['V-RMSE']:.2f}, A-RMSE {block['A-RMSE']:.2f}")  # fmt: skip
    if "V-SA relative" in block:
        text += (
            f" (read relative to the reference: V-SA {block['V-SA relative']:.2f}, A-SA {block['A-SA relative']:.2f})"
        )
    return text


def judge_lines(report: dict) -> list[str]:
    """The judges' figures on targets and renders, each line naming its judge (the FER-only ones beside a relative
    judge's, :func:`etlib.evaluation.emotion_visibility.measure`)."""
    lines = []
    for part, reference in (("targets", "source frame"), ("renders", "render at (0, 0)")):
        if part not in report:
            continue
        block = report[part]
        if "judge_fer_only" in block:
            lines.append(f"{part}, judge {report['judge']} (against the {reference}): {_figures(block['judge'])}")
            lines.append(f"{part}, judge {report['judge_fer_only']} alone: {_figures(block['judge_fer_only'])}")
        else:
            lines.append(f"{part}, judge {report['judge']}: {_figures(block['judge'])}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a trained run folder (etlib.train)")
    parser.add_argument("--video", type=Path, help="a talking-head clip to preprocess and train first")
    parser.add_argument("--work", type=Path, help="with --video: where its subject/ and run/ go")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--frames", type=int, default=3, help="held-out frames to measure on")
    parser.add_argument(
        "--judge",
        default="reading",
        help="reading (EmoNet when its weights are present, else fer+au) | fer+au | auto | emonet | fer",
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if (args.run is None) == (args.video is None):
        parser.error("give --run RUN or --video CLIP --work DIR")

    import cv2

    from etlib.backends import torch_threads
    from etlib.emoface.judge import get_judge
    from etlib.evaluation import emotion_visibility as ev
    from etlib.train.data import SubjectFrames
    from etlib.train.trainer import load_model

    with torch_threads():
        run = args.run if args.video is None else prepare(args.video, args.work or args.out, args.preset)
        model = load_model(run)
        model.eval()
        data = SubjectFrames.for_run(run, model.config["audio_frames"])
        report, images = ev.measure_model(model, data, judge=get_judge(args.judge), n_frames=args.frames)
    report |= {"run": str(Path(run).resolve()), "goals": GOALS}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "emotion_visibility.json").write_text(json.dumps(report, indent=1))
    sheet = ev.contact_sheet(images)
    cv2.imwrite(str(args.out / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    t, r = report["targets"], report["renders"]
    print(f"targets: change {t['face_change_grey_levels']:.2f} grey levels")
    print(f"renders: change {r['face_change_grey_levels']:.2f} grey levels = {r['ratio_to_targets']:.2f} x the "
          f"targets'; landmark motion cosine {r['landmark_motion_cosine']:.2f} (against the generator's own "
          f"landmarks of the targets: {r['landmark_motion_cosine_vs_generator_landmarks']:.2f})")  # fmt: skip
    for line in judge_lines(report):
        print(line)
    print("goals:", json.dumps(GOALS))
    print(f"wrote {args.out / 'emotion_visibility.json'} and {args.out / 'contact_sheet.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

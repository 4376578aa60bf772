"""python -m etlib.preprocess VIDEO OUTDIR [--preset quick] [--steps ...]"""

import argparse
import json
import sys

from etlib.base import add_debug_flag, run_main
from etlib.preprocess.pipeline import STEPS, preprocess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etlib.preprocess", description=__doc__)
    parser.add_argument("video", help="a talking-head video with sound (any size, frame rate, audio rate)")
    parser.add_argument("outdir", help="the subject folder to write (resumes if it exists)")
    parser.add_argument("--preset", default="quick", help="smoke | quick | paper (sets the resolution)")
    parser.add_argument("--steps", nargs="*", choices=STEPS, help="run only these steps")
    parser.add_argument("--ground-truth", help="an .npz of true landmarks/poses/blinks for the report")
    parser.add_argument("--au-csv", help="OpenFace FeatureExtraction CSV to use for the action units")
    parser.add_argument("--allow-missing-faces", action="store_true", help="fill faceless frames from neighbours")
    parser.add_argument("--force", action="store_true", help="re-run the chosen steps even if done")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    subject = preprocess(
        args.video,
        args.outdir,
        args.preset,
        args.steps,
        ground_truth=args.ground_truth,
        au_csv=args.au_csv,
        allow_missing_faces=args.allow_missing_faces,
        force=args.force,
        progress=not args.quiet,
    )
    if subject.report.exists():
        print(json.dumps(json.loads(subject.report.read_text()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

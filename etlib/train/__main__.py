"""python -m etlib.train --subject DIR --preset quick --out RUN [--stages ...] [--ablation full] [--device auto]"""

import argparse
import json
import sys
from pathlib import Path

from etlib.base import add_debug_flag, run_main
from etlib.talking.model import Ablation
from etlib.train.stages import STAGE_NAMES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etlib.train", description=__doc__)
    parser.add_argument("--subject", required=True, help="a processed subject folder (etlib.preprocess)")
    parser.add_argument("--out", required=True, help="the run folder (resumed when it exists)")
    parser.add_argument("--preset", default="quick", help="smoke | quick | paper")
    parser.add_argument("--stages", nargs="*", choices=STAGE_NAMES, help="run only these stages")
    parser.add_argument("--ablation", default="full", choices=Ablation.NAMES, help="a Table 4 variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--syncnet",
        help="a SyncNet trained on this subject (etlib.evaluation.syncnet_check) for L_sync; without it (and "
        "without the lipsync_expert weights) L_sync is off, which the run says and records in state.json",
    )
    parser.add_argument("--no-eval", action="store_true", help="skip the test-split metrics at the end")
    parser.add_argument(
        "--device",
        default="auto",
        help="auto | cpu | cuda: where the model, the frames and the loss networks live (auto: CUDA when usable; "
        "gsplat and tinycudann run on CUDA when they load)",
    )
    parser.add_argument("--quiet", action="store_true")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    from etlib.backends import resolve_device

    device = resolve_device(args.device)  # a device this machine lacks is refused before any slow set-up
    if args.syncnet is not None and not Path(args.syncnet).is_file():  # before any slow set-up
        raise FileNotFoundError(
            f"--syncnet {args.syncnet}: no such file; check the path, or write one with "
            "`python -m etlib.evaluation.syncnet_check --subject SUBJECT --out DIR` (DIR/syncnet.pt)"
        )

    from etlib.train.run_metrics import evaluate_run
    from etlib.train.trainer import Trainer, default_emotion_targets

    trainer = Trainer(
        args.subject,
        args.out,
        args.preset,
        ablation=args.ablation,
        seed=args.seed,
        progress=not args.quiet,
        emotion_targets=default_emotion_targets(),
        device=device,
    )
    from etlib.train.sync import make_sync_loss

    trainer.use_sync_loss(make_sync_loss(trainer.data, args.syncnet))
    state = trainer.run(args.stages)
    if not args.no_eval and state["completed"] and state["completed"][-1] == STAGE_NAMES[-1]:
        metrics = evaluate_run(trainer)
        print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

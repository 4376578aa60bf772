"""Does L_sync (Eq. 9) help? Sync-E / Sync-C of renders driven by TTS sentences that no training stage heard.

    python benchmarks/sync_loss_effect.py --subject SUBJECT --syncnet syncnet.pt --out OUT \\
        --run full=RUN [--run no_sync_loss=RUN2] [--train-missing]

Each ``--run NAME=RUN`` is a trained run; with ``--train-missing`` the ``full`` and ``no_sync_loss`` variants
that are not given are trained under ``OUT/<name>`` first (quick preset: ~10 min each on 2 CPU cores). The
sentences are not the curated S5 set (those drive L_sync during training), so the comparison is on unseen speech.
The same SyncNet scores every run; its name is in the output. Prints and writes ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from etlib.base import add_debug_flag, run_main

#: Ordinary sentences outside the paper's curated S5 set and the sample subject's own paragraph.
UNSEEN_SENTENCES = (
    "Please put the blue folder back on the top shelf before lunch.",
    "My brother moved to a small town near the coast last spring.",
    "We watched the boats come in while the rain slowly stopped.",
)


def train_variant(subject: Path, run: Path, name: str, preset: str, syncnet: Path) -> None:
    """A full run of the Table 4 variant ``name`` (L_sync from ``syncnet`` where the variant keeps it)."""
    from etlib.train.sync import make_sync_loss
    from etlib.train.trainer import Trainer, default_emotion_targets

    trainer = Trainer(subject, run, preset, ablation=name, emotion_targets=default_emotion_targets())
    trainer.use_sync_loss(make_sync_loss(trainer.data, syncnet))
    trainer.run()


def sync_of_run(run: Path, subject: Path, syncnet, sentences) -> dict:
    """Sync-E/C and AV offset of ``run`` speaking each sentence (espeak-ng), and their means."""
    from etlib.audio.tts import synthesize
    from etlib.base import SAMPLE_RATE, to_uint8
    from etlib.evaluation.paper_tables import clip_sync, render_driven
    from etlib.train.checkpoints import read_run_state
    from etlib.train.data import SubjectFrames
    from etlib.train.trainer import load_model

    model = load_model(run).eval()
    state = read_run_state(run)
    data = SubjectFrames(subject)
    clips = {}
    for k, text in enumerate(sentences):
        audio = synthesize(text, sr=SAMPLE_RATE)
        frames, track = render_driven(model, data, audio, progress=False)
        scores = clip_sync(to_uint8(frames), track, audio, syncnet)
        clips[f"sentence {k + 1}"] = {key: scores[key] for key in ("sync_e", "sync_c", "av_offset", "windows")}
    return {
        "ablation": state["ablation"],
        "sync_term": state.get("sync") or state.get("terms_dropped", {}).get("sync"),
        "clips": clips,
        "mean_sync_e": float(np.mean([c["sync_e"] for c in clips.values()])),
        "mean_sync_c": float(np.mean([c["sync_c"] for c in clips.values()])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject", type=Path, required=True)
    parser.add_argument("--syncnet", type=Path, required=True, help="the SyncNet of L_sync and of the scores")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN", help="a trained run, repeatable")
    parser.add_argument("--train-missing", action="store_true", help="train full / no_sync_loss when not given")
    parser.add_argument("--preset", default="quick")
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    from etlib.audio.syncnet import load_syncnet
    from etlib.backends import torch_threads

    runs = dict(item.split("=", 1) for item in args.run)
    runs = {name: Path(path) for name, path in runs.items()}
    seconds = {}
    with torch_threads():
        if args.train_missing:
            for name in ("full", "no_sync_loss"):
                if name not in runs:
                    runs[name] = args.out / name
                    start = time.perf_counter()
                    train_variant(args.subject, runs[name], name, args.preset, args.syncnet)
                    seconds[name] = round(time.perf_counter() - start, 1)
        if not runs:
            parser.error("give --run NAME=RUN at least once, or --train-missing")
        syncnet = load_syncnet(args.syncnet)
        results = {name: sync_of_run(run, args.subject, syncnet, UNSEEN_SENTENCES) for name, run in runs.items()}
    summary = {
        "syncnet": f"{syncnet.name} ({args.syncnet})",
        "sentences": list(UNSEEN_SENTENCES),
        "runs": {name: str(run) for name, run in runs.items()},
        "training_seconds": seconds,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({n: {k: r[k] for k in ("mean_sync_e", "mean_sync_c", "sync_term")} for n, r in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

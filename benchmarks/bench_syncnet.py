"""Time the offline SyncNet trainer (etlib.audio.syncnet.train_syncnet) at a preset's size.

Prints JSON: seconds per iteration and the projected time of the preset's ``syncnet_iterations``
(target for ``quick``: <= 5 min on a 2-core CPU). Content does not matter for timing, so the clip is
random frames and a random log-mel spectrogram.

    python benchmarks/bench_syncnet.py --preset quick --iterations 40 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch

from etlib.audio.syncnet import train_syncnet
from etlib.base import add_debug_flag, run_main
from etlib.config import get_preset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--iterations", type=int, default=40, help="iterations timed (projected to the preset)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--width", type=float, default=None, help="override the preset's channel multiplier")
    parser.add_argument("--preset-iterations", type=int, default=None, help="project to this many iterations")
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = get_preset(args.preset).syncnet
    if args.width is not None:
        config = dataclasses.replace(config, width=args.width)
    rng = np.random.default_rng(0)
    n_frames = 750  # 30 s at 25 fps
    frames = rng.integers(0, 256, size=(n_frames, *config.face_hw, 3), dtype=np.uint8)
    mel = rng.uniform(-4, 4, size=(80, n_frames * 80 // 25 + 1)).astype(np.float32)

    kwargs = dict(
        batch_size=args.batch_size, width=config.width, embed_dim=config.embed_dim, arch=config.arch, progress=False
    )
    train_syncnet(frames, mel, iterations=3, **kwargs)  # warm-up
    start, cpu_start = time.perf_counter(), time.process_time()
    train_syncnet(frames, mel, iterations=args.iterations, **kwargs)
    per_it = (time.perf_counter() - start) / args.iterations
    # CPU seconds: what a machine shared with other jobs still tells about an idle one.
    cpu_per_it = (time.process_time() - cpu_start) / args.iterations
    planned = args.preset_iterations or get_preset(args.preset).syncnet_iterations
    print(
        json.dumps(
            {
                "benchmark": "syncnet_training",
                "preset": args.preset,
                "face_hw": list(config.face_hw),
                "arch": config.arch,
                "width": config.width,
                "embed_dim": config.embed_dim,
                "batch_size": args.batch_size,
                "threads": args.threads,
                "seconds_per_iteration": round(per_it, 4),
                "cpu_seconds_per_iteration": round(cpu_per_it, 4),
                "preset_iterations": planned,
                "projected_seconds": round(per_it * planned, 1),
                "projected_cpu_seconds": round(cpu_per_it * planned, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

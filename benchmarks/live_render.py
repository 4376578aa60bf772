"""How live the valence/arousal controls feel: renders per second when only e = (valence, arousal) changes.

A slider or pad move changes only e, which enters the model in f_E alone (Eq. 5), after the encoding
H_E(mu + Δmu_u). :class:`etlib.widgets.HeadRenderer` keeps each shown frame's e-independent parts (f_M and the
mouth layer over the background, f_F's offsets, H_E) and re-runs only f_E's MLP, the face rasterization and
the blend. This prints JSON, per image size:

* ``fast_renders_per_s``: renders along a drag around the circle of radius 0.8 (each a new e) on one frame;
* ``full_renders_per_s``: the whole forward pass for the same e (what every render cost before);
* ``first_render_of_a_frame_ms``: a scrubber move (a new frame: its parts are computed, then kept);
* ``max_abs_diff_fast_vs_full``: grey levels between the two paths' images (0: the same image);
* ``face_change_at_s6``: the mean change over the face mask of the render at each S6 point against the one at
  (0, 0), in grey levels: what a user sees move (the browser test's threshold is set against it).

Targets on 2 cores (issue "live emotion control"): >= 15 renders/s at 128 px and >= 5 at 256 px.

    python benchmarks/live_render.py --run outputs/run --sizes 128 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from etlib.base import add_debug_flag, run_main

TARGETS = {128: 15.0, 256: 5.0}


def measure(renderer, renders: int, frame: int) -> dict:
    from etlib.config import S6_POINTS
    from etlib.widgets import mean_abs_change

    angles = np.linspace(0, 2 * np.pi, renders, endpoint=False)
    drag = [(round(0.8 * np.cos(t), 2), round(0.8 * np.sin(t), 2)) for t in angles]

    start = time.perf_counter()
    neutral = renderer(0.0, 0.0, frame)  # a new frame: its e-independent parts are computed here
    first_ms = 1000 * (time.perf_counter() - start)
    times = []
    for v, a in drag:
        start = time.perf_counter()
        renderer(v, a, frame)
        times.append(time.perf_counter() - start)
    full_times, diffs = [], []
    for v, a in drag[:: max(1, renders // 8)]:
        start = time.perf_counter()
        full = renderer.render_full(v, a, frame)
        full_times.append(time.perf_counter() - start)
        diffs.append(int(np.abs(full.astype(np.int16) - renderer(v, a, frame)).max()))
    face = renderer.data.subject.read_mask("face", renderer.frame_ids[frame])
    if face.shape[0] != renderer.size:
        import cv2

        face = cv2.resize(face.astype(np.uint8), (renderer.size, renderer.size), interpolation=cv2.INTER_NEAREST) > 0
    changes = [mean_abs_change(neutral, renderer(v, a, frame), face) for v, a, _ in S6_POINTS]
    fast, full_rate = 1 / statistics.median(times), 1 / statistics.median(full_times)
    return {
        "size": renderer.size,
        "fast_renders_per_s": round(fast, 1),
        "full_renders_per_s": round(full_rate, 1),
        "speedup": round(fast / full_rate, 2),
        "first_render_of_a_frame_ms": round(first_ms, 1),
        "max_abs_diff_fast_vs_full": max(diffs),
        "face_change_at_s6": {
            "mean": round(float(np.mean(changes)), 2),
            "min": round(float(np.min(changes)), 2),
            "max": round(float(np.max(changes)), 2),
        },
        "target_renders_per_s": TARGETS.get(renderer.size),
        "meets_target": None if renderer.size not in TARGETS else bool(fast >= TARGETS[renderer.size]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("outputs/run"), help="a training run (etlib.train)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="image sides in pixels")
    parser.add_argument("--renders", type=int, default=40, help="valence/arousal points along the drag")
    parser.add_argument("--frame", type=int, default=0, help="the scrubber frame")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    import torch

    from etlib.backends import torch_threads
    from etlib.widgets import HeadRenderer

    base = HeadRenderer.from_run(args.run)
    rows = []
    for size in args.sizes:
        renderer = HeadRenderer(base.model, base.data, base.run_dir, size=size)
        rows.append(measure(renderer, args.renders, args.frame))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    with torch_threads():
        threads = torch.get_num_threads()
    report = {
        "benchmark": "live_render",
        "run": str(args.run),
        "face_gaussians": int(base.model.face.means.shape[0]),
        "torch_threads": threads,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "sizes": rows,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

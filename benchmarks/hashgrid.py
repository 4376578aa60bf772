"""CPU timings of the PyTorch hash grid and the tri-plane encoder H (Sec. 3.2): forward + backward.

Usage: ``python benchmarks/hashgrid.py [--points 50000] [--repeats 5]``. Prints one JSON object:
median seconds per forward+backward of ``n_points`` positions for the ``quick`` and ``paper`` presets'
hash-grid settings (face and mouth base resolutions), plus the parameter counts.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from etlib.base import add_debug_flag, run_main
from etlib.config import PRESETS
from etlib.encoders import HashGrid, TriPlaneEncoder


def time_forward_backward(module: torch.nn.Module, points: torch.Tensor, repeats: int) -> float:
    """Median wall time of ``module(points).square().sum().backward()``, after one warm-up."""
    times = []
    for i in range(repeats + 1):
        module.zero_grad(set_to_none=True)
        x = points.clone().requires_grad_(True)
        start = time.perf_counter()
        module(x).square().sum().backward()
        if i > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    xyz = (torch.rand(args.points, 3) - 0.5) * 0.3
    results: dict[str, object] = {
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "points": args.points,
        "repeats": args.repeats,
        "unit": "seconds per forward+backward (median)",
    }
    for preset in ("quick", "paper"):
        hs = PRESETS[preset].hash_grid
        for region in ("face", "mouth"):
            enc = TriPlaneEncoder.from_settings(hs, region, backend="torch")
            plane: HashGrid = enc.planes["xy"]  # type: ignore[assignment]
            key = f"{preset}/{region}"
            results[key] = {
                "levels": hs.n_levels,
                "log2_hashmap_size": hs.log2_hashmap_size,
                "per_level_scale": round(enc.per_level_scale, 6),
                "params_triplane": sum(p.numel() for p in enc.parameters()),
                "one_plane_s": round(time_forward_backward(plane, enc.normalize(xyz)[:, :2], args.repeats), 4),
                "triplane_s": round(time_forward_backward(enc, xyz, args.repeats), 4),
            }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

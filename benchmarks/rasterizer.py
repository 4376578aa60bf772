"""Speed and memory of etlib's CPU rasterizer (and gsplat's CUDA one when available); prints JSON.

For 5k / 20k / 50k Gaussians at 128 / 256 / 512 px: forward and forward+backward wall time (best and
median of ``--repeats``) and the peak resident-memory increase of a fresh process doing them. The dense
per-pixel reference (Eqs. 1-2 against every Gaussian) is timed where affordable (5k at 128 px by
default); elsewhere its time is extrapolated as pixels x Gaussians from that measurement and marked so.
With CUDA, gsplat's frames per second at 512 px with 50k Gaussians are added.

The scene: Gaussians uniform in a 1.4 x 1.4 x 0.6 box 3 units in front of a 30-degree camera (filling
~80% of the image), projected footprints (one sigma) log-uniform in 0.5-3 px at 256 px, random
rotations, opacity uniform in [0.05, 0.95], RGB colours plus a 3-channel normal map and the depth. The
scene is fixed in world units: its footprints are 0.5-3 px at 256 px, 1-6 px at 512 px, 0.25-1.5 px at
128 px.

    python benchmarks/rasterizer.py                 # full grid, about 5-10 minutes on 2 cores
    python benchmarks/rasterizer.py --quick         # 5k and 20k at 128 and 256 px
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from etlib.base import add_debug_flag, run_main

TARGET = {"config": "20k Gaussians at 256 px, forward+backward, 2-core CPU", "seconds": 1.0, "peak_gb": 3.0,
          "speedup_over_dense": 3.0}  # fmt: skip


def make_scene(n: int, res: int, seed: int = 0, device: str = "cpu"):
    from etlib.gaussians import Camera

    g = torch.Generator().manual_seed(seed)
    cam = Camera.look_at((0, 0, -3.0), width=res, height=res, fov_y_deg=30)
    f = cam.K[0, 0].item() * 256 / res  # footprints are defined at 256 px
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([1.4, 1.4, 0.6])
    footprint_px = torch.exp(torch.rand(n, 3, generator=g) * math.log(6.0)) * 0.5
    scales = footprint_px * 3.0 / f
    quats = torch.randn(n, 4, generator=g)
    opac = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, 3, generator=g)
    normals = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    tensors = [t.to(device) for t in (means, quats, scales, opac, colors, normals)]
    return tensors, cam.to(device)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(n: int, res: int, repeats: int, dense: bool, tile_size: int | None) -> dict:
    """Runs in a fresh process so that its peak RSS belongs to this configuration alone."""
    from etlib.gaussians import rasterize, rasterize_dense_reference

    (means, quats, scales, opac, colors, normals), cam = make_scene(n, res)
    params = [t.requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    render = rasterize_dense_reference if dense else rasterize
    kwargs = {} if dense else {"tile_size": tile_size, "backend": "torch"}
    base = _rss_bytes()
    fwd, fwd_bwd, info = [], [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = render(*params, cam, normals=normals, **kwargs)
        t1 = time.perf_counter()
        (out.color.sum() + out.depth.mean() + out.normal.sum()).backward()
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        fwd_bwd.append(t2 - t0)
        info = {"n_intersections": out.meta.get("n_intersections"), "tile_size": out.meta.get("tile_size"),
                "visible": int(out.meta["visibility"].sum())}  # fmt: skip
        for p in params:
            p.grad = None
        del out
    return {
        "gaussians": n,
        "resolution": res,
        "renderer": "dense_reference" if dense else "torch_tiled",
        "forward_s": {"best": min(fwd), "median": statistics.median(fwd)},
        "forward_backward_s": {"best": min(fwd_bwd), "median": statistics.median(fwd_bwd)},
        "peak_rss_increase_gb": round((_peak_rss_bytes() - base) / 1e9, 3),
        **info,
    }


def run_worker(n: int, res: int, repeats: int, dense: bool = False, tile_size: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(n), str(res), "--repeats", str(repeats)]
    if dense:
        cmd.append("--dense")
    if tile_size:
        cmd += ["--tile-size", str(tile_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    if proc.returncode != 0:
        return {"gaussians": n, "resolution": res, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gsplat_fps(n: int = 50_000, res: int = 512, frames: int = 200) -> dict:
    from etlib.backends import gsplat_cuda_available
    from etlib.gaussians import rasterize

    if not gsplat_cuda_available():
        return {"available": False, "reason": "no CUDA device or gsplat's CUDA extension did not load"}
    (means, quats, scales, opac, colors, normals), cam = make_scene(n, res, device="cuda")
    with torch.no_grad():
        for _ in range(10):
            rasterize(means, quats, scales, opac, colors, cam, backend="gsplat")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(frames):
            rasterize(means, quats, scales, opac, colors, cam, backend="gsplat")
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    return {"available": True, "gaussians": n, "resolution": res, "fps": frames / elapsed,
            "device": torch.cuda.get_device_name()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, type=int, metavar=("N", "RES"), help=argparse.SUPPRESS)
    parser.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="5k/20k at 128/256 px only")
    parser.add_argument("--dense-configs", default="5000x128", help="where to time the dense reference")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.dense, args.tile_size)))
        return 0

    counts = (5_000, 20_000) if args.quick else (5_000, 20_000, 50_000)
    resolutions = (128, 256) if args.quick else (128, 256, 512)
    report: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": os.getloadavg(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },  # fmt: skip
        "target": TARGET,
        "torch_tiled": [],
        "dense_reference": [],
    }
    for n in counts:
        for res in resolutions:
            report["torch_tiled"].append(run_worker(n, res, args.repeats, tile_size=args.tile_size))
            print(json.dumps(report["torch_tiled"][-1]), file=sys.stderr, flush=True)
    measured = {}
    for cfg in filter(None, args.dense_configs.split(",")):
        n, res = (int(v) for v in cfg.split("x"))
        result = run_worker(n, res, 1, dense=True)
        report["dense_reference"].append({**result, "measured": True})
        if "forward_backward_s" in result:
            measured[(n, res)] = result
    # Dense cost is O(pixels x Gaussians): extrapolate from the largest measured configuration.
    if measured:
        (n0, r0), ref = max(measured.items(), key=lambda kv: kv[0][0] * kv[0][1] ** 2)
        for row in report["torch_tiled"]:
            if "forward_backward_s" not in row:
                continue
            key = (row["gaussians"], row["resolution"])
            if key in measured:
                dense_fb, how = measured[key]["forward_backward_s"]["best"], "measured"
            else:
                factor = row["gaussians"] / n0 * (row["resolution"] / r0) ** 2
                dense_fb, how = ref["forward_backward_s"]["best"] * factor, f"extrapolated from {n0}x{r0}"
            row["speedup_over_dense_forward_backward"] = round(dense_fb / row["forward_backward_s"]["best"], 2)
            row["dense_reference_time"] = how
    target_row = next((r for r in report["torch_tiled"] if (r["gaussians"], r["resolution"]) == (20_000, 256)), None)
    if target_row and "forward_backward_s" in target_row:
        report["target_met"] = {
            "seconds": target_row["forward_backward_s"]["best"] <= TARGET["seconds"],
            "peak_gb": target_row["peak_rss_increase_gb"] <= TARGET["peak_gb"],
            "speedup": target_row.get("speedup_over_dense_forward_backward", 0) >= TARGET["speedup_over_dense"],
        }
    report["cuda"] = gsplat_fps() if torch.cuda.is_available() else {"available": False, "reason": "no CUDA"}
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

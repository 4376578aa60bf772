"""One short check of the ``paper`` preset on a CUDA GPU; prints JSON (and writes ``OUT/gpu_check.json``).

    python benchmarks/gpu_check.py                                 # a CUDA GPU: <= 8 min on one H100
    python benchmarks/gpu_check.py --device cpu --preset smoke --steps 2 --fps-frames 4 --subject SUBJECT

What it measures, in this order (each part says ``skipped: why`` when it cannot run here):

1. ``environment``: torch, CUDA, the GPU, gsplat, tinycudann, and how long gsplat's CUDA extension took to load
   (it compiles on first use);
2. ``rasterizer_parity``: gsplat against etlib's PyTorch rasterizer on one scene at 512 px, images (colour,
   opacity, depth, normals, features; Eqs. 1-2, S7-S8) and the gradients of every Gaussian parameter. On a CPU the
   same comparison runs between etlib's tiled rasterizer and its dense reference (the oracle of the CPU tests);
3. ``hash_grid_parity``: tinycudann's hash grid against etlib's PyTorch one with the same table (Sec. 3.2's
   tri-plane grids are made of these): outputs, table gradients and position gradients;
4. ``stages``: ``--steps`` steps of each of the six training stages (Sec. 3.4, Eqs. S11-S16) of the preset on the
   sample subject at the preset's resolution (the first ``--frames`` frames, preprocessed here unless ``--subject``
   is given), with L_sync (a SyncNet trained on the subject here), the offline generator's emotion targets and
   densification: iterations per second of each stage, and the backends that ran (``state.json``'s ``ran``);
5. ``render``: frames per second of the whole model (f_M, f_F, f_E, both rasterizations, Eqs. S9-S10) at the
   preset's resolution, inputs already on the device, and of the valence/arousal-only path of the live controls
   (the goal at 512 px: >= 300 FPS; the paper reports 101 FPS on an RTX 4090);
6. ``memory``: the peak GPU memory (allocated and reserved by torch's allocator).

The stages train on the frames of ``--frames`` (250 by default: 10 s) because preprocessing the whole 48-s sample at
512 px would take most of the budget; the model, its sizes and its losses are the preset's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PAPER_FPS = 101  # Table 1, "Ours", RTX 4090, 512 px
GOAL_FPS = 300


def _skipped(why: str) -> dict:
    return {"skipped": why}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------
# 1. environment
# ----------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    from etlib.backends import device_label, gsplat_cuda_available, tinycudann_available

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "device": device_label(device),
        "cpus": os.cpu_count(),
    }
    try:
        from importlib.metadata import version

        env["gsplat"] = version("gsplat")
    except Exception:  # not installed: the report says so
        env["gsplat"] = None
    if device.type == "cuda":
        start = time.perf_counter()
        env["gsplat_cuda"] = gsplat_cuda_available()  # compiles gsplat's kernels on first use
        env["gsplat_load_seconds"] = round(time.perf_counter() - start, 1)
        env["tinycudann"] = tinycudann_available()
        env["gpu_memory_gb"] = round(torch.cuda.get_device_properties(device).total_memory / 1e9, 1)
    return env


# ----------------------------------------------------------------------------------------------
# 2. rasterizer parity
# ----------------------------------------------------------------------------------------------


def parity_scene(n: int, size: int, device: torch.device, seed: int = 0):
    """Random Gaussians in front of two cameras (as ``tests/test_gaussians_cuda.py``), on ``device``."""
    from etlib.gaussians import Camera

    g = torch.Generator().manual_seed(seed)
    z = 2.0 + torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * size / (size * 0.6) * z[:, None]
    means = torch.cat([xy, z[:, None]], 1)
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.rand(n, 3, generator=g) * 1.5) * 0.01
    opac = 0.05 + 0.9 * torch.rand(n, generator=g)  # <= 0.95: neither backend's alpha clamp is reached
    sh = torch.randn(n, 4, 3, generator=g) * 0.3
    feats = torch.rand(n, 5, generator=g)
    dn = 0.1 * torch.randn(n, 3, generator=g)
    f = size * 0.6
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    cams = [Camera(torch.eye(4), K, size, size),
            Camera.look_at((0.3, 0.1, -0.5), (0, 0, 2.5), width=size, height=size, fov_y_deg=60)]  # fmt: skip
    tensors = [t.to(device) for t in (means, quats, scales, opac, sh, dn)]
    return tensors, feats.to(device), [c.to(device) for c in cams]


def _render_with(backend: str, tensors, feats, cams):
    from etlib.gaussians import gaussian_normals, rasterize, rasterize_dense_reference

    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    m, q, s, o, c, d = leaves
    normals = gaussian_normals(m, q, s, torch.stack([cam.viewmat for cam in cams]), d)
    kwargs = dict(normals=normals, features=feats, sh_degree=1, background=(0.1, 0.2, 0.3))
    if backend == "dense":
        out = rasterize_dense_reference(m, q, s, o, c, cams, **kwargs)
    else:
        out = rasterize(m, q, s, o, c, cams, backend=backend, **kwargs)
    loss = out.color.sum() + out.alpha.sum() + out.normal.sum() + out.features.sum() + 0.1 * out.depth.sum()
    return out, torch.autograd.grad(loss, leaves)


def rasterizer_parity(device: torch.device, n: int, size: int) -> dict:
    """gsplat vs etlib's torch rasterizer on CUDA; on a CPU, etlib's tiled rasterizer vs its dense reference."""
    from etlib.backends import gsplat_cuda_available

    if device.type == "cuda" and not gsplat_cuda_available():
        return _skipped("gsplat's CUDA extension does not load (see environment)")
    pair = ("gsplat", "torch") if device.type == "cuda" else ("torch", "dense")
    tensors, feats, cams = parity_scene(n, size, device)
    (a, ga), (b, gb) = (_render_with(backend, tensors, feats, cams) for backend in pair)
    images = {name: float((getattr(a, name) - getattr(b, name)).detach().abs().max()) for name in
              ("color", "alpha", "normal", "features")}  # fmt: skip
    covered = b.alpha > 0.5
    images["depth_where_alpha_above_0.5"] = float((a.depth[covered] - b.depth[covered]).detach().abs().max())
    names = ("means", "quats", "scales", "opacities", "sh", "dn")
    grads = {k: float((x - y).norm() / y.norm().clamp(min=1e-12)) for k, x, y in zip(names, ga, gb)}
    # gsplat vs torch: tests/test_gaussians_cuda.py's tolerances (fast-math kernels, float32 sums in another
    # order); torch vs dense: the CPU tests' (the same arithmetic, tiled or not)
    image_tol, grad_tol = (2e-3, 5e-2) if pair[0] == "gsplat" else (1e-5, 1e-4)
    return {
        "compared": f"{pair[0]} vs {pair[1]}",
        "gaussians": n,
        "cameras": len(cams),
        "size": size,
        "image_max_abs_diff": images,
        "gradient_relative_l2_error": grads,
        "tolerances": {"image_max_abs_diff": image_tol, "gradient_relative_l2_error": grad_tol},
        "ok": max(images.values()) < image_tol and max(grads.values()) < grad_tol,
    }


# ----------------------------------------------------------------------------------------------
# 3. hash grid parity
# ----------------------------------------------------------------------------------------------


def hash_grid_parity(device: torch.device) -> dict:
    from etlib.backends import tinycudann_available
    from etlib.encoders.hashgrid import HashGrid, TcnnHashGrid

    if device.type != "cuda":
        return _skipped("tinycudann runs on CUDA only")
    if not tinycudann_available():
        return _skipped("tinycudann is not installed (README: GPU users)")
    out = {}
    for dims in (2, 3):  # the tri-plane's planes are 2-D grids; 3-D is tcnn's common case
        cfg = dict(n_levels=12, n_features_per_level=2, log2_hashmap_size=15, base_resolution=16, per_level_scale=1.5)
        tcnn_grid = TcnnHashGrid(dims, **cfg)
        torch_grid = HashGrid(dims, **cfg).to(device)
        with torch.no_grad():
            tcnn_grid.params.copy_(torch.randn_like(tcnn_grid.params) * 0.1)
        torch_grid.load_state_dict(tcnn_grid.state_dict())
        x = torch.rand(1 << 16, dims, device=device)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = tcnn_grid(xa), torch_grid(xb)
        weights = torch.randn_like(yb)
        (ya.float() * weights).sum().backward()
        (yb * weights).sum().backward()
        rel = lambda p, q: float((p - q).norm() / q.norm().clamp(min=1e-12))  # noqa: E731
        out[f"{dims}d"] = {
            "output_max_abs_diff": float((ya.float() - yb).abs().max()),
            "table_gradient_relative_l2_error": rel(tcnn_grid.params.grad, torch_grid.params.grad),
            "position_gradient_relative_l2_error": rel(xa.grad, xb.grad),
            "hash": torch_grid.hash,
        }
    out["ok"] = all(v["output_max_abs_diff"] < 1e-4 and v["table_gradient_relative_l2_error"] < 1e-3
                    for v in out.values())  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------
# 4. training stages
# ----------------------------------------------------------------------------------------------


def subject_for(args, preset) -> Path:
    """``--subject``, else the sample subject's first ``--frames`` frames preprocessed at the preset's resolution."""
    if args.subject is not None:
        return args.subject
    import subprocess

    from etlib.preprocess import preprocess

    # the sample subject's talking clip at 512 px, only as long as the frames used (the whole 48 s takes minutes)
    sample = args.out / f"sample_subject_{args.frames}"
    if not (sample / "talking.mp4").exists():
        seconds = min(60.0, max(4.0, args.frames / 25 + 1))
        subprocess.run([sys.executable, str(REPO / "data_scripts" / "make_sample_subject.py"), "--out", str(sample),
                        "--seconds", str(seconds), "--emotion-seconds", "2"], check=True)  # fmt: skip
    subject = args.out / f"subject_{preset.resolution}px_{args.frames}"
    start = time.perf_counter()
    preprocess(sample / "talking.mp4", subject, preset.with_overrides(max_frames=args.frames), progress=False)
    print(f"preprocessed in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return subject


def stages(args, preset, subject: Path, device: torch.device) -> tuple[dict, Path]:
    from etlib.config import StageIterations
    from etlib.emoface.targets import make_emotion_targets
    from etlib.evaluation.syncnet_check import train_subject_syncnet
    from etlib.train import Trainer
    from etlib.train.sync import make_sync_loss

    syncnet_dir = args.out / "syncnet"
    start = time.perf_counter()
    sync = train_subject_syncnet(subject, syncnet_dir, preset.name, iterations=args.syncnet_steps, progress=False,
                                 device=device)  # fmt: skip
    syncnet_seconds = time.perf_counter() - start
    steps = StageIterations(*(args.steps,) * 6)
    run = args.out / f"run_{preset.name}_{device.type}"
    trainer = Trainer(subject, run, preset.with_overrides(iterations=steps, checkpoint_every=10**9), progress=False,
                      emotion_targets=make_emotion_targets(), device=device)  # fmt: skip
    trainer.use_sync_loss(make_sync_loss(trainer.data, sync.checkpoint_path))
    state = trainer.run()
    per_stage = {
        name: {"steps": args.steps, "seconds": seconds, "it_per_s": round(args.steps / max(seconds, 1e-9), 2)}
        | trainer.state.get("ran", {}).get(name, {})
        for name, seconds in state["seconds"].items()
    }
    return {
        "preset": preset.name,
        "resolution": trainer.data.resolution,
        "frames": trainer.data.n,
        "gaussians_after": {"face": len(trainer.model.face), "mouth": len(trainer.model.mouth)},
        "syncnet_train_seconds": round(syncnet_seconds, 1),
        "terms_dropped": state.get("terms_dropped", {}),
        "sync": state.get("sync"),
        "per_stage": per_stage,
    }, run


# ----------------------------------------------------------------------------------------------
# 5. render speed
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def render_speed(run: Path, device: torch.device, frames: int) -> dict:
    """Frames per second of ``model.forward`` at the subject's resolution with inputs prepared on the device, and of
    the valence/arousal-only path (:meth:`EmoTalkingGaussian.render_prepared`)."""
    from etlib.train import SubjectFrames, load_model

    model = load_model(run, device=device).eval()
    data = SubjectFrames.for_run(run, model.config["audio_frames"], device=device)
    ids = [data.train_ids[k % len(data.train_ids)] for k in range(min(frames, 64))]
    inputs = [(data.camera(i), data.condition(i), data.background(i)) for i in ids]
    warmup = min(10, frames)
    for k in range(warmup):
        model(*inputs[k % len(inputs)])
    _sync(device)
    start = time.perf_counter()
    for k in range(frames):
        image = model(*inputs[k % len(inputs)]).image
    _sync(device)
    full = frames / (time.perf_counter() - start)
    prepared = model.prepare_frame(*inputs[0])
    va = torch.tensor([0.5, -0.3], device=device)
    for _ in range(warmup):
        model.render_prepared(prepared, va)
    _sync(device)
    start = time.perf_counter()
    for k in range(frames):
        va = torch.tensor([np.cos(k / 10), np.sin(k / 10)], dtype=torch.float32, device=device) * 0.8
        model.render_prepared(prepared, va)
    _sync(device)
    fast = frames / (time.perf_counter() - start)
    assert torch.isfinite(image).all()
    return {
        "resolution": data.resolution,
        "gaussians": {"face": len(model.face), "mouth": len(model.mouth)},
        "frames": frames,
        "fps_full_model": round(full, 1),
        "fps_valence_arousal_only": round(fast, 1),
        "goal_fps": GOAL_FPS,
        "goal_met": full >= GOAL_FPS if device.type == "cuda" else None,
        "paper_fps_rtx4090": PAPER_FPS,
    }


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/gpu_check"), help="work folder and JSON")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--preset", default="paper", help="the preset whose stages are timed (paper: 512 px)")
    parser.add_argument("--subject", type=Path, help="a processed subject (default: the sample's first --frames)")
    parser.add_argument("--frames", type=int, default=250, help="frames of the sample subject to preprocess")
    parser.add_argument("--steps", type=int, default=200, help="steps of each training stage")
    parser.add_argument("--syncnet-steps", type=int, default=100, help="steps of the subject's SyncNet (L_sync)")
    parser.add_argument("--fps-frames", type=int, default=300, help="frames timed for the render FPS")
    parser.add_argument("--parity-gaussians", type=int, default=20000)
    parser.add_argument("--parity-size", type=int, default=512, help="parity scene size (CPU: 64 is plenty)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("parity", "stages", "render"))
    args = parser.parse_args(argv)

    from etlib.backends import resolve_device, torch_threads
    from etlib.config import get_preset

    device = resolve_device(args.device)
    preset = get_preset(args.preset)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: dict = {"environment": environment(device)}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch_threads():  # CPU work (frames, targets, the CPU rasterizer) on $ETLIB_TORCH_THREADS threads
        if "parity" in args.skip:
            report["rasterizer_parity"] = report["hash_grid_parity"] = _skipped("--skip parity")
        else:
            size = args.parity_size if device.type == "cuda" else min(args.parity_size, 64)
            n = args.parity_gaussians if device.type == "cuda" else min(args.parity_gaussians, 500)
            report["rasterizer_parity"] = rasterizer_parity(device, n, size)
            report["hash_grid_parity"] = hash_grid_parity(device)
        run = None
        if "stages" in args.skip:
            report["stages"] = _skipped("--skip stages")
        else:
            subject = subject_for(args, preset)
            report["stages"], run = stages(args, preset, subject, device)
        if "render" in args.skip or run is None:
            report["render"] = _skipped("--skip render" if "render" in args.skip else "needs the stages' model")
        else:
            report["render"] = render_speed(run, device, args.fps_frames)
    if device.type == "cuda":
        report["memory"] = {
            "peak_allocated_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 2),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved(device) / 1e9, 2),
        }
    else:
        report["memory"] = _skipped("no CUDA device: GPU memory is not measured")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

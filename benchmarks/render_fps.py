"""Frames per second of the full EmoTalkingGaussian model (networks + rasterization + composition); prints JSON.

One frame is what inference does for every video frame (Fig. 3, Eqs. 3-5, S9-S10): f_M deforms the mouth
Gaussians, f_F and f_E the face Gaussians, both layers are rasterized and composed over the background.
Timed per part, with warm-up frames first, over several different frames of the subject (their own audio,
AUs, emotion and camera):

* ``networks``: the three manipulation networks (tri-plane hash encoders, region attention, MLPs) and the
  deformation of the Gaussians; split into ``mouth_network`` (f_M) and ``face_networks`` (f_F + f_E);
* ``rasterization``: both layers through the rasterizer (etlib's tiled PyTorch one on the CPU, gsplat on CUDA);
* ``composition``: Eqs. S9-S10.

CPU: 128 and 256 px with ``$ETLIB_TORCH_THREADS`` threads (default 1). CUDA (when available): 512 px with
gsplat and, when it imports, tinycudann (the paper: 101 FPS at 512 px on an RTX 4090; our goal: >= 300).

    python benchmarks/render_fps.py --run outputs/run               # a trained run (its subject is read)
    python benchmarks/render_fps.py --subject outputs/subject       # an initialised (untrained) model
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
import torch

from etlib.base import add_debug_flag, run_main

PAPER = {"fps": 101, "resolution": 512, "device": "RTX 4090"}
GOAL_GPU_FPS = 300


def load_or_build(run: Path | None, subject: Path | None, preset_name: str | None, backend: str, device: str = "cpu"):
    """(model on ``device``, subject folder, preset, where the model came from)."""
    from etlib.config import get_preset
    from etlib.train.checkpoints import read_run_state
    from etlib.train.trainer import load_model

    if run is not None:  # state.json validated, the checkpoint loaded with weights_only=True
        st = read_run_state(run)
        model = load_model(run, preset_name, backend=backend, device=device)
        preset = get_preset(preset_name or st["preset"])
        last = st["completed"][-1]
        return model, Path(subject or st["subject"]), preset, f"{run} ({last})"
    if subject is None:
        raise ValueError("give --run RUN or --subject SUBJECT")
    from etlib.preprocess.subject import SubjectDir
    from etlib.talking.init import initial_gaussians
    from etlib.talking.model import EmoTalkingGaussian
    from etlib.train.data import SubjectFrames

    preset = get_preset(preset_name or "quick")
    data = SubjectFrames(subject, preset.audio_window)
    torch.manual_seed(0)
    mouth, face = initial_gaussians(
        SubjectDir(subject), preset.n_gaussians_face, preset.n_gaussians_mouth, data.train_ids, seed=0
    )
    model = EmoTalkingGaussian(
        mouth, face, audio_in_dim=data.audio_channels, audio_window=data.audio_bins, audio_frames=preset.audio_window,
        au_dim=data.au.shape[1], hash_grid=preset.hash_grid, backend=backend,
    )  # fmt: skip
    return model.to(device), Path(subject), preset, f"initialised on {subject} (preset {preset.name}, untrained)"


def hash_encoder_kind(model) -> str:
    enc = model.f_F.encoder.planes["xy"]
    return type(enc).__module__ + "." + type(enc).__name__


def frame_inputs(data, frames: list[int], res: int, device: str):
    """Cameras scaled to ``res``, conditions and backgrounds of ``frames`` (prepared outside the timing)."""
    import torch.nn.functional as F

    out = []
    for i in frames:
        cam = data.camera(i).scaled(res / data.resolution).to(device)
        cond = data.condition(i)
        cond.audio, cond.au, cond.va = (t.to(device) for t in (cond.audio, cond.au, cond.va))
        bg = torch.from_numpy(data.subject.read_bg(i).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        bg = F.interpolate(bg, size=(res, res), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        out.append((cam, cond, bg.contiguous().to(device)))
    return out


@torch.no_grad()
def time_frames(model, inputs, warmup: int, backend: str, sync) -> dict:
    """Seconds per part for each frame (after ``warmup`` untimed frames), and the layers' Gaussian counts."""
    from etlib.talking.composition import composite

    parts = {"networks": [], "mouth_network": [], "face_networks": [], "rasterization": [], "composition": []}
    parts["total"] = []
    visible = []
    for k, (cam, cond, bg) in enumerate([*inputs[:warmup], *inputs]):
        sync()
        t0 = time.perf_counter()
        mouth_layer = model.mouth_layer(cond)
        sync()
        tm = time.perf_counter()
        face_layer = model.face_layer(cond)
        sync()
        t1 = time.perf_counter()
        mouth = model.render_layer(mouth_layer, cam, backend=backend)
        face = model.render_layer(face_layer, cam, backend=backend)
        sync()
        t2 = time.perf_counter()
        image = composite(face.color, face.alpha, mouth.color, mouth.alpha, bg).image
        sync()
        t3 = time.perf_counter()
        if k < warmup:
            continue
        for name, dt in zip(parts, (t1 - t0, tm - t0, t1 - tm, t2 - t1, t3 - t2, t3 - t0)):
            parts[name].append(dt)
        vis = [int(o.meta["visibility"].sum()) for o in (face, mouth) if "visibility" in o.meta]
        visible.append(vis)
    assert image.shape[-1] == 3 and torch.isfinite(image).all()
    summary = {
        f"{name}_ms": {"median": round(1e3 * statistics.median(v), 3), "best": round(1e3 * min(v), 3)}
        for name, v in parts.items()
    }
    fps = len(parts["total"]) / sum(parts["total"])
    return {
        "fps": round(fps, 2),
        "fps_best_frame": round(1.0 / min(parts["total"]), 2),
        **summary,
        "timed_frames": len(parts["total"]),
        "visible_gaussians_face_mouth_median": [int(np.median([v[j] for v in visible])) for j in range(2)]
        if visible and len(visible[0]) == 2
        else None,
    }


@torch.no_grad()
def split_matches_forward(model, inputs, backend: str) -> float:
    """Max |difference| between the timed split and ``model.forward`` on one frame (a sanity check)."""
    from etlib.talking.composition import composite

    cam, cond, bg = inputs[0]
    whole = model(cam, cond, bg).image
    mouth = model.render_layer(model.mouth_layer(cond), cam, backend=backend)
    face = model.render_layer(model.face_layer(cond), cam, backend=backend)
    return float((composite(face.color, face.alpha, mouth.color, mouth.alpha, bg).image - whole).abs().max())


def measure(model, data, frames, resolutions, device, warmup, backend) -> list[dict]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for res in resolutions:
        inputs = frame_inputs(data, frames, res, device)
        row = {"resolution": res, "device": device, "rasterizer_backend": backend}
        row |= time_frames(model, inputs, warmup, backend, sync)
        row["split_vs_forward_max_abs_diff"] = split_matches_forward(model, inputs, backend)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a training run folder (python -m etlib.train --out RUN)")
    parser.add_argument("--subject", type=Path, help="a preprocessed subject (default: the run's subject)")
    parser.add_argument("--preset", default=None, help="preset (default: the run's, or quick)")
    parser.add_argument("--frames", type=int, default=8, help="timed frames per resolution")
    parser.add_argument("--warmup", type=int, default=2, help="untimed frames first")
    parser.add_argument("--cpu-resolutions", default="128,256")
    parser.add_argument("--cuda-resolution", type=int, default=512)
    parser.add_argument("--cuda-frames", type=int, default=200)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU measurement")
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    from etlib.backends import cuda_available, gsplat_cuda_available, summary, tinycudann_available, torch_threads
    from etlib.train.data import SubjectFrames

    report: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if cuda_available() else None,
        },
        "paper": PAPER,
        "goal_gpu_fps": GOAL_GPU_FPS,
    }
    with torch_threads() as n_threads:
        report["machine"]["torch_threads"] = n_threads
        model, subject, preset, source = load_or_build(args.run, args.subject, args.preset, backend="torch")
        model.eval()
        data = SubjectFrames(subject, preset.audio_window)
        ids = list(data.test_ids) or list(range(data.n))
        frames = [ids[int(k)] for k in np.linspace(0, len(ids) - 1, args.frames).round()]
        report["model"] = {
            "source": source,
            "preset": preset.name,
            "gaussians_face": len(model.face),
            "gaussians_mouth": len(model.mouth),
            "emotion_branch": model.f_E is not None,
            "subject_resolution": data.resolution,
        }
        if not args.no_cpu:
            resolutions = [int(r) for r in args.cpu_resolutions.split(",") if r]
            report["cpu"] = {
                "hash_encoder": hash_encoder_kind(model),
                "results": measure(model, data, frames, resolutions, "cpu", args.warmup, "auto"),
            }
    if cuda_available():
        cuda: dict = {"gsplat": gsplat_cuda_available(), "tinycudann": tinycudann_available()}
        try:  # tinycudann encoders ("auto" picks them on CUDA); fall back to the PyTorch hash grid on CUDA
            model, *_ = load_or_build(args.run, args.subject, args.preset, backend="auto", device="cuda")
            model = model.eval()
        except Exception as exc:  # a tcnn build/load failure has many types; report it and go on
            cuda["tinycudann_error"] = f"{type(exc).__name__}: {exc}"[:300]
            model, *_ = load_or_build(args.run, args.subject, args.preset, backend="torch", device="cuda")
            model = model.eval()
        cuda["hash_encoder"] = hash_encoder_kind(model)
        cuda_ids = [ids[k % len(ids)] for k in range(args.cuda_frames)]
        cuda["results"] = measure(model, data, cuda_ids, [args.cuda_resolution], "cuda", 10, "auto")
        fps = cuda["results"][0]["fps"]
        cuda["goal_met"] = fps >= GOAL_GPU_FPS
        cuda["vs_paper"] = round(fps / PAPER["fps"], 2)
        report["cuda"] = cuda
    else:
        report["cuda"] = {"available": False, "reason": "no CUDA device (or ETLIB_FORCE_CPU is set)"}
    report["backends"] = {k: v for k, v in summary().items() if k in ("rasterizer", "hash_encoder")}
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

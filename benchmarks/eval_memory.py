"""Peak memory of the whole-clip passes on a long subject: evaluation, SyncNet's, training's and rendering's data path.

    python benchmarks/eval_memory.py --out /tmp/long [--source outputs/subject] [--frames 7500] [--size 512]

A 5-minute talking-head video at 512 px is 7,500 frames: 5.9 GB as uint8, 23.6 GB as float32. Every pass over a
clip must hold a batch of frames at a time, never the clip. This benchmark builds such a subject from a processed
one (``--source``, e.g. the course's ``outputs/subject``): its frames, masks, backgrounds and normal maps looped to
``--frames`` frames and resized to ``--size`` px (the files of a repeated frame are hard links: the folder costs the
source's frames once, yet every frame is read and decoded as a real one), the landmarks and intrinsics scaled, the
audio, audio features, action units and valence/arousal looped with the frames. A small model (the smoke preset,
a few steps a stage) and a small SyncNet are trained on it; the point is the data path, not the model.

Each pass then runs in a fresh process; its peak resident memory (``VmHWM``) is what a machine must have:

* ``baseline``: imports, the model and the subject's arrays, nothing rendered (the floor of the passes below);
* ``evaluate_model``: the run's test metrics (``etlib.train.run_metrics``; PSNR, SSIM, LMD) on the whole test split;
* ``table1``: Table 1 (self-reconstruction: PSNR, SSIM, LPIPS, LMD, Sync-E/C, AUE) on the whole test split;
* ``syncnet``: the SyncNet check's clip (mouth crops of every frame), a few training steps and its held-out windows;
* ``train``: a few training steps of every stage (frames streamed from disk);
* ``render``: a ``--render-seconds`` video through :func:`etlib.render.render_video`.

Prints JSON (and writes ``OUT/eval_memory.json``): the peak RSS of each pass in GB, its seconds, the limit (4 GB)
and whether every pass kept under it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LIMIT_GB = 4.0
PASSES = ("baseline", "evaluate_model", "table1", "syncnet", "train", "render")


# ----------------------------------------------------------------------------------------------
# A long subject from a short one
# ----------------------------------------------------------------------------------------------


def _link_or_write(path: Path, first: Path | None, write) -> None:
    """``path`` as a hard link to ``first`` (the same source frame written before), else written by ``write``."""
    if first is not None and first.exists():
        try:
            os.link(first, path)
            return
        except OSError:  # a filesystem without hard links: write the file again
            pass
    write(path)


def make_long_subject(source: str | Path, out: str | Path, n_frames: int = 7500, size: int = 512) -> Path:
    """A processed subject of ``n_frames`` frames at ``size`` px, made by looping and resizing ``source`` (a processed
    subject folder). Every array and file a subject has is there, so preprocessing-free code paths (training,
    evaluation, rendering, SyncNet) read it as a real one. Returns ``out``."""
    import cv2

    from etlib.base import atomic_save_npy, atomic_write_text
    from etlib.preprocess.action_units import write_au_csv
    from etlib.preprocess.subject import MASK_NAMES, SubjectDir, frame_name

    src, dst = SubjectDir(source), SubjectDir(out)
    meta = src.meta()
    n_src, res = int(meta["n_frames"]), int(meta["resolution"])
    if n_frames < 12:
        raise ValueError(f"a long subject needs at least 12 frames (a test split and SyncNet windows), got {n_frames}")
    scale = size / res
    dst.root.mkdir(parents=True, exist_ok=True)
    for folder in (dst.frames, dst.bg, dst.normals, *(dst.mask_dir(m) for m in MASK_NAMES)):
        folder.mkdir(parents=True, exist_ok=True)

    def resized(img: np.ndarray, nearest: bool = False) -> np.ndarray:
        if size == res:
            return img
        return cv2.resize(img, (size, size), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)

    # (folder of the new subject, the source file of frame k, image flags, nearest-neighbour resize)
    kinds = [(dst.frames, lambda k: src.frame_path(k), cv2.IMREAD_COLOR, False, "jpg"),
             (dst.bg, lambda k: src.bg / frame_name(k, "jpg"), cv2.IMREAD_COLOR, False, "jpg"),
             (dst.normals, lambda k: src.normals / frame_name(k, "png"), cv2.IMREAD_COLOR, True, "png")]  # fmt: skip
    kinds += [(dst.mask_dir(m), lambda k, m=m: src.mask_dir(m) / frame_name(k, "png"), cv2.IMREAD_GRAYSCALE, True, "png")
              for m in MASK_NAMES]  # fmt: skip
    for i in range(n_frames):
        j = i % n_src  # frame i shows source frame j; a repeat is a hard link to frame j's file
        for folder, source_file, flags, nearest, ext in kinds:
            target = folder / frame_name(i, ext)
            if target.exists():
                continue

            def write(path: Path, k=j, read=source_file, fl=flags, nn=nearest) -> None:
                cv2.imwrite(str(path), resized(cv2.imread(str(read(k)), fl), nn))

            _link_or_write(target, folder / frame_name(j, ext) if i >= n_src else None, write)
    cv2.imwrite(str(dst.background), resized(cv2.imread(str(src.background))))

    loop = np.arange(n_frames) % n_src
    atomic_save_npy(dst.landmarks, (np.load(src.landmarks)[loop] * scale).astype(np.float32))
    atomic_save_npy(dst.audio_features, np.load(src.audio_features)[loop])
    atomic_save_npy(dst.va, np.load(src.va)[loop])
    if (src.root / "emotion_probs.npy").exists():
        atomic_save_npy(dst.root / "emotion_probs.npy", np.load(src.root / "emotion_probs.npy")[loop])
    names, aus = src.read_au()
    write_au_csv(dst.au, aus[loop], [n.removesuffix("_r") for n in names])

    transforms = json.loads(src.transforms.read_text())
    transforms.update(focal_len=transforms["focal_len"] * scale, cx=transforms["cx"] * scale,
                      cy=transforms["cy"] * scale, w=size, h=size)  # fmt: skip
    frames = transforms["frames"]
    transforms["frames"] = [dict(frames[j], img_id=i, aud_id=i) for i, j in enumerate(loop)]
    atomic_write_text(dst.transforms, json.dumps(transforms))

    from scipy.io import wavfile

    from etlib.io import read_audio

    per_frame = 16000 // 25
    wave = read_audio(src.audio, sr=16000)
    wave = np.pad(wave, (0, max(0, n_src * per_frame - len(wave))))[: n_src * per_frame]
    reps = -(-n_frames // n_src)
    wave = np.tile(wave, reps)[: n_frames * per_frame]
    wavfile.write(str(dst.audio), 16000, (np.clip(wave, -1, 1) * 32767).astype(np.int16))

    n_test = max(1, int(round(n_frames / 11)))  # as preprocessing splits: the last eleventh for test
    atomic_write_text(dst.split, json.dumps({"train": list(range(n_frames - n_test)),
                                             "test": list(range(n_frames - n_test, n_frames))}))  # fmt: skip
    meta = {**meta, "resolution": size, "n_frames": n_frames, "synthetic": f"{source} looped to {n_frames} frames"}
    atomic_write_text(dst.meta_path, json.dumps(meta, indent=1, default=str))
    return dst.root


# ----------------------------------------------------------------------------------------------
# The passes (each in its own process)
# ----------------------------------------------------------------------------------------------


def _peak_gb() -> float:
    """This process's peak resident set size so far, in GB: ``VmHWM`` of ``/proc/self/status`` (the high-water mark
    of this process's own memory; ``ru_maxrss`` would also count the parent's size at the fork), else ``ru_maxrss``
    where there is no ``/proc``."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def run_pass(name: str, subject: Path, run: Path, syncnet: Path, work: Path, render_seconds: float) -> dict:
    """Run one pass here and return what it measured (called in a child process by :func:`main`)."""
    import torch

    from etlib.train import SubjectFrames, load_model

    torch.set_num_threads(1)
    start = time.perf_counter()
    model = load_model(run, device="cpu").eval()
    data = SubjectFrames.for_run(run, model.config["audio_frames"], subject, device="cpu")
    info: dict = {"frames": data.n, "test_frames": len(data.test_ids)}
    if name == "evaluate_model":
        from etlib.train.run_metrics import evaluate_model

        info["psnr"] = evaluate_model(model, data, progress=False)["psnr"]
    elif name == "table1":
        from etlib.evaluation import paper_tables as ev

        backends = ev.make_backends(syncnet, device="cpu")
        result = ev.self_reconstruction(model, data, backends, fps_iters=1, progress=False)
        ours = result["rows"][-1]
        info |= {"psnr": ours["psnr"], "sync_c": ours["sync_c"], "lpips": ours["lpips"], "lmd": ours["lmd"]}
    elif name == "syncnet":
        from etlib.audio.syncnet import load_syncnet
        from etlib.config import get_preset
        from etlib.evaluation.syncnet_check import (
            evaluate_windows,
            held_out_windows,
            load_subject_clip,
            train_subject_syncnet,
        )

        clip = load_subject_clip(subject, get_preset("paper").syncnet.face_hw)
        trained = train_subject_syncnet(
            subject, work / "syncnet_pass", "paper", iterations=5, progress=False, clip=clip
        )
        windows = held_out_windows(clip)["windows"]
        evaluation = evaluate_windows(clip, load_syncnet(trained.checkpoint_path), windows).report()
        info |= {"crops_gb": clip.crops.nbytes / 1e9, "windows": len(windows),
                 "offset_accuracy": evaluation["offset_accuracy"]["value"]}  # fmt: skip
    elif name == "train":
        from etlib.config import StageIterations, get_preset
        from etlib.train import Trainer

        preset = get_preset("smoke").with_overrides(iterations=StageIterations(*(4,) * 6), checkpoint_every=1000)
        Trainer(subject, work / "train_pass", preset, progress=False, device="cpu").run()
    elif name == "render":
        from etlib.io import read_audio
        from etlib.render import render_video

        audio = read_audio(subject / "audio.wav", sr=16000)[: int(render_seconds * 16000)]
        render_video(run, work / "render_pass.mp4", audio=audio, va="circle", progress=False, device="cpu")
        info["video_seconds"] = render_seconds
    elif name != "baseline":
        raise ValueError(f"unknown pass {name!r}; passes are {', '.join(PASSES)}")
    return {"pass": name, "peak_rss_gb": round(_peak_gb(), 3), "seconds": round(time.perf_counter() - start, 1)} | info


def prepare(out: Path, source: Path, n_frames: int, size: int) -> tuple[Path, Path, Path]:
    """The long subject, a small run trained on it and a small SyncNet of it (each reused when already there)."""
    import torch

    from etlib.config import StageIterations, get_preset
    from etlib.evaluation.syncnet_check import train_subject_syncnet
    from etlib.train import Trainer

    subject = out / "subject"
    if not (subject / "meta.json").exists() or json.loads((subject / "meta.json").read_text())["n_frames"] != n_frames:
        make_long_subject(source, subject, n_frames, size)
    torch.set_num_threads(1)
    run = out / "run"
    preset = get_preset("smoke").with_overrides(iterations=StageIterations(*(3,) * 6), checkpoint_every=1000)
    Trainer(subject, run, preset, progress=False, device="cpu").run()
    syncnet = out / "syncnet" / "syncnet.pt"
    if not syncnet.exists():  # the smoke preset's compact SyncNet: only Sync-E/C's data path is measured here
        train_subject_syncnet(subject, syncnet.parent, "smoke", iterations=5, progress=False)
    return subject, run, syncnet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where the long subject, the run and the JSON go")
    parser.add_argument("--source", type=Path, default=Path("outputs/subject"), help="a processed subject to loop")
    parser.add_argument("--frames", type=int, default=7500, help="frames of the long subject (7,500: 5 minutes)")
    parser.add_argument("--size", type=int, default=512, help="its resolution in pixels")
    parser.add_argument("--passes", nargs="*", default=list(PASSES), choices=PASSES)
    parser.add_argument("--render-seconds", type=float, default=20.0, help="length of the render pass's video")
    parser.add_argument("--one-pass", help=argparse.SUPPRESS)  # internal: run one pass in this process
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.one_pass == "prepare":
        prepare(out, args.source, args.frames, args.size)
        return 0
    if args.one_pass:
        result = run_pass(args.one_pass, out / "subject", out / "run", out / "syncnet" / "syncnet.pt", out,
                          args.render_seconds)  # fmt: skip
        print(json.dumps(result))
        return 0
    if not (args.source / "meta.json").exists():
        raise FileNotFoundError(
            f"--source {args.source} is not a processed subject: run `make course` (it writes outputs/subject) or "
            "`python -m etlib.preprocess VIDEO DIR`"
        )
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # in a child too: this process stays small, so nothing of the preparation counts in a pass's peak
    cmd = [sys.executable, __file__, "--out", str(out), "--source", str(args.source.resolve()), "--frames",
           str(args.frames), "--size", str(args.size), "--one-pass", "prepare"]  # fmt: skip
    subprocess.run(cmd, check=True, env=env)
    report = {"frames": args.frames, "size": args.size, "source": str(args.source), "limit_gb": LIMIT_GB,
              "prepare_seconds": round(time.perf_counter() - t0, 1), "passes": []}  # fmt: skip
    for name in args.passes:
        cmd = [
            sys.executable,
            __file__,
            "--out",
            str(out),
            "--one-pass",
            name,
            "--render-seconds",
            str(args.render_seconds),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"pass {name} failed:\n{proc.stderr[-3000:]}")
        report["passes"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(report["passes"][-1]), file=sys.stderr, flush=True)
    report["max_peak_rss_gb"] = max(p["peak_rss_gb"] for p in report["passes"])
    report["under_limit"] = report["max_peak_rss_gb"] <= LIMIT_GB
    (out / "eval_memory.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())

"""Real footage end to end (issue 11): preprocess every clip, train one, render, and write the figures.

    python benchmarks/real_footage.py DATA_DIR OUT_DIR [--preset quick] [--train CLIP | --train all] [--quiet]

* Every file in DATA_DIR is probed (names and extensions are not trusted): files with a picture and sound
  are clips, files with sound only are driving speech, everything else is ignored.
* Each clip is preprocessed into ``OUT_DIR/subjects/<clip>`` (``report.json`` holds its self-checks).
* The chosen clip (``--train``, default the first by name) is trained through all six stages with the
  preset into ``OUT_DIR/run`` and evaluated on its test frames (PSNR, SSIM, LMD: ``run/metrics.json``).
* Renders in ``OUT_DIR/renders``: ``test_frames.mp4`` (ground truth | render of the test frames, with their
  sound), ``speech_<name>.mp4`` (the model driven by each speech file, with that sound) and
  ``emotion_sweep.mp4`` (once around the valence/arousal circle, radius 0.8, while speaking).
* ``OUT_DIR/summary.json`` and ``OUT_DIR/contact_sheet.png``; the summary is also printed as JSON.
* ``--train all`` trains every clip that preprocessed, one after the other, each into its own run folder
  ``OUT_DIR/runs/<clip>`` with its renders in ``OUT_DIR/renders/<clip>`` and its sheet in
  ``OUT_DIR/contact_sheets/<clip>.png``; ``summary.json`` then holds every clip's figures under ``trained`` and
  their ``spread`` (lowest, highest, mean and range of test PSNR and head PSNR, and the weakest clip), which is also
  printed as a table on stderr. A clip whose training fails is recorded with its error and the others go on.

Resumable: preprocessing and training resume themselves, renders whose file exists are skipped, and the
seconds each step took are kept in ``OUT_DIR/timings.json`` so that a resumed benchmark still reports the
whole wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from etlib.base import add_debug_flag, run_main

os.environ.setdefault("MPLBACKEND", "Agg")

FPS = 25.0
SAMPLE_RATE = 16000
SHEET_TEST_FRAMES = 6
SHEET_SWEEP_FRAMES = 8


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


def classify_media(data_dir: Path) -> tuple[list[Path], list[Path]]:
    """``(clips, speech)`` in DATA_DIR, sorted by name: clips have a video stream (and sound, checked by
    preprocessing), speech files have audio only. Files ffmpeg cannot read are skipped."""
    from etlib.io import MediaError, probe

    if not data_dir.is_dir():
        raise FileNotFoundError(f"no such folder: {data_dir}")
    clips, speech = [], []
    for path in sorted(p for p in data_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            info = probe(path)
        except MediaError:
            continue  # README, images ffmpeg rejects, partial downloads...
        if info.video is not None and info.video.n_frames > 1:
            clips.append(path)
        elif info.audio is not None and info.video is None:
            speech.append(path)
    if not clips:
        raise FileNotFoundError(f"no video with a picture found in {data_dir} (every file was probed)")
    return clips, speech


def unique_names(paths: list[Path]) -> dict[str, Path]:
    """A folder-safe name per file: its stem, with the extension added where two stems collide."""
    stems = [p.stem for p in paths]
    names = {}
    for p in paths:
        name = p.stem if stems.count(p.stem) == 1 else f"{p.stem}_{p.suffix.lstrip('.')}"
        names["".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)] = p
    return names


# ------------------------------------------------------------------------------------------------
# Bookkeeping
# ------------------------------------------------------------------------------------------------


class Timings:
    """Seconds per benchmark step, kept in ``OUT_DIR/timings.json`` across resumed runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def add(self, step: str, seconds: float) -> None:
        self.seconds[step] = round(self.seconds.get(step, 0.0) + seconds, 2)
        self.path.write_text(json.dumps(self.seconds, indent=2))

    def timed(self, step: str, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.add(step, time.perf_counter() - start)


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child (ffmpeg, TTS...), in MB;
    ``total`` is their sum, an upper bound on what the benchmark held at once."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self": round(own, 1), "children": round(children, 1), "total": round(own + children, 1)}


# ------------------------------------------------------------------------------------------------
# Steps
# ------------------------------------------------------------------------------------------------


def preprocess_clips(clips: dict[str, Path], out: Path, preset, timings: Timings, progress: bool) -> dict:
    """Preprocess every clip; a clip that fails is recorded with its error and the others go on."""
    from etlib.preprocess import preprocess
    from etlib.preprocess.subject import SubjectDir

    results = {}
    for name, video in clips.items():
        root = out / "subjects" / name
        entry: dict = {"file": video.name}
        try:
            subject = timings.timed(f"preprocess/{name}", preprocess, video, root, preset, progress=progress)
            report = json.loads(SubjectDir(root).report.read_text())
            meta = subject.meta()
            entry.update(
                subject=str(root),
                frames=report["frames"],
                source_fps=meta.get("source_fps"),
                source_vfr=meta.get("source_vfr"),
                source_size=meta.get("source_size"),
                source_audio=[meta.get("source_audio_rate"), meta.get("source_audio_channels")],
                crop=meta.get("crop"),
                self_checks=report["self_checks"],
                backends=report["backends"],
            )
        except Exception as err:  # noqa: BLE001 - a bad clip is a finding of the benchmark, not a crash
            entry["error"] = f"{type(err).__name__}: {err}"
        results[name] = entry
    return results


def train_clip(subject: Path, run: Path, preset, timings: Timings, progress: bool, step: str = "train"):
    """Train all stages (resumes) and evaluate the test frames once; returns (trainer, metrics)."""
    from etlib.train.run_metrics import evaluate_run
    from etlib.train.stages import STAGE_NAMES
    from etlib.train.sync import make_sync_loss
    from etlib.train.trainer import Trainer, default_emotion_targets

    start = time.perf_counter()  # setting up (emotion targets, SyncNet) counts as training time
    trainer = Trainer(subject, run, preset, progress=progress, emotion_targets=default_emotion_targets())
    trainer.use_sync_loss(make_sync_loss(trainer.data, None))
    state = trainer.run()
    timings.add(step, time.perf_counter() - start)
    if state["completed"][-1:] != [STAGE_NAMES[-1]]:
        raise RuntimeError(f"training of {subject} stopped after {state['completed']}")
    metrics_path = run / "metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
    else:
        metrics = timings.timed(step.replace("train", "evaluate"), evaluate_run, trainer, progress=progress)
    return trainer, metrics


def render_test_frames(trainer, path: Path, timings: Timings, progress: bool, step: str = "render/test_frames") -> Path:
    """``test_frames.mp4``: ground truth | self-reconstruction of every test frame, with their own sound."""
    if path.exists():
        return path
    from tqdm.auto import tqdm

    from etlib.backends import torch_threads
    from etlib.io import read_audio, write_video
    from etlib.train.run_metrics import render_frame

    data, model = trainer.data, trainer.model.eval()
    ids = list(data.test_ids)
    start = time.perf_counter()
    with torch_threads():
        frames = [
            np.concatenate(
                [data.subject.read_frame(i), (render_frame(model, data, i) * 255).round().astype(np.uint8)], 1
            )
            for i in tqdm(ids, desc="test frames", disable=not progress)
        ]
        hop = int(SAMPLE_RATE / FPS)
        sound = read_audio(data.subject.audio, sr=SAMPLE_RATE)[ids[0] * hop : (ids[-1] + 1) * hop]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(frames, path, FPS, audio=sound, sr=SAMPLE_RATE)
    timings.add(step, time.perf_counter() - start)
    return path


def render_driven(run: Path, out: Path, audio: Path, va, step: str, timings: Timings, progress: bool) -> Path:
    """The trained head driven by ``audio`` along the valence/arousal path ``va`` (skipped if done)."""
    if out.exists():
        return out
    from etlib.render import render_video

    return timings.timed(step, render_video, run, out, audio=audio, va=va, progress=progress)


def sweep_path(seconds: float):
    """Once around the valence/arousal circle (radius 0.8, from v=+0.8, a=0) over ``seconds``."""
    from etlib.render import circle_va

    return circle_va(radius=0.8, period_s=max(seconds, 1.0))


def write_contact_sheet(renders: Path, test_ids: list[int], sweep_seconds: float, out: Path, title: str) -> Path:
    """Ground truth | render pairs from ``test_frames.mp4`` (frames ``test_ids`` of the subject) and frames of
    ``emotion_sweep.mp4``."""
    from etlib.io import read_frames
    from etlib.viz.real_footage import contact_sheet, pick_evenly

    pairs = read_frames(renders / "test_frames.mp4")
    half = pairs.shape[2] // 2
    picks = pick_evenly(len(pairs), SHEET_TEST_FRAMES)
    sweep = read_frames(renders / "emotion_sweep.mp4")
    sweep_picks = pick_evenly(len(sweep), SHEET_SWEEP_FRAMES)
    va = sweep_path(sweep_seconds)
    labels = [f"v={va(k / FPS)[0]:+.2f} a={va(k / FPS)[1]:+.2f}" for k in sweep_picks]
    return contact_sheet(
        [pairs[k][:, :half] for k in picks],
        [pairs[k][:, half:] for k in picks],
        [sweep[k] for k in sweep_picks],
        frame_labels=[f"test frame {test_ids[k]}" for k in picks],
        sweep_labels=labels,
        title=title,
        out=out,
    )


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


def run_benchmark(
    data_dir: str | Path,
    out_dir: str | Path,
    preset: str = "quick",
    train: str | None = None,
    progress: bool = True,
) -> dict:
    """Run every step (resuming) and return the summary written to ``OUT_DIR/summary.json``."""
    from etlib.backends import summary as backend_summary
    from etlib.base import atomic_write_text
    from etlib.config import get_preset

    preset = get_preset(preset)
    data_dir, out = Path(data_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings = Timings(out / "timings.json")
    start = time.perf_counter()

    clip_files, speech_files = timings.timed("probe_inputs", classify_media, data_dir)
    clips, speech = unique_names(clip_files), unique_names(speech_files)
    chosen = _choose_clip(clips, train)
    clip_results = preprocess_clips(clips, out, preset, timings, progress)
    if train != "all" and "error" in clip_results[chosen]:
        raise RuntimeError(f"the clip to train, {clips[chosen].name}, failed to preprocess: {clip_results[chosen]}")

    if train == "all":
        done = [name for name, entry in clip_results.items() if "error" not in entry]
        if not done:
            raise RuntimeError(f"no clip preprocessed: {clip_results}")
        trained, sheets = {}, {}
        for name in done:
            try:
                trained[name], sheets[name] = train_and_render(
                    name, clips[name], out, out / "runs" / name, out / "renders" / name,
                    out / "contact_sheets" / f"{name}.png", speech, preset, timings, progress,
                    clip_results[name].get("backends"), step_prefix=f"{name}/",
                )  # fmt: skip
            except Exception as err:  # noqa: BLE001 - one clip's failure is a finding; the others go on
                trained[name] = {"clip": clips[name].name, "error": f"{type(err).__name__}: {err}"}
        results = {"trained": trained, "spread": spread(trained), "contact_sheets": sheets}
    else:
        entry, sheet = train_and_render(
            chosen, clips[chosen], out, out / "run", out / "renders", out / "contact_sheet.png",
            speech, preset, timings, progress, clip_results[chosen].get("backends"),
        )  # fmt: skip
        results = {"trained": entry, "contact_sheet": sheet}
    renders = out / "renders"
    this_run = time.perf_counter() - start
    summary = {
        "data_dir": str(data_dir.resolve()),
        "preset": preset.name,
        "clips": clip_results,
        "speech": {name: p.name for name, p in speech.items()},
        **results,
        "renders": sorted(str(p.relative_to(out)) for p in renders.rglob("*.mp4")),
        "seconds_per_step": timings.seconds,
        "wall_seconds_total": round(sum(timings.seconds.values()), 1),
        "wall_seconds_this_invocation": round(this_run, 1),
        "peak_memory_mb": peak_memory_mb(),
        "backends": backend_summary(),
        "cpu_count": os.cpu_count(),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def train_and_render(
    name: str, video: Path, out: Path, run: Path, renders: Path, sheet_path: Path, speech: dict[str, Path],
    preset, timings: Timings, progress: bool, preprocess_backends: dict | None = None, step_prefix: str = "",
) -> tuple[dict, str]:  # fmt: skip
    """Train one preprocessed clip into ``run``, render its test frames, the speech files and the emotion sweep
    into ``renders``, draw its contact sheet; returns (its summary entry, the sheet's path relative to ``out``)."""
    from etlib.io import probe

    trainer, metrics = train_clip(out / "subjects" / name, run, preset, timings, progress, step=f"{step_prefix}train")
    render_test_frames(trainer, renders / "test_frames.mp4", timings, progress, step=f"{step_prefix}render/test_frames")
    for sname, path in speech.items():
        step = f"{step_prefix}render/speech_{sname}"
        render_driven(run, renders / f"speech_{sname}.mp4", path, "0,0", step, timings, progress)
    # the sweep speaks the first speech file (the clip's own sound when there is none)
    sweep_audio = next(iter(speech.values()), out / "subjects" / name / "audio.wav")
    sweep_seconds = probe(sweep_audio).duration
    va = sweep_path(sweep_seconds)
    step = f"{step_prefix}render/emotion_sweep"
    render_driven(run, renders / "emotion_sweep.mp4", sweep_audio, va, step, timings, progress)
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    sheet = timings.timed(
        f"{step_prefix}contact_sheet",
        write_contact_sheet,
        renders,
        list(trainer.data.test_ids),
        sweep_seconds,
        sheet_path,
        f"{video.name}, {preset.name} preset: test PSNR {metrics['test']['psnr']:.2f} dB",
    )
    test = metrics["test"]
    entry = {
        "clip": video.name,
        "run": str(run),
        "test_frames": test["frames"],
        "psnr": test["psnr"],
        "psnr_head": test["psnr_head"],
        "ssim": test["ssim"],
        "lmd": test["lmd"],
        "lmd_static_mouth": test["lmd_static_mouth"],
        "seconds_per_stage": metrics["seconds_per_stage"],
        "train_seconds": metrics["seconds_total"],
        "gaussians": metrics.get("gaussians"),
        "backends": {"training": metrics["backends"], "preprocess": preprocess_backends},
        "terms_dropped": metrics.get("terms_dropped"),
    }
    return entry, str(Path(sheet).relative_to(out))


def spread(trained: dict[str, dict]) -> dict:
    """Lowest, highest, mean and range (highest - lowest) of test PSNR and head PSNR over the clips that trained,
    with the clip that has the lowest of each; ``failed`` lists the clips whose training stopped."""
    ok = {name: e for name, e in trained.items() if "error" not in e}
    result: dict = {"clips": len(ok), "failed": sorted(set(trained) - set(ok))}
    for key in ("psnr", "psnr_head"):
        values = {name: float(e[key]) for name, e in ok.items() if e.get(key) is not None}
        if not values:
            continue
        lo, hi = min(values.values()), max(values.values())
        result[key] = {
            "min": round(lo, 2),
            "max": round(hi, 2),
            "mean": round(float(np.mean(list(values.values()))), 2),
            "range": round(hi - lo, 2),
            "weakest": min(values, key=values.get),
        }
    return result


def spread_table(trained: dict[str, dict], sp: dict) -> str:
    """The per-clip figures and their spread as a few lines of text."""
    lines = [f"{'clip':<16} {'PSNR':>7} {'head':>7} {'SSIM':>6}"]
    for name, e in trained.items():
        if "error" in e:
            lines.append(f"{name:<16} failed: {e['error']}")
        else:
            lines.append(f"{name:<16} {e['psnr']:7.2f} {e['psnr_head']:7.2f} {e['ssim']:6.3f}")
    for key, label in (("psnr", "PSNR"), ("psnr_head", "head PSNR")):
        if key in sp:
            v = sp[key]
            lines.append(
                f"{label}: {v['min']:.2f}-{v['max']:.2f} dB (range {v['range']:.2f}, mean {v['mean']:.2f}, "
                f"weakest {v['weakest']})"
            )
    return "\n".join(lines)


def _choose_clip(clips: dict[str, Path], train: str | None) -> str:
    """The clip ``--train`` names (the first by name when None; for ``all``, the first too)."""
    if train is None or train == "all":
        return next(iter(clips))
    for name, path in clips.items():
        if train in (name, path.name, str(path)):
            return name
    raise ValueError(f"--train {train!r} is none of the clips found: {', '.join(p.name for p in clips.values())}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="a folder of clips (picture + sound) and speech files (sound only)")
    parser.add_argument("out_dir", help="where subjects, the run, renders and summary.json go (resumed)")
    parser.add_argument("--preset", default="quick", help="smoke | quick | paper")
    parser.add_argument(
        "--train", help="the clip to train (file name or stem; default: the first by name), or 'all': every clip"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    summary = run_benchmark(args.data_dir, args.out_dir, args.preset, args.train, progress=not args.quiet)
    if "spread" in summary:
        print(spread_table(summary["trained"], summary["spread"]), file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

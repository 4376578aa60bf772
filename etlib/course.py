"""Run the course's numbered notebooks headless, in order, through papermill.

    python -m etlib.course --preset quick            # the README's main command runs this
    python -m etlib.course --preset smoke --only 00  # one notebook, CI-sized
    python -m etlib.course --check-stripped          # notebooks are committed without outputs

Every notebook has a cell tagged ``parameters`` (preset, subject, output_dir, device). Notebooks hand
results to each other through files in ``output_dir``, so each runs alone after its predecessors.
A notebook reports its headline figures with :func:`record_headline`; the runner gathers them with the
seconds and status of each notebook into ``output_dir/course_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from etlib.base import add_debug_flag, run_main
from etlib.config import REPO_ROOT, get_preset, outputs_dir, sample_subject_dir

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SUMMARY_NAME = "course_summary.json"


def default_output_dir(preset: str) -> Path:
    """``outputs/`` for the main (quick) run, ``outputs/<preset>/`` for the others."""
    return outputs_dir() if preset == "quick" else outputs_dir() / preset


def discover(only: list[str] | None = None, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in order; ``only`` keeps those whose number is listed."""
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {o.zfill(2) for o in only}
        unknown = wanted - {p.name[:2] for p in found}
        if unknown:
            raise ValueError(
                f"no notebook numbered {', '.join(sorted(unknown))} in {notebooks_dir}; "
                f"have {', '.join(p.name[:2] for p in found)}"
            )
        found = [p for p in found if p.name[:2] in wanted]
    return found


def _headline_path(output_dir: Path, notebook_id: str) -> Path:
    return Path(output_dir) / "headlines" / f"{notebook_id}.json"


def ensure_sample_subject(out: Path, small: bool = False) -> Path:
    """Build the sample subject into ``out`` unless it is there (``data_scripts/make_sample_subject.py``).

    ``small`` makes the CI-sized one (256 px, 4 s talking, 3 s emotion); the full one is 512 px, 48 s.
    """
    import subprocess

    if (Path(out) / "sample_subject.json").exists():
        return Path(out)
    script = REPO_ROOT / "data_scripts" / "make_sample_subject.py"
    cmd = [sys.executable, str(script), "--out", str(out)]
    if small:
        cmd += ["--size", "256", "--seconds", "4", "--emotion-seconds", "3"]
    subprocess.run(cmd, check=True)
    return Path(out)


def record_headline(output_dir: str | Path, notebook_id: str, **figures: Any) -> dict[str, Any]:
    """Called at the end of a notebook: store its headline figures for the course summary."""
    path = _headline_path(Path(output_dir), notebook_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = json.loads(json.dumps(figures, default=float))  # numpy scalars -> float
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(clean, indent=2))
    os.replace(tmp, path)
    return clean


def local_kernel_manager():
    """A kernel manager whose kernel talks over Unix sockets (IPC) instead of TCP on localhost: nothing listens
    on a network port while the course runs, and ipykernel has no reason to warn, for every notebook, that
    its TCP traffic is unencrypted."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class LocalKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

    return LocalKernelManager


def run_course(
    preset: str = "quick",
    only: list[str] | None = None,
    output_dir: Path | None = None,
    subject: Path | None = None,
    device: str = "auto",
    kernel: str = "python3",
    stop_on_error: bool = False,
    notebooks_dir: Path = NOTEBOOKS_DIR,
) -> dict[str, Any]:
    """Execute the notebooks in order and write ``course_summary.json``; returns the summary."""
    import papermill as pm
    from tqdm.auto import tqdm

    get_preset(preset)  # fail early on a bad name
    output_dir = Path(output_dir or default_output_dir(preset)).resolve()
    subject = Path(subject).resolve() if subject else None
    executed_dir = output_dir / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    notebooks = discover(only, notebooks_dir)
    if not notebooks:
        raise FileNotFoundError(f"no numbered notebooks in {notebooks_dir}")

    summary_path = output_dir / SUMMARY_NAME
    summary: dict[str, Any] = {"preset": preset, "output_dir": str(output_dir), "subject": str(subject or "sample")}
    if summary_path.exists():  # keep the records of notebooks not run this time (--only)
        summary = {**json.loads(summary_path.read_text()), **summary}
    records: dict[str, Any] = summary.get("notebooks", {})
    params = {
        "preset": preset,
        "subject": str(subject) if subject else None,
        "output_dir": str(output_dir),
        "device": device,
    }
    failed = []
    for nb in tqdm(notebooks, desc=f"course ({preset})", unit="notebook"):
        nb_id = nb.name[:2]
        _headline_path(output_dir, nb_id).unlink(missing_ok=True)
        start = time.perf_counter()
        record: dict[str, Any] = {"notebook": nb.name, "executed": str(executed_dir / nb.name)}
        try:
            pm.execute_notebook(
                str(nb),
                str(executed_dir / nb.name),
                parameters=params,
                kernel_name=kernel,
                cwd=str(notebooks_dir),
                progress_bar=False,
                kernel_manager_class=local_kernel_manager(),
            )
            record["status"] = "ok"
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
            record["status"] = "failed"
            record["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]
            failed.append(nb.name)
        record["seconds"] = round(time.perf_counter() - start, 2)
        headline = _headline_path(output_dir, nb_id)
        record["headline"] = json.loads(headline.read_text()) if headline.exists() else {}
        records[nb_id] = record
        print(f"[{record['status']:>6}] {nb.name}  {record['seconds']:.1f} s  {record['headline']}", flush=True)
        summary["notebooks"] = dict(sorted(records.items()))
        summary["total_seconds"] = round(sum(r["seconds"] for r in records.values()), 2)
        summary_path.write_text(json.dumps(summary, indent=2))
        if failed and stop_on_error:
            break
    summary["failed"] = failed
    summary_path.write_text(json.dumps(summary, indent=2))
    print(f"course summary: {summary_path}  ({len(notebooks) - len(failed)}/{len(notebooks)} notebooks ok)")
    return summary


# ------------------------------------------------------------------------------------------------
# Notebooks are committed without outputs
# ------------------------------------------------------------------------------------------------


def notebook_has_outputs(path: Path) -> bool:
    nb = json.loads(Path(path).read_text())
    return any(
        cell.get("outputs") or cell.get("execution_count") is not None
        for cell in nb.get("cells", [])
        if cell.get("cell_type") == "code"
    )


def strip_outputs(path: Path) -> bool:
    """Remove outputs and execution counts in place; True when the file changed."""
    nb = json.loads(Path(path).read_text())
    changed = False
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            cell["outputs"], cell["execution_count"] = [], None
            changed = True
    if changed:
        Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etlib.course", description="Run the course notebooks.")
    parser.add_argument("--preset", default="quick", help="smoke | quick | paper")
    parser.add_argument("--only", nargs="*", help="notebook numbers to run, e.g. --only 00 02")
    parser.add_argument("--output-dir", type=Path, help="default: outputs/ (quick) or outputs/<preset>/")
    parser.add_argument("--subject", type=Path, help="subject folder or video (default: the sample subject)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--strip", action="store_true", help="strip outputs from the committed notebooks")
    parser.add_argument("--check-stripped", action="store_true", help="fail if a notebook has outputs")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.strip or args.check_stripped:
        paths = discover()
        if args.strip:
            for p in paths:
                if strip_outputs(p):
                    print(f"stripped {p.name}")
            return 0
        dirty = [p.name for p in paths if notebook_has_outputs(p)]
        if dirty:
            print("notebooks committed with outputs (run `python -m etlib.course --strip`): " + ", ".join(dirty))
            return 1
        print(f"{len(paths)} notebooks, no outputs")
        return 0
    summary = run_course(args.preset, args.only, args.output_dir, args.subject, args.device)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(run_main(main))


# ------------------------------------------------------------------------------------------------
# What every notebook does first
# ------------------------------------------------------------------------------------------------


class NotebookContext:
    """Resolved parameters of a notebook run: the preset object, subject, output folder and device.

    Notebooks start with ``ctx = NotebookContext(preset, subject, output_dir, device)`` right after their
    ``parameters`` cell, so defaults are decided here once rather than in every notebook.
    """

    def __init__(
        self,
        preset: str = "quick",
        subject: str | Path | None = None,
        output_dir: str | Path | None = None,
        device: str = "auto",
    ) -> None:
        self.preset = get_preset(preset)
        self.output_dir = Path(output_dir) if output_dir else default_output_dir(self.preset.name)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.subject = Path(subject) if subject else None
        self.device = self._resolve_device(device)

    # -- the subject ------------------------------------------------------------------------------
    @property
    def sample_dir(self) -> Path:
        """The embedded sample subject's videos: full size for quick/paper, a short small one for smoke."""
        return self.output_dir / "sample_subject" if self.preset.name == "smoke" else sample_subject_dir()

    def source_video(self) -> Path:
        """The talking-head video the course trains on: ``subject`` when it is a video, else the sample
        subject's ``talking.mp4`` (built on first use)."""
        if self.subject is not None and self.subject.is_file():
            return self.subject
        if self.subject is not None and (self.subject / "sample_subject.json").exists():
            return self.subject / "talking.mp4"
        if self.subject is not None and not (self.subject / "meta.json").exists():
            raise FileNotFoundError(f"subject {self.subject} is neither a video nor a processed subject folder")
        ensure_sample_subject(self.sample_dir, small=self.preset.name == "smoke")
        return self.sample_dir / "talking.mp4"

    @property
    def subject_dir(self) -> Path:
        """The processed subject folder: ``subject`` when it already is one, else ``output_dir/subject``."""
        if self.subject is not None and (self.subject / "meta.json").exists():
            return self.subject
        return self.output_dir / "subject"

    @staticmethod
    def _resolve_device(device: str) -> str:
        """``"cpu"`` or ``"cuda"``/``"cuda:N"`` (:func:`etlib.backends.resolve_device`): the device every notebook
        hands to training, rendering, evaluation and the widgets."""
        from etlib.backends import resolve_device

        return str(resolve_device(device))

    def path(self, *parts: str) -> Path:
        """A path under the output folder (parents created)."""
        p = self.output_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def __repr__(self) -> str:
        return (
            f"NotebookContext(preset={self.preset.name!r}, subject={str(self.subject)!r}, "
            f"output_dir={str(self.output_dir)!r}, device={self.device!r})"
        )

    # -- training ------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """The training run the notebooks 06-11 share."""
        return self.output_dir / "run"

    def trainer(self, ablation: str = "full", run_dir: Path | None = None):
        """The course's :class:`~etlib.train.Trainer` (resumes what earlier notebooks trained)."""
        from etlib.emoface.targets import make_emotion_targets
        from etlib.train import Trainer
        from etlib.train.sync import make_sync_loss

        trainer = Trainer(
            self.subject_dir,
            run_dir or self.run_dir,
            self.preset,
            ablation=ablation,
            emotion_targets=make_emotion_targets(),
            device=self.device,
        )
        # L_sync needs a SyncNet: the pretrained expert, or the one notebook 05 trains on this subject.
        trainer.use_sync_loss(make_sync_loss(trainer.data, self.output_dir / "syncnet.pt"))
        return trainer

"""benchmarks/gpu_check.py runs its CPU-checkable parts on a CPU: the rasterizer comparison (etlib's tiled rasterizer
against its dense reference there; gsplat against etlib's on CUDA), every training stage on the run's device with
what ran recorded, the render speed, and says ``skipped`` with a reason for what needs CUDA. No test depends on a
GPU: on one, this same test runs the CPU path (``--device cpu``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_runs_its_cpu_parts(smoke_subject, tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--preset", "smoke",
           "--steps", "2", "--syncnet-steps", "2", "--fps-frames", "3", "--subject", str(smoke_subject.root),
           "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report == json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["environment"]["device"] == "cpu"
    parity = report["rasterizer_parity"]
    assert parity["compared"] == "torch vs dense" and parity["ok"], parity
    assert report["hash_grid_parity"]["skipped"].startswith("tinycudann")
    stages = report["stages"]["per_stage"]
    from etlib.train.stages import STAGE_NAMES

    assert list(stages) == list(STAGE_NAMES)
    for name, stage in stages.items():
        assert stage["it_per_s"] > 0 and stage["device"] == "cpu", name
        assert stage["rasterizer"] == "etlib tiled PyTorch rasterizer", name
    assert "L_sync" in report["stages"]["sync"]
    render = report["render"]
    assert render["fps_full_model"] > 0 and render["fps_valence_arousal_only"] > 0 and render["goal_met"] is None
    assert "skipped" in report["memory"]

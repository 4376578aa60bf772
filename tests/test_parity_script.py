"""benchmarks/parity.py downloads nothing: without reference checkouts it says so and fails, in one line a check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "parity.py"


def test_parity_needs_reference_checkouts(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--refs", str(tmp_path / "none")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: --refs must be a folder")
    (tmp_path / "refs").mkdir()
    out = tmp_path / "parity.json"
    cmd = [sys.executable, str(SCRIPT), "--refs", str(tmp_path / "refs"), "--only", "bisenet", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1 and "no checkout of face-parsing.PyTorch" in proc.stdout
    assert "no checkout" in out.read_text()

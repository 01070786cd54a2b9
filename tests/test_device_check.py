"""scripts/device_check.sh on the CPU with a reduced model (WRN-10-1), so the GPU check is not dead code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # three audits and a killed child process: minutes on a busy 2-core machine
def test_device_check_runs_small_on_cpu():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    done = subprocess.run(
        [str(ROOT / "scripts" / "device_check.sh"), "--small", "--n", "8", "--square-queries", "50", "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    summary = json.loads(lines[-1])
    assert summary == {"batch_size": 8, "same_results": True, "resume_ok": True}  # nothing runs out of memory on 8
    assert "batch size 8 (auto)" in lines[0]
    rates = [line for line in lines if "images/s" in line]
    assert [line.split()[0] for line in rates] == [
        "apgd-ce",
        "apgd-malt+survivors",
        "square+survivors@queries=50,probe=10,probe_queries=50",
    ]
    assert any(line.startswith("peak memory: ") for line in lines)
    assert "killed mid-run: True" in done.stdout and "identical to an uninterrupted run: True" in done.stdout

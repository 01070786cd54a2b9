"""torchrun with 2 processes / 1 process: wall time of the same audit (throughput ratio = 1 / time ratio)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import row

ROOT = Path(__file__).resolve().parent.parent
ARGS = [
    "--model",
    "demo-adversarial",
    "--n",
    "200",
    "--attacks",
    "apgd-ce,apgd-t",
    "--batch-size",
    "50",
    "--diagnostics-n",
    "0",
    "--quiet",
]


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        one = timed([sys.executable, "-m", "audit.cli", "run", *ARGS, "--out", f"{tmp}/one"], env)
        two = timed(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                "2",
                "-m",
                "audit.cli",
                "--",
                "run",
                *ARGS,
                "--out",
                f"{tmp}/two",
            ],
            env,
        )
    return [
        row(
            "torchrun 2 processes / 1 process throughput",
            one / two,
            "> 1 with free cores",
            f"1 process (torch's default threads) {one:.0f}s, 2 processes (1 thread each) {two:.0f}s, "
            f"{os.cpu_count()} cores",
        )
    ]


if __name__ == "__main__":
    for r in main():
        print(r)

"""Run every benchmark and print one table of ratios, each measured side by side in this run.

    python benchmarks/run_all.py            # from the repo root, with the venv's python
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import attack_overhead, audit_vs_autoattack, meansparse_overhead, torchrun_throughput  # noqa: E402 - after the sys.path / thread setup above


def main() -> None:
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    rows = []
    for module in (meansparse_overhead, attack_overhead, audit_vs_autoattack, torchrun_throughput):
        rows += module.main()
    width = max(len(r["benchmark"]) for r in rows)
    print(f"{'benchmark':{width}}  ratio   target        detail")
    for r in rows:
        print(f"{r['benchmark']:{width}}  {r['ratio']:5.2f}   {r['target']:12}  {r['detail']}")


if __name__ == "__main__":
    main()

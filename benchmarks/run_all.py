"""The speed benchmarks in one command, every ratio measured side by side in this run:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/run_all.py [--n 100] [--models demo-adversarial ...]

1. the audit (`--suite full`) against pyautoattack `standard` on three models, with the per-sample check and a
   profile table (benchmarks/audit_vs_autoattack.py);
2. each attack through our judge against the same call in its library (benchmarks/attack_overhead.py);
3. MeanSparse's forward against its base model's, at 1 and 2 threads (benchmarks/meansparse_overhead.py);
4. the same network run faster: inference mode, torch.compile, BatchNorm folded (benchmarks/forward_options.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import attack_overhead, audit_vs_autoattack, forward_options, meansparse_overhead  # noqa: E402 - needs the sys.path line above


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="test images per model for the audit comparison")
    parser.add_argument(
        "--models", nargs="+", default=list(audit_vs_autoattack.MODELS), choices=list(audit_vs_autoattack.MODELS)
    )
    parser.add_argument("--seed", type=int, default=0, help="the images' and attacks' seed")
    parser.add_argument(
        "--noise-seed",
        type=int,
        default=1,
        help="a second pyautoattack run with this seed: AutoAttack's own per-sample noise; "
        "-1: none (half the time, no noise reference)",
    )
    parser.add_argument("--audit-only", action="store_true", help="only the audit against AutoAttack (part 1)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    print(
        f"commit {commit.stdout.strip() or 'unknown'}; machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    noise_seed = None if args.noise_seed < 0 else args.noise_seed
    rows = audit_vs_autoattack.main(n=args.n, seed=args.seed, models=tuple(args.models), noise_seed=noise_seed)
    if not args.audit_only:
        rows += attack_overhead.main()
        rows += meansparse_overhead.main()
        rows += forward_options.main()
    width = max(len(r["benchmark"]) for r in rows)
    print(f"\n{'benchmark':{width}}  ratio  target  detail")
    for r in rows:
        print(f"{r['benchmark']:{width}}  {r['ratio']:5.2f}  {r['target']:6}  {r['detail']}")


if __name__ == "__main__":
    main()

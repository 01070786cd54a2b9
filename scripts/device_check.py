"""The device check behind scripts/device_check.sh: the default budget's cascade on a full-size MeanSparse
WRN-94-16 (random weights: speed, memory and determinism do not depend on what the weights learned), on CIFAR-shaped
real images (foolbox's 20 CIFAR-10 samples, tiled).

It prints images/s per attack, peak memory, the batch size `--batch-size auto` chose, whether two runs give the
same per-sample results, and whether a run killed after its first stored batch and resumed gives them too. The
labels are the model's own clean predictions, so every image is attacked (with random weights the true labels
would leave ~10% clean-correct). `--small` builds a WRN-10-1 instead, for the CPU (tests/test_device_check.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402 - after the sys.path line, as the project's imports

from attacks.registry import make_attack  # noqa: E402
from attacks.threat_model import ThreatModel  # noqa: E402
from audit.plan import Plan  # noqa: E402
from audit.plan.suites import CASCADE, CASCADE_SQUARE, PROBE  # noqa: E402
from audit.runner import run_plan  # noqa: E402
from audit.store import ResultStore  # noqa: E402
from defenses.adapters import as_defense  # noqa: E402
from defenses.protocol import Defense  # noqa: E402

THREAT = ThreatModel("Linf", 8 / 255)


def build(small: bool, device: str, seed: int = 0) -> tuple[Defense, torch.Tensor]:
    """The MeanSparse WRN (seeded random weights, calibrated on foolbox's samples) and the samples."""
    from audit.data import load_foolbox_samples
    from defenses.calibrate import calibrate
    from defenses.models.wide_resnet import DMWideResNet
    from defenses.sparsify import sparsify

    torch.manual_seed(seed)
    depth, width = (10, 1) if small else (94, 16)
    samples = load_foolbox_samples("cifar10").images
    model = sparsify(DMWideResNet(depth=depth, width=width).eval(), 0.25)
    calibrate(model, [samples], progress=False)
    defense = as_defense(model.to(device))
    return defense, samples


def tiled(samples: torch.Tensor, n: int) -> torch.Tensor:
    return samples[torch.arange(n) % len(samples)].contiguous()


def labelled(defense: Defense, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [
                defense(images[i : i + batch_size].to(defense.device)).argmax(1).cpu()
                for i in range(0, len(images), batch_size)
            ]
        )


def cascade(square_queries: int) -> list[str]:
    """The default budget's cascade (audit/plan/suites.py), its Square at `square_queries` (probe included)."""
    if square_queries == 5000:
        return list(CASCADE)
    return [n for n in CASCADE if n != CASCADE_SQUARE] + [
        f"square+survivors@queries={square_queries},probe={PROBE},probe_queries={square_queries}"
    ]


def audit(
    defense: Defense,
    images: torch.Tensor,
    labels: torch.Tensor,
    directory: Path,
    batch_size: int,
    precision: str,
    square_queries: int = 5000,
) -> dict:
    """The cascade over the images into the store in `directory`; per attack: samples, seconds, status."""
    attacks = [make_attack(name) for name in cascade(square_queries)]
    store = ResultStore(
        directory, {"device_check": True, "n": len(images), "batch_size": batch_size, "precision": precision}
    )
    outcomes = run_plan(
        defense,
        images,
        labels,
        THREAT,
        Plan.of(attacks),
        seed=0,
        store=store,
        batch_size=batch_size,
        progress=False,
        precision=precision,
    )
    return {
        label: {
            "ran": outcomes.counts(label)["ran"],
            "seconds": outcomes.cost[label]["seconds"],
            "status": outcomes.status[label],
        }
        for label in outcomes.order
    }


def peak_memory_gib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def kill_and_resume(args: argparse.Namespace, batch_size: int) -> bool:
    """A child process runs the audit into a store in batches of `batch_size` and is killed once its first batch is
    stored (the next one under way); this process resumes it. True when the resumed run's per-sample results are
    those of an uninterrupted run with the same batches (batches are seeded by their samples)."""
    defense, samples = build(args.small, args.device)
    images = tiled(samples, args.n)
    labels = labelled(defense, images, batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        reference = audit(
            defense, images, labels, Path(tmp) / "uninterrupted", batch_size, args.precision, args.square_queries
        )
        directory = Path(tmp) / "killed"
        command = [
            sys.executable,
            __file__,
            "--worker",
            str(directory),
            "--n",
            str(args.n),
            "--device",
            args.device,
            "--batch-size",
            str(batch_size),
            "--precision",
            args.precision,
            "--square-queries",
            str(args.square_queries),
        ] + (["--small"] if args.small else [])
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        records = directory / "records.jsonl"
        while child.poll() is None and (not records.exists() or len(records.read_text().splitlines()) < 2):
            time.sleep(0.02)  # the clean row, then the first attack's first batch
        killed = child.poll() is None
        child.kill()
        child.wait()
        stored = len(records.read_text().splitlines()) if records.exists() else 0
        resumed = audit(defense, images, labels, directory, batch_size, args.precision, args.square_queries)
        same = all(resumed[label]["status"] == reference[label]["status"] for label in reference)
    print(
        f"kill-and-resume: killed mid-run: {killed} (after {stored} stored rows, batches of {batch_size}); resumed "
        f"results identical to an uninterrupted run: {same}"
    )
    return same and killed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="images (foolbox's 20 CIFAR-10 samples, tiled)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="a WRN-10-1 instead of WRN-94-16 (for a CPU)")
    parser.add_argument("--batch-size", default="auto", help="a number, or auto (audit/batch_size.py)")
    parser.add_argument("--precision", default="float32", help="of the proposals: float32, tf32 or bfloat16")
    parser.add_argument(
        "--square-queries",
        type=int,
        default=5000,
        help="the cascade's Square budget (5000, as AutoAttack's; fewer for a quick CPU check)",
    )
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)  # the child of kill_and_resume
    args = parser.parse_args()
    defense, samples = build(args.small, args.device)
    images = tiled(samples, args.n)
    if args.worker is not None:
        audit(
            defense,
            images,
            labelled(defense, images, int(args.batch_size)),
            args.worker,
            int(args.batch_size),
            args.precision,
            args.square_queries,
        )
        return 0
    from audit.batch_size import find_batch_size

    batch_size = find_batch_size(defense, images) if args.batch_size == "auto" else int(args.batch_size)
    labels = labelled(defense, images, batch_size)
    name = "WRN-10-1" if args.small else "WRN-94-16"
    print(
        f"MeanSparse {name} (random weights), {args.n} CIFAR-shaped images, {args.device}, proposals in "
        f"{args.precision}; batch size {batch_size} ({args.batch_size})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            audit(defense, images, labels, Path(tmp) / f"run{k}", batch_size, args.precision, args.square_queries)
            for k in (1, 2)
        ]
    for label, result in runs[0].items():
        rate = result["ran"] / result["seconds"] if result["seconds"] else float("nan")
        broken = result["status"].count("broken")
        print(
            f"  {label:48} {result['ran']:5d} images  {result['seconds']:8.1f} s  {rate:8.1f} images/s  broke {broken}"
        )
    same = all(runs[0][label]["status"] == runs[1][label]["status"] for label in runs[0])
    print(f"peak memory: {peak_memory_gib(args.device):.2f} GiB")
    print(f"two runs, same per-sample results: {same}")
    # Half the batch, so the first attack has a second batch under way when the child is killed.
    resumed = kill_and_resume(args, max(1, min(batch_size, args.n) // 2))
    print(json.dumps({"batch_size": batch_size, "same_results": same, "resume_ok": resumed}))
    return 0 if same and resumed else 1


if __name__ == "__main__":
    raise SystemExit(main())

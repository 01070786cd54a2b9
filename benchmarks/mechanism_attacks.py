"""Issue 28: the MeanSparse-specific attacks (attacks/adaptive.py) against BPDA on the same images, paired.

Reads a finished `audit run` directory (its samples.csv) and prints, per attack, the robust accuracy with its 95%
Clopper-Pearson interval, and per (new attack, BPDA attack) pair the discordant counts and the exact two-sided
McNemar p-value; then the per-sample worst case over every attack with and without the new ones, and their paired
difference. Robust = clean-correct and held. Several directories of runs on the same seeded images (e.g. the
attacks split over two processes) are read as one: their samples must agree index for index and label for label.

    python -m benchmarks.mechanism_attacks runs/ms28-1000
    python -m benchmarks.mechanism_attacks runs/ms28-1000-a runs/ms28-1000-b
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

from scipy.stats import binomtest

from audit.stats import clopper_pearson, paired_difference_interval

log = logging.getLogger(__name__)
NEW_PREFIXES = ("apgd-continuation", "apgd-anneal", "apgd-escape")


def two_sided(b: int, c: int) -> float:
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def robust_table(directories: list[Path]) -> tuple[list[str], dict[str, list[bool]], int]:
    attacks: list[str] = []
    robust: dict[str, list[bool]] = {}
    samples: list[tuple[str, str]] | None = None
    for directory in directories:
        with open(directory / "samples.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        these = [(r["index"], r["label"]) for r in rows]
        if samples is not None and these != samples:
            raise ValueError(f"{directory} holds other samples than {directories[0]}: not the same seeded images")
        samples = these
        for a in (key[: -len(":status")] for key in rows[0] if key.endswith(":status")):
            if a in robust:
                raise ValueError(f"attack {a} is in more than one of {directories}")
            attacks.append(a)
            robust[a] = [r[f"{a}:status"] == "held" for r in rows]
    return attacks, robust, len(samples or [])


def report(directories: list[Path]) -> str:
    attacks, robust, n = robust_table(directories)
    new = [a for a in attacks if a.startswith(NEW_PREFIXES)]
    old = [a for a in attacks if a not in new]
    lines = [
        f"{n} samples ({', '.join(map(str, directories))})",
        "",
        "| attack | robust accuracy (95% interval) |",
        "|---|---|",
    ]
    for a in attacks:
        k = sum(robust[a])
        low, high = clopper_pearson(k, n)
        lines.append(f"| {a} | {100 * k / n:.1f}% ({100 * low:.1f} - {100 * high:.1f}) |")
    lines += [
        "",
        "| new attack | against | only new broke | only other broke | McNemar p (two-sided) |",
        "|---|---|---:|---:|---:|",
    ]
    for a in new:
        for o in old:
            b = sum(ro and not ra for ra, ro in zip(robust[a], robust[o]))  # the new one broke, the other held
            c = sum(ra and not ro for ra, ro in zip(robust[a], robust[o]))
            lines.append(f"| {a} | {o} | {b} | {c} | {two_sided(b, c):.3g} |")
    without = [all(robust[o][i] for o in old) for i in range(n)]
    with_new = [all(robust[a][i] for a in attacks) for i in range(n)]
    b = sum(w and not x for w, x in zip(without, with_new))
    lows = {name: clopper_pearson(sum(v), n) for name, v in (("without", without), ("with", with_new))}
    low, high = paired_difference_interval(0, b, n)
    lines += [
        "",
        f"worst case over {', '.join(old)}: {100 * sum(without) / n:.1f}% "
        f"({100 * lows['without'][0]:.1f} - {100 * lows['without'][1]:.1f})",
        f"worst case with the new attacks too: {100 * sum(with_new) / n:.1f}% "
        f"({100 * lows['with'][0]:.1f} - {100 * lows['with'][1]:.1f}); the new attacks alone broke {b} more "
        f"samples (difference {100 * -b / n:+.1f} points, 95% interval {100 * low:+.1f} to {100 * high:+.1f}; "
        f"exact McNemar p = {two_sided(b, 0):.3g})",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", type=Path, nargs="+")
    args = parser.parse_args()
    print(report(args.directories))  # noqa: T201 - a command-line report


if __name__ == "__main__":
    main()

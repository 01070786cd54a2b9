"""Compare two audits' samples.csv column by column: did a change alter any per-sample outcome?

    python scripts/compare_samples.py OLD_DIR NEW_DIR [--outcomes-only]

OLD_DIR and NEW_DIR are `audit run --out` directories (or samples.csv files) of the same model, samples, seed and
attacks, e.g. made at two commits to check that a refactoring moved code without changing results (issue 15):

    OMP_NUM_THREADS=1 audit run --model demo-meansparse --n 40 --seed 0 --attacks fgsm,apgd-ce,... --out DIR

Rows are matched by `index` and must carry the same labels. Every column both files have is compared as text (the
CSV's own formatting: statuses, AutoAttack's broken_by, distances and margins to 6 significant digits). Outcome
columns are the clean prediction, each attack's status and broken_by, and the worst case per threat kind; the
others (distance, margin) are numeric. Columns only one file has (a schema change, an attack only one plan ran)
are listed, not compared. Exit status: 0 if every compared column is identical, 1 if one differs (with
--outcomes-only: if an outcome column differs), 2 if the files cannot be compared at all.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

KEYS = ("index", "label")


def read_samples(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(header, rows by index) of a samples.csv, or of `<path>/samples.csv` for a directory."""
    path = path / "samples.csv" if path.is_dir() else path
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = {row["index"]: row for row in reader}
        return list(reader.fieldnames or []), rows


def is_outcome(column: str) -> bool:
    """Whether a column is a per-sample outcome (what was decided), not a measured number."""
    return (
        column in ("clean_prediction", "clean_draws_correct")
        or column.startswith("worst_case_robust:")
        or column.endswith((":status", ":broken_by"))
    )


def largest_difference(old: list[str], new: list[str]) -> str:
    """The largest absolute difference between two numeric columns, as text ('' when not numeric)."""
    worst = 0.0
    for a, b in zip(old, new):
        if a == b:
            continue
        try:
            worst = max(worst, abs(float(a) - float(b)))
        except ValueError:
            return ""
    return f", largest |difference| {worst:.3g}" if math.isfinite(worst) else ""


def compare(old_path: Path, new_path: Path, outcomes_only: bool = False) -> int:
    old_header, old_rows = read_samples(old_path)
    new_header, new_rows = read_samples(new_path)
    if sorted(old_rows) != sorted(new_rows):
        print(f"different samples: {len(old_rows)} rows in OLD, {len(new_rows)} in NEW (indices differ)")
        return 2
    order = sorted(old_rows, key=int)
    if any(old_rows[i]["label"] != new_rows[i]["label"] for i in order):
        print("different samples: the same index carries different labels (another seed or data?)")
        return 2
    shared = [c for c in old_header if c in new_header and c not in KEYS]
    only_old = [c for c in old_header if c not in new_header]
    only_new = [c for c in new_header if c not in old_header]
    if not any(c.endswith(":status") for c in shared):
        print("no attack column in common: nothing to compare")
        return 2
    print(f"{len(order)} samples; {len(shared)} shared columns compared")
    failed = False
    for column in shared:
        old, new = [old_rows[i][column] for i in order], [new_rows[i][column] for i in order]
        differing = sum(a != b for a, b in zip(old, new))
        kind = "outcome" if is_outcome(column) else "numeric"
        if differing:
            detail = "" if kind == "outcome" else largest_difference(old, new)
            print(f"  DIFFERS    {kind:8s} {column}: {differing} of {len(order)} rows{detail}")
            failed |= kind == "outcome" or not outcomes_only
        else:
            print(f"  identical  {kind:8s} {column}")
    for name, columns in (("OLD", only_old), ("NEW", only_new)):
        if columns:
            print(f"only in {name} (not compared): {', '.join(columns)}")
    print("DIFFERENT" if failed else "IDENTICAL" + (" outcomes" if outcomes_only else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path, help="audit output directory (or samples.csv) before the change")
    parser.add_argument("new", type=Path, help="audit output directory (or samples.csv) after the change")
    parser.add_argument(
        "--outcomes-only", action="store_true", help="exit 0 when only numeric columns (distance, margin) differ"
    )
    args = parser.parse_args(argv)
    for path in (args.old, args.new):
        csv_path = path / "samples.csv" if path.is_dir() else path
        if not csv_path.is_file():
            print(
                f"error: {csv_path} not found (expected an `audit run --out` directory or a samples.csv)",
                file=sys.stderr,
            )
            return 2
    return compare(args.old, args.new, args.outcomes_only)


if __name__ == "__main__":
    sys.exit(main())

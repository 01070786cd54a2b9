"""`audit demo` (the README's main command): audit the shipped adversarially trained Fashion-MNIST model and its
MeanSparse version, write both reports and their comparison, print a short summary."""
from __future__ import annotations

import logging
from pathlib import Path

from audit.audit_run import AuditConfig, run_audit
from audit.compare import compare
from audit.summary import summary_lines

log = logging.getLogger(__name__)
DEMO_N = 100  # test samples per model: both audits fit in 10 minutes on 2 CPU cores (see README)
DEMO_MODELS = ("demo-adversarial", "demo-meansparse")


def run_demo(out: Path, n: int | None = None, data_dir: str | None = None, progress: bool = True) -> None:
    n = n or DEMO_N
    directories = []
    for model in DEMO_MODELS:
        directory = out / model
        log.info("auditing %s on %d Fashion-MNIST test samples (Linf eps=0.1, suite full) -> %s", model, n, directory)
        results = run_audit(AuditConfig(model=model, n=n), directory, data_dir=data_dir, progress=progress)
        for line in summary_lines(results):
            print(line)
        directories.append(directory)
    comparison = compare(directories[0], directories[1], out / "comparison.md")
    print()
    print(comparison)
    print(f"reports: {directories[0] / 'report.html'}, {directories[1] / 'report.html'}; comparison: {out / 'comparison.md'}")

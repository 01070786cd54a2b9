"""`audit demo` (the README's main command): audit the shipped adversarially trained Fashion-MNIST model and its
MeanSparse version, write both reports and their comparison, print a short summary.

With two or more cores the two audits run side by side, one process and one torch thread each: on small models
that is faster than two threads fighting over one audit. demo-meansparse's base (every threshold at 0) computes
demo-adversarial's logits bit for bit (checked here first), so the adversarial audit's AutoAttack results are its
base audit for the gain table: the same attacks on the same images with the same seeds would give the same
per-sample results, and reusing them saves a third AutoAttack run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from audit.comparison import compare
from audit.config import AuditConfig
from audit.pipeline import derive_results, reuse_base, run_audit
from audit.progress import progress_bars_off
from audit.summary import summary_lines

log = logging.getLogger(__name__)
DEMO_N = 100  # test samples per model: both audits fit in a few minutes on 2 CPU cores (README)
DEMO_MODELS = ("demo-adversarial", "demo-meansparse")


def _audit_one(
    model: str, directory: Path, n: int, data_dir: str | None, progress: bool, threads: int
) -> dict[str, Any]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    with contextlib.nullcontext() if progress else progress_bars_off():  # two workers' bars would interleave
        results = run_audit(
            AuditConfig(model=model, n=n), directory, data_dir=data_dir, progress=progress, audit_base=False
        )  # the MeanSparse model's base audit is the adversarial model's
    assert results is not None  # one process, so rank 0
    return results


def _check_base_is_adversarial(n: int, data_dir: str | None) -> None:
    """The reuse below rests on this: the MeanSparse model's base gives the adversarial model's logits exactly."""
    import torch

    from audit.data import load_dataset
    from defenses import as_defense
    from defenses.models.registry import load_shipped

    images = load_dataset("fashion-mnist", "test", data_dir).subset(n, AuditConfig(model=DEMO_MODELS[0]).seed).images
    base = as_defense(load_shipped(DEMO_MODELS[1]), 10, DEMO_MODELS[1]).base_model()
    with torch.no_grad():
        if base is None or not torch.equal(base(images), load_shipped(DEMO_MODELS[0])(images)):
            raise RuntimeError(
                f"{DEMO_MODELS[1]} with MeanSparse off is not {DEMO_MODELS[0]}: the shipped "
                f"checkpoints no longer match; rebuild them with `audit sparsify`"
            )


def run_demo(out: Path, n: int | None = None, data_dir: str | None = None, progress: bool = True) -> str:
    """Run both audits and return the summary text (the CLI prints it)."""
    n = n or DEMO_N
    _check_base_is_adversarial(n, data_dir)
    directories = [out / model for model in DEMO_MODELS]
    for model, directory in zip(DEMO_MODELS, directories):
        log.info("auditing %s on %d Fashion-MNIST test samples (Linf eps=0.1, suite full) -> %s", model, n, directory)
    if (os.cpu_count() or 1) >= 2:
        log.info("the two audits run in parallel; progress is in %s/*/audit.log", out)
        with ProcessPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(_audit_one, m, d, n, data_dir, False, 1) for m, d in zip(DEMO_MODELS, directories)]
            all_results = [f.result() for f in futures]
    else:
        all_results = [_audit_one(m, d, n, data_dir, progress, 0) for m, d in zip(DEMO_MODELS, directories)]
    reuse_base(directories[1], directories[0])
    all_results[1] = derive_results(directories[1])
    lines = [line for results in all_results for line in summary_lines(results)]
    comparison = compare(directories[0], directories[1], out / "comparison.md")
    reports = (
        f"reports: {directories[0] / 'report.html'}, {directories[1] / 'report.html'}; "
        f"comparison: {out / 'comparison.md'}"
    )
    return "\n".join([*lines, "", comparison, reports])

"""The audit: plan, suite over the store, probes, checks, verdict, report and command line.

    from audit import AuditConfig, run_audit
    results = run_audit(AuditConfig(model="demo-meansparse", n=100), "runs/ms")
    summary = results["verdict"]["summary"]  # one plain sentence; the CLI is what prints

Names are imported on first use, so `audit --help` and the modules that only need a part stay light.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "AuditConfig": "audit.config",
    "run_audit": "audit.pipeline",
    "derive_results": "audit.pipeline",
    "load_dataset": "audit.data",
    "diagnose": "audit.probes",
    "DiagnosticsConfig": "audit.probes.config",
    "verdict": "audit.checks",
    "run_checks": "audit.checks",
    "Outcomes": "audit.outcomes",
    "compare": "audit.comparison",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'audit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)

"""The audit never ends above AutoAttack on any sample: every sample pyautoattack's own `run_standard_evaluation`
breaks, `audit run --suite full` breaks too (the check benchmarks/audit_vs_autoattack.py makes at n=100)."""
from __future__ import annotations

import pytest

from benchmarks.audit_vs_autoattack import audit_full, autoattack_standard


@pytest.mark.slow
def test_every_sample_autoattack_breaks_the_audit_breaks(tmp_path, fmnist_test):
    n = 12
    aa = autoattack_standard("demo-meansparse", n, seed=0)
    audit = audit_full("demo-meansparse", n, seed=0, out=tmp_path / "run")
    broken_by_aa = {i for i, robust in enumerate(aa["robust"]) if not robust}
    broken_by_audit = {i for i, robust in enumerate(audit["robust"]) if not robust}
    assert broken_by_aa <= broken_by_audit
    assert len(broken_by_aa) >= 2  # the check had samples to look at (misclassified ones included)

"""The measurement behind `no-gradient-path` (judged in `audit/checks/gradient_path.py`): does any gradient reach
the input through the exact backward, and through each surrogate the defense offers?

A thermometer code built from comparisons, a rounding of the input or a detach leaves gradient attacks nothing to
follow. Automatic BPDA (defenses/auto_bpda.py) gives such a model a surrogate backward where it can; the
measurement also keeps what it replaced.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.threat_model import ThreatModel
from audit.probes.config import DiagnosticsConfig
from defenses.gradient_path import gradient_reaches_input
from defenses.protocol import Defense


def measure_gradient_path(
    defense: Defense, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int, config: DiagnosticsConfig
) -> dict[str, Any]:
    reach = {name: gradient_reaches_input(defense, x, name) for name in defense.surrogates}
    scan = getattr(defense, "scan_result", None)
    return {"n": len(x), "reaches_input": reach, "replaced": scan.to_json() if scan is not None else None}

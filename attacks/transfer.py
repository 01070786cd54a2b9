"""Transfer: craft points on a surrogate model, judge them on the real one (Athalye et al.; Pintor et al.).

For MeanSparse the natural surrogate is the base model (every threshold set to 0): if points made on it beat
white-box attacks on the defended model, the defended model's gradients are hiding its weakness.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attacks.base import Attack, AttackOutput
from attacks.counting import CountingModel
from attacks.threat_model import ThreatModel


class Transfer(Attack):
    """Run `inner` on `source` (a plain model), return its points for the judge to judge on the defense."""

    def __init__(self, inner: Attack, source: nn.Module, source_name: str = "base") -> None:
        super().__init__()
        self.inner, self.source, self.source_name = inner, source, source_name
        self.name = f"transfer-{source_name}:{inner.label}"
        self.threat_kind = inner.threat_kind
        self.single_step = inner.single_step

    @property
    def gradient(self) -> str:
        return f"transfer:{self.source_name}"

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:  # model: the judge's counter on the defense, unused
        source = CountingModel(self.source)
        output = self.inner.perturb(source, x, y, threat, seed)
        # Whether each point also fails on the source: the source's own robustness on these samples, which the
        # `static-model-gain` check compares a test-time defense's number against (audit/checks/test_time.py).
        with torch.no_grad():
            proposed = threat.project(torch.nan_to_num(output.x_adv.detach(), nan=0.0), x)
            output.extra["source_robust"] = (source(proposed).argmax(1) == y).cpu().tolist()
        # The attack's cost is the source's calls: the judge adds them to its counts (so reports show them), and
        # they stay apart in extra, which says the defense itself was never queried while crafting.
        output.extra["source_forward_images"] = source.forward_images
        output.extra["source_backward_images"] = source.backward_images
        return output

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

"""The one-module diagnostic `gradient-repeatability` (audit/diagnostics/gradient_repeatability.py): registered
by being there, run by the probes, judged into the verdict's symptoms; a deterministic backward passes, a random
one fails, a random forward is left to `randomized`."""

from __future__ import annotations

import torch

from attacks.threat_model import ThreatModel
from audit.checks.registry import checks, markdown_table
from audit.checks.verdict import meanings
from audit.diagnostics.gradient_repeatability import FAIL, ID, WARN
from audit.probes import all_probes, diagnose
from defenses.protocol import Undefended

LINF = ThreatModel("Linf", 0.1)


class NoisyBackward(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by fresh noise, 1 + N(0, 0.5^2) per element."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad * (1 + 0.5 * torch.randn_like(grad))


class Wrapped(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, noisy_backward: bool = False, noisy_forward: bool = False) -> None:
        super().__init__()
        self.model, self.noisy_backward, self.noisy_forward = model, noisy_backward, noisy_forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.noisy_backward:
            x = NoisyBackward.apply(x)
        if self.noisy_forward:
            x = x + 0.05 * torch.randn_like(x)
        return self.model(x)


def finding(model: torch.nn.Module, data) -> object:
    x, y = data.images[:20], data.labels[:20]
    (result,) = diagnose(Undefended(model), x, y, LINF, only=(ID,))
    assert result.id == ID
    return result


def test_registered_by_its_module_alone():
    assert ID in {p.name for p in all_probes()}
    assert ID in {c.id for c in checks()} and ID in meanings("symptom")
    assert f"[`{ID}`](#{ID})" in markdown_table()


def test_a_deterministic_backward_passes(standard_model, fmnist_test):
    result = finding(standard_model, fmnist_test)
    assert result.status == "pass" and result.evidence["same_forward"] == 20
    assert result.evidence["median_relative_difference"] < WARN / 100


def test_a_random_backward_fails(standard_model, fmnist_test):
    result = finding(Wrapped(standard_model, noisy_backward=True), fmnist_test)
    assert result.status == "fail" and result.evidence["median_relative_difference"] > 4 * FAIL


def test_a_random_forward_is_left_to_the_randomized_check(standard_model, fmnist_test):
    result = finding(Wrapped(standard_model, noisy_forward=True), fmnist_test)
    assert result.status == "skipped" and "forward itself is random" in result.message

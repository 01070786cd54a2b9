"""APGD on the Carlini-Wagner margin loss (attacks/apgd_cw.py): registered by its own module, and exact where the
answer is known: on a linear two-class model every sample within eps of the boundary breaks, and none beyond."""

from __future__ import annotations

import torch

from attacks.apgd_cw import cw_loss
from attacks.judge import judge
from attacks.registry import make_attack
from attacks.threat_model import ThreatModel
from audit.plan.roles import role
from defenses.protocol import Undefended

EPS = 0.1


def test_the_loss_is_minus_the_margin_and_positive_exactly_when_misclassified():
    logits = torch.tensor([[3.0, 1.0, 0.5], [0.0, 2.0, 1.0], [1.0, 1.0, -4.0]])
    y = torch.tensor([0, 0, 2])
    assert torch.equal(cw_loss(logits, y), torch.tensor([-2.0, 2.0, 5.0]))


def test_registered_where_defined_with_its_budgets_and_role():
    attack = make_attack("apgd-cw+bpda-identity@iters=30,restarts=2")
    assert (attack.n_iter, attack.n_restarts, attack.surrogate) == (30, 2, "identity")
    assert make_attack(attack.label).config() == attack.config()
    assert "Carlini-Wagner" in role("apgd-cw")


def test_breaks_exactly_the_samples_within_eps_of_a_linear_boundary():
    # Two classes, logit difference z_1 - z_0 = w.x + b: the Linf distance to the boundary is |w.x + b| / ||w||_1.
    # DLR needs a third logit; the CW margin does not.
    torch.manual_seed(0)
    d = 20
    model = torch.nn.Linear(d, 2)
    w = (model.weight[1] - model.weight[0]).detach()
    b = float((model.bias[1] - model.bias[0]).detach())
    x = torch.rand(200, d)
    diff = x @ w + b
    y = (diff > 0).long()  # every sample clean-correct
    distance = diff.abs() / w.abs().sum()
    record = judge(
        make_attack("apgd-cw@iters=50"), Undefended(model.eval(), num_classes=2), x, y, ThreatModel("Linf", EPS), seed=0
    )
    near, far = distance < 0.8 * EPS, distance > EPS
    assert near.sum() >= 20 and far.sum() >= 20  # both sides of the line are tested
    assert bool(record.success[near].all()), f"{int((~record.success[near]).sum())} reachable samples kept"
    assert not bool(record.success[far].any())

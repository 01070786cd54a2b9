"""Test-time defenses (defenses/test_time.py, audit/plan/test_time.py, audit/checks/test_time.py): a purifier that
takes a few signed-gradient steps lowering the prediction entropy of the shipped demo-adversarial CNN, output
detached (tests/fixtures/purifier_model.py). The static model inside is traced, the full gradient through the
unrolled steps is the true derivative of the forward, the plan attacks the static model and the unrolled forward,
Square spends its budget only on evidence, and the audit's worst case sits at or below each of them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from audit.cli import main
from audit.model_spec import load_factory, resolve_model
from defenses.auto_bpda import AutoBPDA
from defenses.test_time import Unrolled, trace_forward
from tests.conftest import require_shipped

FIXTURE = Path(__file__).parent / "fixtures" / "purifier_model.py"


@pytest.fixture(scope="module")
def purifier():
    require_shipped("demo-adversarial")
    return load_factory(f"{FIXTURE}:build")


def test_trace_finds_the_static_model_and_the_cost(purifier, fmnist_test):
    x = fmnist_test.images[:4]
    trace = trace_forward(purifier, x)
    # 3 steps: 3 autograd calls, the classifier on each step's input and once on the purified input.
    assert (trace.autograd_calls, trace.static_path, trace.static_calls) == (3, "classifier", 4)
    assert trace.test_time and trace.passes_per_forward == 7
    plain = trace_forward(purifier.classifier, x)  # the static model alone runs no optimisation
    assert not plain.test_time and plain.autograd_calls == 0


def test_the_unrolled_gradient_is_the_forward_s_derivative(fmnist_test):
    """Normalised (not signed) steps, in float64: the unrolled gradient matches central finite differences of the
    exact forward to 1e-5 relative on every direction, while straight-through BPDA (the detaches as identity, the
    inner gradient a constant) is off by more than 5% on at least one: the second-order terms it drops."""
    require_shipped("demo-adversarial")
    model = load_factory(f"{FIXTURE}:build_smooth").double()
    x = fmnist_test.images[:4].double()
    weights = torch.randn(4, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = {}
    for name, mode in (("unrolled", Unrolled), ("bpda", lambda: AutoBPDA("identity"))):
        point = x.clone().requires_grad_(True)
        with mode():
            out = model(point)
        with torch.no_grad():
            assert torch.equal(out.detach(), model(x)), "the forward values must be the exact forward's"
        (grads[name],) = torch.autograd.grad((out * weights).sum(), point)
    bpda_errors = []
    for seed in range(3):
        v = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
        v /= v.norm()
        with torch.no_grad():
            fd = ((model(x + 1e-6 * v) * weights).sum() - (model(x - 1e-6 * v) * weights).sum()) / 2e-6
        assert abs(float((grads["unrolled"] * v).sum()) - float(fd)) <= 1e-5 * abs(float(fd)) + 1e-9
        bpda_errors.append(abs(float((grads["bpda"] * v).sum()) - float(fd)) / abs(float(fd)))
    assert max(bpda_errors) > 0.05


def test_signed_steps_the_unrolled_gradient_is_the_straight_through_one(purifier, fmnist_test):
    """sign() has derivative 0, so through signed steps the exact gradient keeps only the identity path of each step
    (and the box clamps): the same as straight-through BPDA over the detaches, to float rounding."""
    x = fmnist_test.images[:4].double()
    model = load_factory(f"{FIXTURE}:build").double()
    grads = []
    for mode in (Unrolled, lambda: AutoBPDA("identity")):
        point = x.clone().requires_grad_(True)
        with mode():
            out = model(point)
        (grad,) = torch.autograd.grad(out[:, 0].sum() - out[:, 1].sum(), point)
        grads.append(grad)
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)


def test_unrolled_mode_leaves_a_static_forward_alone(fmnist_test):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x = fmnist_test.images[:2].clone().requires_grad_(True)
    with Unrolled():
        out = model(x)
        detached = out.detach()  # no inner optimisation here, but a detach on the input's path is still a copy
    assert detached.requires_grad and torch.equal(detached, out)


def test_plan_for_a_test_time_defense(purifier, fmnist_test):
    from audit.plan.suites import plan_suite

    defense, _ = resolve_model(f"{FIXTURE}:build")
    defense(fmnist_test.images[:4])
    assert defense.test_time and "unrolled" in defense.surrogates
    assert defense.base_model() is defense.model.classifier
    assert "test-time optimisation inside forward" in defense.description
    plan = plan_suite("full", defense, "standard")
    labels = [a.label for a in plan.attacks]
    assert labels == [
        "transfer-base:autoattack-standard",
        "fgsm+unrolled",
        "apgd-ce+unrolled",
        "apgd-dlr+unrolled",
        "apgd-ce+bpda-identity",
        "apgd-ce+unrolled+survivors@iters=300",
        "square+survivors@probe=10",
    ]
    skipped = dict(plan.skipped)
    assert "AutoAttack runs on the static model" in skipped["autoattack-standard"]
    assert "~7 passes of the static model" in skipped["square@queries=10000,restarts=3"]


def test_plan_for_a_randomized_test_time_defense_uses_eot(purifier, fmnist_test):
    from audit.plan.suites import plan_suite

    defense, _ = resolve_model(f"{FIXTURE}:build")
    defense(fmnist_test.images[:4])
    labels = [a.label for a in plan_suite("full", defense, "standard", random=True).attacks]  # found random
    assert {
        "apgd-ce+unrolled+eot20",
        "apgd-dlr+unrolled+eot20",
        "apgd-ce+bpda-identity+eot20",
        "apgd-ce+unrolled+eot20+survivors@iters=300",
    } <= set(labels)
    assert not any(label.endswith("+unrolled") for label in labels)


class _BackwardPurifier(nn.Module):
    """One entropy step taken with loss.backward() and .grad, the pattern the unrolled mode cannot follow."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            log_p = self.classifier(z).log_softmax(1)
            (-(log_p.exp() * log_p).sum()).backward()
            purified = (z - 0.01 * z.grad.sign()).clamp(0, 1)
        return self.classifier(purified.detach()).detach()


def test_plan_without_unrolled_when_the_forward_uses_backward(fmnist_test):
    from audit.plan.suites import plan_suite
    from defenses.adapters import as_defense

    torch.manual_seed(0)
    defense = as_defense(_BackwardPurifier().eval(), opaque=True)
    with torch.no_grad():
        defense(fmnist_test.images[:4])
    assert defense.test_time and defense.trace().static_path == "classifier"
    plan = plan_suite("full", defense, "standard")
    labels = [a.label for a in plan.attacks]
    assert "transfer-base:autoattack-standard" in labels and not any("+unrolled" in label for label in labels)
    skipped = dict(plan.skipped)
    assert skipped["apgd-ce+unrolled"].startswith("not applicable: the unrolled forward raised")


def test_static_model_spec_overrides_the_trace(purifier, fmnist_test):
    from audit.config import AuditConfig
    from audit.pipeline import build_defense

    defense = build_defense(AuditConfig(model=f"{FIXTURE}:build", static_model="demo-standard"), progress=False)
    defense(fmnist_test.images[:4])
    static = defense.base_model()
    assert static is not None and static is not defense.model.classifier
    assert "static model given" in defense.description
    from audit.inputs import AuditInputError

    with pytest.raises(AuditInputError, match="--static-model applies to a user's model"):
        build_defense(AuditConfig(model="demo-adversarial", static_model="classifier"), progress=False)


def test_square_spends_its_budget_on_evidence(standard_model, fmnist_test, monkeypatch):
    """A probe that breaks a sample opens the full budget to every sample; a probe that breaks none leaves the
    rest unqueried, and says so per sample."""
    from attacks.autoattack import Square
    from attacks.threat_model import ThreatModel
    from defenses.protocol import Undefended

    monkeypatch.setattr(Square, "PROBE_QUERIES", 20)
    x, y = fmnist_test.images[:12], fmnist_test.labels[:12]
    model = Undefended(standard_model)
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    broken = Square(n_queries=40, n_probe=4).perturb(model, x, y, ThreatModel("Linf", 0.3), seed=0)
    assert broken.extra["queried"] == [True] * len(x)
    assert int((broken.extra["queries"] > 0).sum()) >= len(x) - 2  # all were searched (some fall at query 1)
    with torch.no_grad():
        assert int((model(broken.x_adv).argmax(1) != y).sum()) >= len(x) // 2
    tiny = Square(n_queries=40, n_probe=4).perturb(model, x, y, ThreatModel("Linf", 1e-4), seed=0)
    assert sum(tiny.extra["queried"]) == 4
    unqueried = ~torch.tensor(tiny.extra["queried"])
    queries = tiny.extra["queries"]
    # the probe's 20 queries (pyautoattack counts the initial stripes as one more), none on the others
    assert bool(((queries[~unqueried] >= 20) & (queries[~unqueried] <= 21)).all())
    assert bool((queries[unqueried] == 0).all())
    assert torch.equal(tiny.x_adv[unqueried], x[unqueried])


def test_static_model_gain_check():
    from audit.checks.test_time import check_static_model_gain
    from audit.outcomes import Outcomes

    n = 40
    clean = {
        "attack": "clean",
        "batch": 0,
        "labels": [0] * n,
        "prediction": [0] * n,
        "draws_correct": [1] * n,
        "draws": 1,
    }

    def row(label: str, gradient: str, broken: list[bool], extra: dict) -> dict:
        return {
            "attack": label,
            "batch": 0,
            "indices": list(range(n)),
            "attributes": {"gradient": gradient},
            "status": ["broken" if b else "held" for b in broken],
            "distance": [0.0] * n,
            "margin": [0.0] * n,
            "draws_correct": [int(not b) for b in broken],
            "draws": 1,
            "n_forward": 0.0,
            "n_backward": 0.0,
            "seconds": 0.0,
            "violations": 0,
            "extra": extra,
        }

    def outcomes(defense_broken: int, static_broken: int) -> Outcomes:
        # the static model falls on its first `static_broken` samples, the defense's own attack on `defense_broken`
        transfer = row(
            "transfer-base:apgd-ce",
            "transfer:base",
            [i < defense_broken // 2 for i in range(n)],
            {"source_robust": [i >= static_broken for i in range(n)]},
        )
        own = row("apgd-ce+bpda-identity", "bpda-identity", [i < defense_broken for i in range(n)], {})
        return Outcomes.from_rows(clean, [transfer, own], ["transfer-base:apgd-ce", "apgd-ce+bpda-identity"], "full")

    facts = {"test_time": {"kind": "test-time optimisation inside forward"}, "config": {"claim": None}}
    (gap,) = check_static_model_gain(outcomes(defense_broken=4, static_broken=14), facts)
    assert gap.status == "fail" and gap.evidence["only_defense_held"] == 10 and gap.evidence["static_robust"] == 26
    (same,) = check_static_model_gain(outcomes(defense_broken=14, static_broken=14), facts)
    assert same.status == "pass"
    claimed = {**facts, "config": {"claim": 0.7}}  # above the static model's 26/40 = 65%
    (claim,) = check_static_model_gain(outcomes(defense_broken=14, static_broken=14), claimed)
    assert claim.status == "fail" and "exceeds the static model's" in claim.message
    (below,) = check_static_model_gain(outcomes(14, 14), {**facts, "config": {"claim": 0.6}})
    assert below.status == "pass"
    (other,) = check_static_model_gain(outcomes(14, 14), {"config": {}})
    assert other.status == "skipped"


def _attacks(results: dict) -> dict[str, float]:
    return {a["name"]: a["robust_accuracy"] for a in results["attacks"]}


def test_audit_of_a_purifier_attacks_it_through_its_steps_and_from_its_static_model(purifier, tmp_path):
    """A short explicit plan on 32 images at eps 0.15: transfer from the static model, the unrolled gradient,
    straight-through BPDA. The worst case is at most each of them, the unrolled gradient and the transfer both
    break a large share of the clean-correct samples, the verdict is `suspected` with the claim at risk, and a
    claim above the static model's robust accuracy is a failed `static-model-gain`."""
    out = tmp_path / "run"
    attacks = (
        "transfer-base:apgd-ce@iters=25,apgd-ce+unrolled@iters=25,apgd-ce+bpda-identity@iters=25,"
        "square+survivors@queries=50,probe=4"
    )
    assert (
        main(
            [
                "run",
                "--model",
                f"{FIXTURE}:build",
                "--n",
                "32",
                "--eps",
                "0.15",
                "--attacks",
                attacks,
                "--diagnostics-n",
                "8",
                "--claim",
                "0.95",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    ran = _attacks(results)
    worst = results["worst_case_robust_accuracy"]
    assert 0 < worst <= min(v for v in ran.values() if v is not None)
    clean = results["clean_accuracy"]
    assert clean >= 0.7
    # Measured (27 of 32 clean-correct): the unrolled gradient leaves 41%, the transfer from the static model 19%.
    assert ran["apgd-ce+unrolled@iters=25"] <= clean - 0.25 and ran["transfer-base:apgd-ce@iters=25"] <= clean - 0.4
    assert results["test_time"]["kind"] == "test-time optimisation inside forward"
    assert results["test_time"]["static_model"] == "classifier"
    # What the evidence-first Square spent: every survivor is either queried or counted as not queried.
    spend = results["test_time"]["black_box"]["square+survivors@queries=50,probe=4"]
    assert spend["ran_on"] >= round(32 * worst) >= 1  # it ran on the survivors of the other attacks
    assert spend["queried"] + spend["not_queried"] == spend["ran_on"] and spend["queries"] >= spend["queried"]
    assert spend["queried"] == spend["ran_on"] or spend["queried"] == 4
    square = next(a for a in results["attacks"] if a["name"] == "square+survivors@queries=50,probe=4")
    assert square["ran"] == spend["queried"]  # the samples it left alone are not_run:not-queried, never held
    verdict = results["verdict"]
    assert verdict["gradient_masking"] == "suspected" and verdict["claim_at_risk"] == "yes"
    gain = next(f for f in results["findings"] if f["id"] == "static-model-gain")
    assert gain["status"] == "fail" and "claimed 95.0% exceeds" in gain["message"]
    assert {"gradient-in-forward", "static-model-gain"} <= {d["id"] for d in verdict["drivers"]}
    assert "## Defense kind: test-time optimisation inside forward" in (out / "report.md").read_text()


@pytest.mark.slow  # ~10 min at one thread: the full default audit of the purifier and of its static model
def test_default_audit_of_the_purifier_on_100_images(tmp_path):
    """The acceptance measurement: with default settings, the worst case is at most the transfer from the static
    model and at most the full-gradient attack, the verdict `suspected` with the claim at risk, and the audit
    takes at most 3x the same audit of the static model."""
    require_shipped("demo-adversarial")
    seconds = {}
    for name, model in (("static", "demo-adversarial"), ("purifier", f"{FIXTURE}:build")):
        start = time.perf_counter()
        assert main(["run", "--model", model, "--n", "100", "--quiet", "--out", str(tmp_path / name)]) == 0
        seconds[name] = time.perf_counter() - start
    results = json.loads((tmp_path / "purifier" / "results.json").read_text())
    ran = _attacks(results)
    worst = results["worst_case_robust_accuracy"]
    assert worst <= ran["transfer-base:autoattack-standard"] and worst <= ran["apgd-ce+unrolled"]
    assert results["verdict"]["gradient_masking"] == "suspected" and results["verdict"]["claim_at_risk"] == "yes"
    assert seconds["purifier"] <= 3 * seconds["static"], seconds

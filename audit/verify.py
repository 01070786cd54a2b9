"""`audit verify DIR`: check a run's stored adversarial examples on the model, with forward passes only.

For every kept example: inside the threat (the Lp distance to its clean image recomputed, within the input box;
for a transformation attack, its parameters inside the attack's limits and re-applied to the clean image give
the stored input), and misclassified on the exact forward, on the very draws the judge scored for a randomized
defense. Together with the clean images that are already misclassified, the confirmed examples prove an upper
bound on the robust accuracy, whatever else the run did; nothing about the run's attacks needs trusting.
For a randomized defense the same examples are also scored on fresh draws, reported apart: a randomized claim
is about new draws, and an example that fools only the recorded ones proves less.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from attacks.judge import exact_logits
from attacks.threat_model import ThreatModel
from attacks.transform import TransformAttack
from audit.evidence import Evidence, load_evidence
from audit.fingerprint import data_sha256, state_sha256
from audit.inputs import validate_config
from audit.pipeline import build_defense, finished_facts, stored_config
from audit.stats import accuracy_json
from defenses.protocol import Defense, declared_random

log = logging.getLogger(__name__)
FRESH = "fresh-draws"


@dataclass
class Verification:
    confirmed: int
    examples: int
    failures: list[str]  # one line per example (or input) that does not hold
    upper_bound: dict[str, dict[str, Any]]  # per threat kind: accuracy_json of the samples no confirmed evidence breaks
    reported: dict[str, float]  # the run's worst case per threat kind, from results.json
    same_model: bool
    fresh: dict[str, Any] | None = None  # randomized: examples still adversarial on fresh draws
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        lines = [f"{self.confirmed} of {self.examples} adversarial examples confirmed"]
        for kind, bound in self.upper_bound.items():
            low, high = bound["ci95"]
            reported = self.reported.get(kind)
            said = "" if reported is None else f"; the run reported {100 * reported:.2f}%"
            lines.append(
                f"robust accuracy ({kind}) at most {100 * bound['accuracy']:.2f}% "
                f"(95% interval {100 * low:.1f} - {100 * high:.1f}){said}"
            )
        if self.fresh is not None:
            lines.append(
                f"on {self.fresh['draws']} fresh draws: {self.fresh['still_adversarial']} of "
                f"{self.fresh['examples']} examples still misclassified on some draw, "
                f"{100 * self.fresh['mean_misclassified']:.1f}% of draws misclassified on average"
            )
        return lines + self.notes + [f"FAILED: {line}" for line in self.failures]


def _transform_ok(
    label: str, clean: torch.Tensor, x_adv: torch.Tensor, params: torch.Tensor | None, bounds: tuple[float, float]
) -> str | None:
    from attacks.registry import make_attack

    attack = make_attack(label)
    if not isinstance(attack, TransformAttack) or params is None:
        return f"{label} is not a transformation attack with parameters"
    params = params.view(1, -1).to(clean.device)
    if not torch.equal(attack.clip_params(params), params):
        return "its parameters lie outside the attack's limits"
    again = attack.apply(clean.unsqueeze(0), params).clamp(*bounds)
    if not torch.allclose(again, x_adv.unsqueeze(0), atol=1e-5):
        return "re-applying its parameters to the clean image does not give the stored input"
    return None


def verify_run(
    out: str | Path,
    model: str | None = None,
    checkpoint: str | None = None,
    device: str = "cpu",
    trust_checkpoint: bool = False,
    progress: bool = False,
) -> Verification:
    """Check the evidence in `out` on the run's own model, or on `model` (and `checkpoint`) instead."""
    out = Path(out)
    facts = finished_facts(out)
    evidence = load_evidence(out)
    config = replace(stored_config(facts), trust_checkpoint=trust_checkpoint)
    if model is not None:
        config = replace(config, model=model, checkpoint=checkpoint, robustbench_dir=None)
    elif checkpoint is not None:
        config = replace(config, checkpoint=checkpoint)
    validate_config(config)  # as `audit run`: e.g. a --checkpoint a shipped model would ignore is refused
    failures, notes = [], []
    if data_sha256(evidence.clean, evidence.labels) != facts["config"].get("data_sha256"):
        failures.append("the stored clean images and labels are not the audited ones (their hash differs)")
    defense = build_defense(config, progress)
    defense.to(device).eval()
    if facts.get("randomness_found"):  # the run found it random: score on draws, as it did
        defense = declared_random(defense)
    same_model = state_sha256(defense) == facts["config"].get("model_state_sha256")
    if not same_model:
        notes.append("note: this model's weights differ from the audited model's (model_state_sha256)")
    threat = ThreatModel(config.norm, config.eps, defense.bounds)
    device_ = defense.device
    clean = evidence.clean.to(device_)
    draws = evidence.draws
    clean_correct = (
        exact_logits(defense, clean, list(range(len(clean))), evidence.seed, draws, config.batch_size).argmax(2)
        == evidence.labels.to(device_).view(1, -1)
    ).all(0)
    broken = {kind: torch.zeros(len(clean), dtype=torch.bool) for kind in ("lp", *evidence.threat_kind)}
    confirmed = 0
    misclassified = _misclassified(defense, evidence, evidence.seed, config.batch_size)
    for j in range(evidence.k):
        sample, label, kind = int(evidence.sample[j]), evidence.attack[j], evidence.threat_kind[j]
        x_adv = evidence.x_adv[j].to(device_)
        if kind == "lp":
            inside = bool(threat.contains(x_adv.unsqueeze(0), clean[sample].unsqueeze(0))[0])
            distance = float(threat.distance(x_adv.unsqueeze(0), clean[sample].unsqueeze(0))[0])
            problem = (
                None
                if inside
                else (
                    f"distance {distance:.6g} beyond eps {config.eps:g} ({config.norm}) or "
                    f"outside the input box {list(threat.bounds)}"
                )
            )
        else:
            problem = _transform_ok(label, clean[sample], x_adv, evidence.params[j], threat.bounds)
        if problem is None and not misclassified[j]:
            problem = f"classified correctly on {'every recorded draw' if draws > 1 else 'the exact forward'}"
        if problem is None:
            confirmed += 1
            broken[kind][sample] = True
        else:
            failures.append(f"sample {sample} ({label}): {problem}")
    n = len(clean)
    upper = {
        kind: accuracy_json(int((clean_correct.cpu() & ~hit).sum()), n)
        for kind, hit in broken.items()
        if kind == "lp" or hit.any()
    }
    results_path = out / "results.json"
    reported = {}
    if results_path.exists():
        worst = json.loads(results_path.read_text()).get("worst_case", {})
        reported = {kind: case["accuracy"] for kind, case in worst.items() if "accuracy" in case}
    fresh = None
    if draws > 1 and evidence.k:  # other seeds, so other draws than the judge's (derive_seed mixes the seed in)
        again = _misclassified(defense, evidence, evidence.seed + 1_000_003, config.batch_size, fraction=True)
        fresh = {
            "draws": draws,
            "examples": evidence.k,
            "still_adversarial": int((again > 0).sum()),
            "mean_misclassified": float(again.mean()),
        }
    return Verification(confirmed, evidence.k, failures, upper, reported, same_model, fresh, notes)


def _misclassified(
    defense: Defense, evidence: Evidence, seed: int, batch_size: int, fraction: bool = False
) -> torch.Tensor:
    """Per example: misclassified on some draw (or the fraction of draws misclassified), on the common draws
    of its sample (`attacks.judge.exact_logits`, seeded by `seed`: the run's own, or another for fresh draws)."""
    if not evidence.k:
        return torch.zeros(0)
    x = evidence.x_adv.to(defense.device)
    logits = exact_logits(defense, x, evidence.sample.tolist(), seed, evidence.draws, batch_size)
    wrong = (logits.argmax(2) != evidence.labels[evidence.sample].to(x.device).view(1, -1)).float()
    return (wrong.mean(0) if fraction else wrong.amax(0)).cpu()

"""AutoAttack and its parts, through pyautoattack's attack classes (the upstream code, unchanged).

`AutoAttack` runs the same cascade as pyautoattack's `run_standard_evaluation` (each sub-attack only on the
points still robust), with the sub-attacks configured by pyautoattack itself for the chosen version, but keeps
what upstream throws away: which sub-attack broke each sample.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from attacks.base import Attack, AttackOutput
from attacks.catalog import register
from attacks.threat_model import ThreatModel

log = logging.getLogger(__name__)
VERSIONS = ("standard", "plus", "rand", "custom")
SUB_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")


def _device(x: torch.Tensor) -> str:
    return str(x.device)


ITERS = {"iters": "n_iter", "restarts": "n_restarts"}
TARGETS = {"iters": "n_iter", "restarts": "n_restarts", "targets": "n_target_classes"}


@register("apgd-ce", ITERS, loss="ce")
@register("apgd-dlr", ITERS, loss="dlr")
@register("apgd-t", TARGETS, targeted=True)
class APGD(Attack):
    """APGD (Croce & Hein 2020) with cross-entropy (`ce`), DLR (`dlr`) or targeted DLR (`targeted=True`)."""

    handles_eot = True  # pyautoattack averages gradients over eot_iter draws itself

    def __init__(
        self,
        loss: str = "ce",
        targeted: bool = False,
        n_iter: int = 100,
        n_restarts: int = 1,
        n_target_classes: int = 9,
        rho: float = 0.75,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.loss, self.targeted = loss, targeted
        self.n_iter, self.n_restarts, self.n_target_classes, self.rho = n_iter, n_restarts, n_target_classes, rho
        self.name = "apgd-t" if targeted else f"apgd-{loss}"

    def build(self, model: nn.Module, threat: ThreatModel, seed: int, device: str) -> Any:  # a pyautoattack APGD
        from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

        common = dict(
            n_iter=self.n_iter,
            norm=threat.norm,
            n_restarts=self.n_restarts,
            eps=threat.eps,
            seed=seed,
            eot_iter=self.eot,
            rho=self.rho,
            verbose=False,
            device=device,
            logger=logging.getLogger("auto-attack"),
        )
        if self.targeted:
            return APGDAttack_targeted(model, n_target_classes=self.n_target_classes, **common)
        return APGDAttack(model, loss=self.loss, **common)

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        return AttackOutput(self.build(model, threat, seed, _device(x)).perturb(x, y))


@register("fab", ITERS, targeted=False)
@register("fab-t", TARGETS, targeted=True)
class FAB(Attack):
    """FAB (Croce & Hein 2020), minimum-norm; `targeted=True` is AutoAttack's FAB-T."""

    def __init__(
        self, targeted: bool = False, n_iter: int = 100, n_restarts: int = 1, n_target_classes: int = 9, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.targeted, self.n_iter = targeted, n_iter
        self.n_restarts, self.n_target_classes = n_restarts, n_target_classes
        self.name = "fab-t" if targeted else "fab"

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        from pyautoattack.fab_pt import FABAttack_PT

        fab = FABAttack_PT(
            model,
            norm=threat.norm,
            n_restarts=self.n_restarts,
            n_iter=self.n_iter,
            eps=threat.eps,
            seed=seed,
            targeted=self.targeted,
            n_target_classes=self.n_target_classes,
            verbose=False,
            device=_device(x),
        )
        return AttackOutput(fab.perturb(x, y))


@register(
    "square", {"queries": "n_queries", "restarts": "n_restarts", "probe": "n_probe", "probe_queries": "probe_queries"}
)
class Square(Attack):
    """Square (Andriushchenko et al. 2020): score-based black-box search; no gradients. Records queries per sample.

    `n_probe` (budget key `probe`): evidence first, for a defense whose every query is expensive (a test-time
    defense runs its whole optimisation per query). Square first runs `PROBE_QUERIES` queries (one restart) on
    `n_probe` samples of the batch drawn from the seed; only if it breaks one of them does it run the full budget
    on the whole batch. Otherwise the others are not queried, and the per-sample `queried` extra says so (their
    outcome under this attack is the clean point's). `probe_queries` (budget key `probe_queries`) sets the probe's
    queries: the default budget's last Square probes at its full 5000 (audit/plan/suites.py), so the probe asks the
    question the full run would answer, on fewer samples."""

    name = "square"
    role = "black-box: the model's outputs only"
    gradient_free = True
    PROBE_QUERIES = 500  # the probe only decides whether the full budget is worth spending

    def __init__(
        self,
        n_queries: int = 5000,
        n_restarts: int = 1,
        p_init: float = 0.8,
        n_probe: int | None = None,
        probe_queries: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.n_queries, self.n_restarts, self.p_init, self.n_probe = n_queries, n_restarts, p_init, n_probe
        self.probe_queries = probe_queries

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        if self.n_probe is None or len(x) <= self.n_probe:
            adv, queries = self._search(model, x, y, threat, seed, self.n_queries, self.n_restarts)
            return AttackOutput(adv, extra={"queries": queries.cpu()})
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
        probe = order[: self.n_probe]
        probe_queries = min(self.probe_queries or self.PROBE_QUERIES, self.n_queries)
        first, first_queries = self._search(model, x[probe], y[probe], threat, seed, probe_queries, 1)
        with torch.no_grad():
            evidence = int((model(first).argmax(1) != y[probe]).sum())
        if evidence:
            log.info(
                "square: the probe broke %d of %d samples; running %d queries x %d restarts on all %d",
                evidence,
                len(probe),
                self.n_queries,
                self.n_restarts,
                len(x),
            )
            adv, queries = self._search(model, x, y, threat, seed, self.n_queries, self.n_restarts)
            queries[probe] += first_queries
            return AttackOutput(adv, extra={"queries": queries.cpu(), "queried": [True] * len(x)})
        log.info(
            "square: the probe broke none of %d samples at %d queries; the other %d samples are not queried",
            len(probe),
            probe_queries,
            len(x) - len(probe),
        )
        adv, queries = x.clone(), torch.zeros(len(x), device=x.device)
        adv[probe], queries[probe] = first, first_queries
        queried = torch.zeros(len(x), dtype=torch.bool)
        queried[probe.cpu()] = True
        return AttackOutput(adv, extra={"queries": queries.cpu(), "queried": queried.tolist()})

    def _search(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        seed: int,
        n_queries: int,
        n_restarts: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from pyautoattack.square import SquareAttack

        square = SquareAttack(
            model,
            norm=threat.norm,
            n_queries=n_queries,
            eps=threat.eps,
            p_init=self.p_init,
            n_restarts=1,
            seed=seed,
            verbose=False,
            resc_schedule=False,
            device=_device(x),
        )
        # pyautoattack's perturb() drops the per-sample query counts; this is its loop, keeping them.
        square.init_hyperparam(x)
        adv, queries = x.clone(), torch.zeros(len(x), device=x.device)
        with torch.no_grad():
            robust = model(x).argmax(1) == y
        torch.random.manual_seed(seed)
        for _ in range(n_restarts):
            index = robust.nonzero().flatten()
            if index.numel() == 0:
                break
            n_used, adv_curr = square.attack_single_run(x[index], y[index])
            with torch.no_grad():
                fooled = model(adv_curr).argmax(1) != y[index]
            queries[index] += n_used.float()
            adv[index[fooled]] = adv_curr[fooled]
            robust[index[fooled]] = False
        return adv, queries


def _sub_attack(name: str, version: str, eot: int) -> Attack:
    """Sub-attacks with the settings pyautoattack's AutoAttack._set_version gives them (Linf/L2)."""
    plus = version == "plus"
    if name in ("apgd-ce", "apgd-dlr"):
        restarts = 5 if plus else 1
        return APGD(loss=name[5:], n_restarts=restarts, eot=20 if version == "rand" else eot)
    if name == "apgd-t":
        return APGD(targeted=True, n_target_classes=9, eot=eot)
    if name == "fab":
        return FAB(targeted=False, n_restarts=5 if plus else 1)
    if name == "fab-t":
        return FAB(targeted=True, n_target_classes=9)
    if name == "square":
        return Square(n_queries=5000)
    raise ValueError(f"unknown AutoAttack sub-attack {name!r}; choose from {SUB_ATTACKS}")


STANDARD = {
    "standard": ["apgd-ce", "apgd-t", "fab-t", "square"],
    "plus": ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"],
    "rand": ["apgd-ce", "apgd-dlr"],
}


@register("autoattack-standard", version="standard")
@register("autoattack-plus", version="plus")
@register("autoattack-rand", version="rand")
class AutoAttack(Attack):
    """The AutoAttack cascade (`standard`, `plus`, `rand`, or `custom` with `attacks=[...]`)."""

    def __init__(self, version: str = "standard", attacks: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if version not in VERSIONS:
            raise ValueError(f"AutoAttack version must be one of {VERSIONS}, not {version!r}")
        if version == "custom" and not attacks:
            raise ValueError("AutoAttack version 'custom' needs attacks=[...]")
        self.version = version
        self.attacks = list(attacks) if attacks and version == "custom" else STANDARD[version]
        self.parts = [_sub_attack(name, version, self.eot) for name in self.attacks]
        self.name = f"autoattack-{version}" if version != "custom" else "autoattack-" + "+".join(self.attacks)

    handles_eot = True
    role = "AutoAttack verbatim, the figure papers report"
    seed_as_given = True  # pyautoattack's run_standard_evaluation gives every batch the seed as given

    def config(self) -> dict[str, Any]:
        return {**super().config(), "attacks": self.attacks}

    def attributes(self) -> dict[str, Any]:
        # The parts' own attributes, so the store can tell AutoAttack's Square (no gradient) from its APGD parts.
        parts = {name: part.attributes() for name, part in zip(self.attacks, self.parts)}
        return {**super().attributes(), "parts": parts}

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        adv = x.clone()
        broken_by = ["" for _ in range(len(x))]
        with torch.no_grad():
            robust = model(x).argmax(1) == y
        for index, clean_wrong in enumerate((~robust).tolist()):
            if clean_wrong:
                broken_by[index] = "clean"
        for name, part in tqdm(list(zip(self.attacks, self.parts)), desc=self.name, leave=False, unit="part"):
            index = robust.nonzero().flatten()
            if index.numel() == 0:
                break
            # pyautoattack gives every sub-attack the same seed; so do we.
            proposal = part.perturb(model, x[index], y[index], threat, seed).x_adv
            with torch.no_grad():
                fooled = model(proposal).argmax(1) != y[index]
            adv[index[fooled]] = proposal[fooled]
            robust[index[fooled]] = False
            for i in index[fooled].tolist():
                broken_by[i] = name
            log.info("%s: %s broke %d of %d points", self.name, name, int(fooled.sum()), index.numel())
        return AttackOutput(adv, extra={"broken_by": broken_by})

"""Adapters to the attacks of torchattacks and foolbox, named `torchattacks:NAME` or `foolbox:NAME`.

The library attack runs on the model the judge hands over (the counting wrapper with the defense's surrogate
backward), with eps from the threat model. Its output is only a proposal: the judge projects it into the threat
model and re-scores it on the exact forward, as for every other attack. Both libraries draw their randomness from
torch's global generator, so the adapter seeds it inside `torch.random.fork_rng`, leaving the caller's global state
untouched.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from torch import nn

from attacks.base import Attack, AttackOutput
from attacks.libraries import (
    GRADIENT_FREE,
    LIBRARIES,
    attack_class,
    available_attacks,
    declared_norm,
    import_foolbox,
)
from attacks.names import UnknownAttack
from attacks.threat_model import ThreatModel

log = logging.getLogger(__name__)


def _accepted(cls: type) -> tuple[set[str], bool]:
    """Keyword arguments the constructor accepts, and whether it takes **kwargs."""
    constructor = cls.__init__  # type: ignore[misc]  # cls is the class itself, not an instance
    parameters = inspect.signature(constructor).parameters.values()
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
    return names, any(p.kind == p.VAR_KEYWORD for p in parameters)


class ExternalAttack(Attack):
    """An attack of torchattacks or foolbox, by spec `library:NAME` (e.g. `torchattacks:PGD`, `foolbox:LinfPGD`).

    Args:
        spec: `torchattacks:NAME` or `foolbox:NAME`; NAME is the library's class name.
        **kwargs: constructor arguments of the library attack (checked against its signature).
    eps always comes from the threat model. torchattacks' defaults (alpha = 2/255 for eps = 8/255, 10 steps) are
    tuned for CIFAR's eps; when `alpha` is not given it is set to 2.5 * eps / steps, the same ratio, so the attack
    reaches the ball's boundary at any eps. foolbox's step sizes are already relative to eps.

    Example::
        record = judge(ExternalAttack("foolbox:LinfPGD", steps=20), defense, x, y, ThreatModel("Linf", 0.1), 0)
    """

    def __init__(
        self,
        spec: str,
        surrogate: str = "exact",
        temperature: float | None = None,
        eot: int = 1,
        on_survivors: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(surrogate, temperature, eot, on_survivors)
        library, _, attack_name = spec.partition(":")
        if library not in LIBRARIES or not attack_name:
            raise UnknownAttack(
                f"external attack spec {spec!r} must be `library:NAME` with library one of {', '.join(LIBRARIES)}"
            )
        available = available_attacks(library)
        if attack_name not in available:
            raise UnknownAttack(f"{library} has no attack {attack_name!r}; available: {', '.join(available)}")
        self.library = library
        self.attack_name = attack_name
        self.name = spec
        self.gradient_free = attack_name in GRADIENT_FREE[library]
        reserved = {"model", "eps", "epsilons"} & set(kwargs)
        if reserved:
            raise UnknownAttack(
                f"{spec}: do not pass {', '.join(sorted(reserved))}; the model comes from the judge "
                f"and eps from the threat model"
            )
        self.kwargs = dict(kwargs)
        names, var_keyword = _accepted(self._class())
        unknown = set(self.kwargs) - names
        if unknown and not var_keyword:
            raise UnknownAttack(
                f"{spec} does not accept {', '.join(sorted(unknown))}; its arguments: {', '.join(sorted(names))}"
            )

    def _class(self) -> type:
        return attack_class(self.library, self.attack_name)

    def config(self) -> dict[str, Any]:
        config = super().config()
        config.update(
            {
                f"kwarg_{key}": value
                for key, value in self.kwargs.items()
                if isinstance(value, (int, float, str, bool, type(None)))
            }
        )
        return config

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        """x: (n, C, H, W) within threat.bounds; y: (n,). Returns the library's adversarial images."""
        norm = declared_norm(self.library, self.attack_name)
        if norm is not None and norm != threat.norm:
            log.warning(
                "%s works in %s but the threat model is %s; the judge projects its output", self.name, norm, threat
            )
        # torchattacks puts a model found in training mode back into it afterwards and foolbox warns about one;
        # the counting wrapper starts in training mode (the defense inside is always in eval).
        model.eval()
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if self.library == "torchattacks":
                x_adv = self._torchattacks(model, x, y, threat)
            else:
                x_adv = self._foolbox(model, x, y, threat)
        return AttackOutput(x_adv=x_adv.detach())

    def _torchattacks(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
        cls = self._class()
        names, _ = _accepted(cls)
        kwargs = dict(self.kwargs)
        if "eps" in names:
            if threat.unbounded:
                raise ValueError(f"{self.name} needs a finite eps; the threat model is {threat}")
            kwargs["eps"] = threat.eps
            if "alpha" in names and "alpha" not in kwargs:
                constructor = cls.__init__  # type: ignore[misc]  # cls is the class itself, not an instance
                steps = kwargs.get("steps", inspect.signature(constructor).parameters.get("steps"))
                steps = steps.default if isinstance(steps, inspect.Parameter) else steps
                if isinstance(steps, int) and steps > 0:
                    kwargs["alpha"] = 2.5 * threat.eps / steps
                    log.debug("%s: alpha = 2.5 * eps / steps = %g", self.name, kwargs["alpha"])
        else:
            log.info("%s takes no eps; the judge projects its output into %s", self.name, threat)
        if threat.bounds != (0.0, 1.0):
            log.warning("torchattacks assumes inputs in [0, 1]; the threat model's bounds are %s", threat.bounds)
        attack = cls(model, **kwargs)
        return attack(x, y)

    def _foolbox(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
        fb = import_foolbox()
        fmodel = fb.PyTorchModel(model, bounds=threat.bounds, device=x.device)
        attack = self._class()(**self.kwargs)
        if threat.unbounded and not isinstance(attack, fb.attacks.base.MinimizationAttack):
            raise ValueError(f"{self.name} is a fixed-epsilon attack and needs a finite eps; the threat is {threat}")
        epsilons = None if threat.unbounded else threat.eps
        _, clipped, _ = attack(fmodel, x, y, epsilons=epsilons)
        return clipped

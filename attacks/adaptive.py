"""Attacks that follow MeanSparse's mechanism, not only around it (Tramer et al. 2020, "On adaptive attacks").

MeanSparse snaps each feature within alpha * std of its channel mean onto the mean: inside that dead zone the exact
gradient is 0 (the forward jumps by alpha * std at its edge). BPDA (Athalye et al. 2018) replaces the backward;
the three attacks here use what the mechanism itself offers instead:

    apgd-continuation-linear     threshold continuation (homotopy): APGD-CE on the model with every MeanSparse
    apgd-continuation-geometric  threshold scaled by s_k, s_0 = 0 (the undefended base, exactly) up to s = 1 (the
                                 defense), warm-starting each stage from the previous one's point, so the iterate
                                 tracks the adversarial region while the dead zone grows. Linear: s_k = k/(S-1);
                                 geometric: 0, then 2^-(S-2), ..., 1/2, 1. Input pixels the grown zone newly
                                 swallows are moved to its edge before a stage (a zone on the input itself). A last
                                 stage of `finish` iterations at the real thresholds takes the straight-through
                                 backward (exact forward), warm-started from the continuation's point: inside the
                                 zone the exact gradient is 0 and nothing else pulls a swallowed feature out.
    apgd-anneal                  annealed surrogate: APGD-CE through the smooth dead zone (defenses/meansparse.py)
                                 at temperatures lowered geometrically from T = 1 to 0.01 over the stages; the
                                 forward is the exact one throughout.
    apgd-escape                  dead-zone escape loss: the margin loss plus `weight` times the mean (normalised)
                                 distance by which MeanSparse's inputs sit inside their dead zone, the weight
                                 lowered linearly to 0 over the stages, so the exact gradients come alive first and
                                 the last stage climbs the margin alone. Takes +bpda modifiers like APGD.

Budgets (attacks/names.py): `stages` (S), `iters` (APGD iterations per stage), `restarts` (the whole schedule again
from a new random start, on the samples still robust), for the continuation `finish` (the straight-through stage's
iterations, 50 by default; 0: none, the continuation as first built) and for apgd-escape `weight`.

Changed in issue 28's second round (docs/mechanism-attacks.md has the numbers): the continuation alone did not reach
BPDA on a model masked beyond doubt (a dead zone on the input pixels: 135 of 200 robust against BPDA's 128); with the
edge move and the straight-through finish it reaches it (128).

Every stage is one run of pyautoattack's APGD (`attack_single_run` with `x_init`: its step-size schedule,
momentum and checkpoints unchanged), warm-started from the previous stage's highest-loss point. A loss of our own
reaches upstream's APGD through its `is_tf_model` path, the one hook it offers for it: the model object returns
(logits, per-sample loss, input gradient). Each stage's points are scored on the defense as it is (real thresholds,
exact forward) and the best per sample is proposed; the judge re-scores it on the exact forward regardless.

Thresholds changed by a continuation stage are restored bit for bit when the stage ends, also on an exception
(`scaled_thresholds`): the judge, which scores after the attack returns, only ever sees the real ones.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attacks.base import Attack, AttackOutput
from attacks.catalog import register
from attacks.losses import margin
from attacks.threat_model import ThreatModel
from defenses.meansparse import MeanSparse, channel_view, meansparse_layers
from defenses.protocol import Defense

log = logging.getLogger(__name__)

SCHEDULES = ("linear", "geometric")
T_START, T_END = 1.0, 0.01  # the annealed surrogate's temperatures (in units of each channel's std)

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, y) -> per-sample loss, higher = better


def threshold_scales(schedule: str, stages: int) -> list[float]:
    """The factor each continuation stage multiplies every MeanSparse threshold by: 0 first, 1 last."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")
    if stages < 2:
        raise ValueError(f"a continuation needs at least 2 stages (the base and the defense), not {stages}")
    if schedule == "linear":
        return [k / (stages - 1) for k in range(stages)]
    return [0.0] + [2.0 ** -(stages - 1 - k) for k in range(1, stages)]


def anneal_temperatures(stages: int) -> list[float]:
    """Geometric from T_START to T_END over `stages` (one stage: T_END alone)."""
    if stages < 1:
        raise ValueError(f"annealing needs at least 1 stage, not {stages}")
    if stages == 1:
        return [T_END]
    return [T_START * (T_END / T_START) ** (k / (stages - 1)) for k in range(stages)]


@contextmanager
def scaled_thresholds(model: nn.Module, scale: float) -> Iterator[list[tuple[str, MeanSparse]]]:
    """Inside the block every MeanSparse threshold of `model` is `scale` times its own (0: the base model exactly,
    since the operator then passes x through); restored bit for bit on exit, exception or not."""
    layers = meansparse_layers(model)
    saved = [layer.threshold.detach().clone() for _, layer in layers]
    try:
        for (_, layer), threshold in zip(layers, saved):
            # scale 1 copies the saved value itself: 1.0 * t is t, but copying says so
            layer.threshold.copy_(threshold if scale == 1.0 else threshold * scale)
        yield layers
    finally:
        for (_, layer), threshold in zip(layers, saved):
            layer.threshold.copy_(threshold)


def input_layers(model: nn.Module, x: torch.Tensor) -> list[MeanSparse]:
    """The MeanSparse layers (of non-zero alpha) whose input is the model's input itself, bit for bit (e.g. at
    placement `stem.0`): one forward of `x` with hooks."""
    seen: list[MeanSparse] = []

    def check(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if inputs[0].shape == x.shape and torch.equal(inputs[0], x):
            seen.append(module)  # type: ignore[arg-type]  # a MeanSparse layer

    handles = [layer.register_forward_pre_hook(check) for _, layer in meansparse_layers(model) if layer.alpha > 0]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def defense_in(model: nn.Module) -> Defense:
    """The Defense inside the judge's wrappers (counting, EOT): the outermost one."""
    for module in model.modules():
        if isinstance(module, Defense):
            return module
    raise TypeError(f"{type(model).__name__} holds no Defense: this attack needs the defense's surrogates")


class _LossModel:
    """What pyautoattack's APGD calls on its `is_tf_model` path: (logits, per-sample loss, input gradient) of our
    loss. Forwards go through `model`, so the judge's counter counts them."""

    def __init__(self, model: nn.Module, loss: Loss) -> None:
        self.model, self.loss = model, loss

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x)

    def get_logits_loss_grad_xent(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(x)
            loss = self.loss(logits, y)
            (grad,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
        grad = torch.zeros_like(x) if grad is None else torch.nan_to_num(grad.detach())
        return logits.detach(), loss.detach(), grad


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, y, reduction="none")


@dataclass(frozen=True)
class Stage:
    """One stage of a schedule: the context its gradients are taken in, and its loss."""

    context: Callable[[], AbstractContextManager[Any]]
    loss: Loss
    describe: str
    n_iter: int | None = None  # APGD iterations of this stage; None: the attack's `iters`


class StagedAPGD(Attack):
    """APGD run stage by stage (see the module docstring); subclasses say what the stages are."""

    handles_eot = True  # pyautoattack's APGD averages gradients over eot_iter draws itself
    role = "follows MeanSparse's mechanism (attacks/adaptive.py)"

    def __init__(
        self, n_stages: int = 5, n_iter: int = 20, n_restarts: int = 1, rho: float = 0.75, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if n_stages < 1 or n_iter < 1 or n_restarts < 1:
            raise ValueError("stages, iters and restarts must be positive")
        self.n_stages, self.n_iter, self.n_restarts, self.rho = n_stages, n_iter, n_restarts, rho

    def stages(self, model: nn.Module) -> list[Stage]:
        raise NotImplementedError

    def prepare(self, model: nn.Module) -> AbstractContextManager[Any]:
        """A context held for the whole attack (e.g. feature hooks)."""
        return nullcontext()

    def warm_start(
        self, model: nn.Module, k: int, start: torch.Tensor, x: torch.Tensor, threat: ThreatModel
    ) -> torch.Tensor:
        """Stage k's starting point from the previous stage's (the random start for stage 0); as is by default."""
        return start

    def _apgd(self, model: nn.Module, stage: Stage, threat: ThreatModel, seed: int, x: torch.Tensor) -> Any:
        from pyautoattack.autopgd_base import APGDAttack

        apgd = APGDAttack(
            _LossModel(model, stage.loss),
            n_iter=stage.n_iter or self.n_iter,
            norm=threat.norm,
            n_restarts=1,
            eps=threat.eps,
            seed=seed,
            loss="ce",
            eot_iter=self.eot,
            rho=self.rho,
            verbose=False,
            device=x.device,
            is_tf_model=True,
            logger=logging.getLogger("auto-attack"),
        )
        apgd.init_hyperparam(x)
        return apgd

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int
    ) -> AttackOutput:
        if threat.unbounded:
            raise ValueError(f"{self.name} runs APGD, which needs a finite eps")
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            best_margin = margin(model(x), y)
        best = x.clone()
        with self.prepare(model):
            stages = self.stages(model)
            stage_broke = [0] * len(stages)
            for restart in range(self.n_restarts):
                index = (best_margin >= 0).nonzero().flatten()
                if index.numel() == 0:
                    break
                xs, ys = x[index], y[index]
                start = threat.project(xs + threat.random_delta(tuple(xs.shape), generator).to(xs), xs)
                for k, stage in enumerate(stages):
                    start = self.warm_start(model, k, start, xs, threat)
                    with stage.context():
                        apgd = self._apgd(model, stage, threat, seed, xs)
                        x_best, _, _, x_best_adv = apgd.attack_single_run(xs, ys, x_init=start)
                    # Both of the stage's points, scored on the defense as it is (every threshold real).
                    for candidate in (x_best_adv, x_best):
                        candidate = threat.project(candidate.detach(), xs)
                        with torch.no_grad():
                            m = margin(model(candidate), ys)
                        better = m < best_margin[index]
                        stage_broke[k] += int((better & (m < 0) & (best_margin[index] >= 0)).sum())
                        best[index[better]] = candidate[better]
                        best_margin[index[better]] = m[better]
                    start = x_best.detach()
                    log.debug(
                        "%s restart %d %s: %d of %d broken",
                        self.name,
                        restart,
                        stage.describe,
                        int((best_margin[index] < 0).sum()),
                        index.numel(),
                    )
        return AttackOutput(best, extra={"stage_broke": stage_broke})


STAGED = {"stages": "n_stages", "iters": "n_iter", "restarts": "n_restarts"}


@register("apgd-continuation-linear", {**STAGED, "finish": "n_finish"}, from_zero=("finish",), schedule="linear")
@register("apgd-continuation-geometric", {**STAGED, "finish": "n_finish"}, from_zero=("finish",), schedule="geometric")
class ThresholdContinuation(StagedAPGD):
    """Threshold continuation (homotopy) in MeanSparse's own parameter: APGD-CE with every threshold scaled from 0
    (the base model) to 1 (the defense), one warm-started stage per scale, then `n_finish` stages at the real
    thresholds with the straight-through backward (exact forward), warm-started from the continuation's point."""

    own_gradients = True

    def __init__(self, schedule: str = "linear", n_finish: int = 50, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")
        if self.surrogate != "exact":
            raise ValueError("threshold continuation takes exact gradients at every stage; no surrogate")
        if n_finish < 0:
            raise ValueError(f"finish must be 0 or more straight-through iterations, not {n_finish}")
        threshold_scales(schedule, self.n_stages)  # refuses a schedule of one stage now, not when run
        self.schedule, self.n_finish = schedule, n_finish
        self.name = f"apgd-continuation-{schedule}"

    @property
    def gradient(self) -> str:
        return f"adaptive-continuation-{self.schedule}"

    def warm_start(
        self, model: nn.Module, k: int, start: torch.Tensor, x: torch.Tensor, threat: ThreatModel
    ) -> torch.Tensor:
        """Before continuation stage k, every input pixel that the grown dead zone newly swallows (inside it at
        scale s_k, outside it at s_(k-1)) is moved to the zone's nearest edge, where the forward is (almost) the
        value the previous stage left it at: the exact gradient inside the zone is 0, so nothing else would pull it
        out again (measured in docs/mechanism-attacks.md). Only MeanSparse layers applied to the input itself."""
        scales = threshold_scales(self.schedule, self.n_stages)
        if k == 0 or k >= len(scales):
            return start
        layers = input_layers(model, start)
        if not layers:
            return start
        result = start.clone()
        low, high = threat.bounds
        for layer in layers:
            mean = channel_view(layer.running_mean, start, layer.layout)
            std = torch.sqrt(channel_view(layer.running_var, start, layer.layout))
            crop, previous = layer.threshold * scales[k] * std, layer.threshold * scales[k - 1] * std
            offset = result - mean
            swallowed = (offset.abs() < crop) & (offset.abs() >= previous)
            edge = crop * (1 + 1e-3) + 1e-6  # just outside: the forward passes x through from |x - mean| >= crop
            up, down = mean + edge, mean - edge
            reach_up = (up <= x + threat.eps) & (up <= high)
            reach_down = (down >= x - threat.eps) & (down >= low)
            # its own side first, the other one if that is out of reach
            side_up = torch.where(offset >= 0, reach_up | ~reach_down, reach_up & ~reach_down)
            pushed = torch.where(side_up, up, down)
            result = torch.where(swallowed & (reach_up | reach_down), pushed, result)
        return threat.project(result, x)

    def stages(self, model: nn.Module) -> list[Stage]:
        if not meansparse_layers(model):
            raise TypeError(f"{self.name} needs a model with MeanSparse layers (thresholds to continue in)")
        continuation = [
            Stage(functools.partial(scaled_thresholds, model, s), cross_entropy, f"thresholds x{s:g}")
            for s in threshold_scales(self.schedule, self.n_stages)
        ]
        if not self.n_finish:
            return continuation
        # Where the dead zone swallowed a feature the continuation had moved (on input pixels it does: measured in
        # docs/mechanism-attacks.md), the exact gradient is 0 there and cannot pull it out; the straight-through
        # backward can, from the continuation's point instead of a random one.
        defense = defense_in(model)
        if "identity" not in defense.surrogates:
            raise TypeError(
                f"{self.name}@finish needs a straight-through surrogate; {defense.description} offers "
                f"{defense.surrogates} (finish=0 runs the continuation alone)"
            )
        return continuation + [
            Stage(functools.partial(defense.surrogate, "identity"), cross_entropy, "straight-through", self.n_finish)
        ]


@register("apgd-anneal", STAGED)
class AnnealedSurrogate(StagedAPGD):
    """APGD-CE through the smooth surrogate, its temperature lowered from T_START to T_END over the stages."""

    name = "apgd-anneal"
    own_gradients = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.surrogate != "exact":
            raise ValueError("the annealed surrogate sets its own (smooth) backward; no other surrogate")

    @property
    def gradient(self) -> str:
        return "bpda-smooth-anneal"

    def stages(self, model: nn.Module) -> list[Stage]:
        defense = defense_in(model)
        if "smooth" not in defense.surrogates:
            raise TypeError(f"{self.name} needs a smooth surrogate; {defense.description} offers {defense.surrogates}")
        return [
            Stage(functools.partial(defense.surrogate, "smooth", t), cross_entropy, f"T={t:.3g}")
            for t in anneal_temperatures(self.n_stages)
        ]


@register("apgd-escape", {**STAGED, "weight": "weight"}, fractional=("weight",))
class DeadZoneEscape(StagedAPGD):
    """APGD on the margin loss plus `weight` x (how far, on average, MeanSparse's inputs sit inside their dead
    zone, in units of the zone's half-width, between -1 and 0), the weight lowered linearly to 0 at the last
    stage. Inside the zone the exact gradient of the margin is 0; the escape term's gradient is not (it is taken
    on the operator's input), so it moves those features towards the zone's edge, where the margin's gradient
    comes alive."""

    name = "apgd-escape"

    def __init__(self, weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not weight > 0:
            raise ValueError(f"weight must be > 0, not {weight}")
        self.weight = float(weight)
        self._features: list[tuple[MeanSparse, torch.Tensor]] = []

    def weights(self) -> list[float]:
        if self.n_stages == 1:
            return [self.weight]
        return [self.weight * (1 - k / (self.n_stages - 1)) for k in range(self.n_stages)]

    @contextmanager
    def prepare(self, model: nn.Module) -> Iterator[None]:
        layers = [layer for _, layer in meansparse_layers(model) if layer.alpha > 0]
        if not layers:
            raise TypeError(f"{self.name} needs a model with MeanSparse layers of non-zero alpha")

        def keep(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            if torch.is_grad_enabled():  # the loss's forwards; not the no-grad scoring of candidates
                self._features.append((module, inputs[0]))  # type: ignore[arg-type]  # a MeanSparse layer

        handles = [layer.register_forward_pre_hook(keep) for layer in layers]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._features = []

    def escape(self, n: int) -> torch.Tensor:
        """Per sample: the mean over layers of the mean over features of min(|x - mean| / crop - 1, 0)."""
        terms = []
        for layer, x in self._features:
            mean = channel_view(layer.running_mean, x, layer.layout)
            crop = (layer.threshold * torch.sqrt(channel_view(layer.running_var, x, layer.layout))).clamp_min(1e-12)
            inside = ((x - mean).abs() / crop - 1).clamp(max=0)
            terms.append(inside.reshape(len(x), -1).mean(1))
        self._features = []
        return torch.stack(terms).mean(0) if terms else torch.zeros(n)

    def stages(self, model: nn.Module) -> list[Stage]:
        def loss_with(weight: float) -> Loss:
            def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                escape = self.escape(len(y)).to(logits)
                return -margin(logits, y) + weight * escape

            return loss

        return [Stage(nullcontext, loss_with(w), f"escape weight {w:g}") for w in self.weights()]


__all__ = [
    "AnnealedSurrogate",
    "DeadZoneEscape",
    "SCHEDULES",
    "StagedAPGD",
    "ThresholdContinuation",
    "anneal_temperatures",
    "defense_in",
    "scaled_thresholds",
    "threshold_scales",
]

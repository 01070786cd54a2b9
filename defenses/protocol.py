"""The Defense protocol: what the attack zoo and the diagnostics see of a defended model.

A Defense is an `nn.Module` whose forward is the *exact* defended forward (logits, images in [0, 1], NCHW),
plus `surrogate(name)`, a context in which the same forward values carry a surrogate backward (BPDA).
Success is always judged on the exact forward; a surrogate only changes how gradients are taken.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from defenses.ensemble import ENSEMBLE, ensemble_forward, with_ensemble
from defenses.gradient_mode import DEFAULT_TEMPERATURE, gradient_mode
from defenses.meansparse import meansparse_layers

if TYPE_CHECKING:
    from defenses.auto_bpda import ScanResult
    from defenses.test_time import ForwardTrace

log = logging.getLogger(__name__)


class Defense(nn.Module):
    """Base adapter. Subclasses set `surrogates`, `randomized`, and describe themselves."""

    surrogates: tuple[str, ...] = ("exact",)
    randomized: bool = False  # declared by the defense
    randomness_found: bool = False  # set by the audit when the forward turns out random though undeclared
    bounds: tuple[float, float] = (0.0, 1.0)

    def __init__(self, model: nn.Module, num_classes: int = 10, name: str = "model") -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.name = name
        self.train(False)  # the wrapper's own flag too, not only the wrapped model's

    @property
    def description(self) -> str:
        return f"{type(self).__name__} around {type(self.model).__name__}"

    @property
    def device(self) -> torch.device:
        tensor: torch.Tensor | None = next(self.model.parameters(), None)
        if tensor is None:
            tensor = next(self.model.buffers(), torch.empty(0))
        return tensor.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @contextmanager
    def surrogate(self, name: str = "exact", temperature: float | None = None) -> Iterator[Defense]:
        """Inside the block, backward follows surrogate `name`; forward values are unchanged.

        `ensemble` (offered with identity and smooth) averages the gradients of identity and of smooth at every
        temperature of the sweep (defenses/ensemble.py); its `temperature` is unused."""
        if name not in self.surrogates:
            raise ValueError(f"{self.description} has no surrogate {name!r}; it offers {self.surrogates}")
        if name == ENSEMBLE:
            with ensemble_forward(self):
                yield self
            return
        with self._surrogate_context(name, temperature):
            yield self

    def _surrogate_context(self, name: str, temperature: float | None) -> AbstractContextManager[Any]:
        return nullcontext()

    @contextmanager
    def frozen(self) -> Iterator[Defense]:
        """Inside the block no parameter asks for a gradient: attacks and probes need input gradients only, and a
        library that calls `loss.backward()` (pyautoattack's FAB does) would otherwise also compute every weight
        gradient and add it to `.grad`. Input gradients and forward values are unchanged."""
        trainable = [p for p in self.parameters() if p.requires_grad]
        for parameter in trainable:
            parameter.requires_grad_(False)
        try:
            yield self
        finally:
            for parameter in trainable:
                parameter.requires_grad_(True)

    def reseed(self, seed: int) -> None:
        """Fix the randomness of the next forwards. A randomized defense with a generator of its own overrides
        this; one declared randomized without one is assumed to draw from torch's global generator."""
        if self.random_forward:
            torch.manual_seed(seed)

    @property
    def random_forward(self) -> bool:
        """Whether attacks need EOT and scoring needs several draws: declared, or found by the audit."""
        return self.randomized or self.randomness_found

    def base_model(self) -> nn.Module | None:
        """The same model without its defense, for transfer attacks and the gain table; None when there is none."""
        return None

    def train(self, mode: bool = True) -> Defense:
        # A defense is always evaluated in eval mode; `train()` would change BatchNorm and the results.
        return super().train(False)


class Undefended(Defense):
    """A plain model: exact gradients only."""


class OpaqueModel(Defense):
    """A user's own module the suite knows nothing about; automatic BPDA where it needs one.

    The first forward keeps a few inputs (`example_input`); `scan()` then runs one forward under a recording
    mode (defenses/auto_bpda.py). If the model applies any non-differentiable operation on its input's path
    (rounding, comparisons cast to masks, top-k masks, detach, ...), it offers the surrogates `identity`,
    `smooth` and their `ensemble` (automatic BPDA, exact forward), so `apgd-ce+bpda-identity` etc. work on it
    unchanged.

    A forward that runs its own optimisation (`torch.autograd.grad` inside, defenses/test_time.py) is a test-time
    defense: it also offers `unrolled` (the full gradient through its steps), and `base_model()` is the static model
    it wraps (traced, or given with `static_model`), which the standard attacks transfer from.
    """

    EXAMPLES = 4

    def __init__(self, model: nn.Module, num_classes: int = 10, name: str = "model") -> None:
        super().__init__(model, num_classes, name)
        self.example_input: torch.Tensor | None = None
        self.scan_result: ScanResult | None = None  # set once scanned
        self.trace_result: ForwardTrace | None = None  # set once traced (defenses/test_time.py)
        self.static_model: nn.Module | None = None  # given explicitly (--static-model), else traced
        self._mode, self._temperature = "exact", DEFAULT_TEMPERATURE

    def scan(self, x: torch.Tensor | None = None) -> ScanResult | None:
        """Which non-differentiable operations the model applies to its input (cached after the first call)."""
        from defenses.auto_bpda import ScanResult, scan_model

        if x is not None:
            self.example_input = x[: self.EXAMPLES].detach().clone()
        if self.scan_result is None and self.example_input is not None:
            try:
                self.scan_result = scan_model(self.model, self.example_input)
            except Exception as error:  # noqa: BLE001 - a model the mode cannot run keeps its exact gradients
                log.warning("automatic BPDA cannot scan %s (%s: %s); exact gradients only", type(self.model).__name__,
                            type(error).__name__, error)
                self.scan_result = ScanResult([], error=f"{type(error).__name__}: {error}")
        return self.scan_result

    def trace(self) -> ForwardTrace | None:
        """What one forward does (autograd calls inside, the static model it wraps); cached, None before any input."""
        from defenses.test_time import ForwardTrace, trace_forward

        if self.trace_result is None and self.example_input is not None:
            try:
                self.trace_result = trace_forward(self.model, self.example_input)
            except Exception as error:  # noqa: BLE001 - a forward the hooks cannot follow is treated as static
                log.warning("cannot trace the forward of %s (%s: %s)", type(self.model).__name__,
                            type(error).__name__, error)
                self.trace_result = ForwardTrace(0, None, 0)
        return self.trace_result

    @property
    def test_time(self) -> bool:
        """Whether the forward runs its own optimisation (a test-time defense)."""
        trace = self.trace()
        return trace is not None and trace.test_time

    @property
    def surrogates(self) -> tuple[str, ...]:  # type: ignore[override]  # a class attribute on Defense
        from defenses.auto_bpda import AUTO_SURROGATES
        from defenses.test_time import UNROLLED

        result = self.scan()
        offered = with_ensemble(AUTO_SURROGATES) if result is not None and result.replacements else ("exact",)
        return (*offered, UNROLLED) if self.test_time else offered

    @property
    def description(self) -> str:
        result = self.scan()
        if result is not None and result.replacements:
            text = f"user module {type(self.model).__name__} (opaque; automatic BPDA for {result.summary()})"
        else:
            text = f"user module {type(self.model).__name__} (opaque: exact gradients only)"
        trace = self.trace()
        if trace is not None and trace.test_time:
            from defenses.test_time import KIND

            static = "given" if self.static_model is not None else (trace.static_path or "not found")
            text += (f"; {KIND}: {trace.autograd_calls} autograd call(s) per forward, static model {static}, "
                     f"~{trace.passes_per_forward:g} passes of it per forward")
        return text

    def base_model(self) -> nn.Module | None:
        """A test-time defense's static model (given, or the classifier its forward applies to its output)."""
        if not self.test_time:
            return None
        if self.static_model is not None:
            return self.static_model
        from defenses.test_time import submodule

        trace = self.trace()
        return submodule(self.model, trace.static_path) if trace is not None and trace.static_path else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.example_input is None:
            self.example_input = x[: self.EXAMPLES].detach().clone()
        if self._mode == "exact":
            return self.model(x)
        from defenses.test_time import UNROLLED, Unrolled

        if self._mode == UNROLLED:  # the full gradient through the forward's own optimisation steps
            with Unrolled():
                return self.model(x)
        from defenses.auto_bpda import AutoBPDA

        # The mode is active only during the model's own forward, never around the attack's code.
        with AutoBPDA(self._mode, self._temperature):
            return self.model(x)

    @contextmanager
    def _surrogate_context(self, name: str, temperature: float | None) -> Iterator[None]:
        old = self._mode, self._temperature
        self._mode, self._temperature = name, DEFAULT_TEMPERATURE if temperature is None else temperature
        try:
            yield
        finally:
            self._mode, self._temperature = old


class MeanSparseDefense(Defense):
    """A model containing MeanSparse layers: exact, straight-through (identity), smooth and ensemble surrogates."""

    surrogates = with_ensemble(("exact", "identity", "smooth"))

    def __init__(self, model: nn.Module, num_classes: int = 10, name: str = "model") -> None:
        super().__init__(model, num_classes, name)
        self.layers = meansparse_layers(model)
        if not self.layers:
            raise ValueError("MeanSparseDefense needs a model with MeanSparse layers")

    @property
    def alpha(self) -> float:
        return self.layers[0][1].alpha

    @property
    def description(self) -> str:
        return f"MeanSparse (alpha={self.alpha:g}, {len(self.layers)} layers) in {type(self.model).__name__}"

    def base_model(self) -> nn.Module:
        """The same network with every MeanSparse threshold at 0 (the operator then passes x through)."""
        from defenses.calibrate import set_alpha

        return set_alpha(copy.deepcopy(self.model), 0.0).eval()

    def _surrogate_context(self, name: str, temperature: float | None) -> AbstractContextManager[Any]:
        return gradient_mode(self.model, name, DEFAULT_TEMPERATURE if temperature is None else temperature)


class _StraightThroughRound(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, levels: int) -> torch.Tensor:
        return torch.round(x * levels) / levels

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class InputQuantization(Defense):
    """Bit-depth reduction of the input: exact gradients are zero almost everywhere; `identity` is BPDA."""

    surrogates = ("exact", "identity")

    def __init__(self, model: nn.Module, bits: int = 3, num_classes: int = 10, name: str = "model") -> None:
        super().__init__(model, num_classes, name)
        self.levels = 2**bits - 1
        self.bits = bits
        self._mode = "exact"

    @property
    def description(self) -> str:
        return f"input quantization to {self.bits} bits before {type(self.model).__name__}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._mode == "identity":
            return self.model(_StraightThroughRound.apply(x, self.levels))
        return self.model(torch.round(x * self.levels) / self.levels)

    @contextmanager
    def _surrogate_context(self, name: str, temperature: float | None) -> Iterator[None]:
        old, self._mode = self._mode, name
        try:
            yield
        finally:
            self._mode = old


class RandomNoise(Defense):
    """Gaussian noise added to the input at every forward: randomized, so attacks need EOT.

    The noise comes from the defense's own generator, seeded at construction, so a run is reproducible.
    """

    randomized = True

    def __init__(self, model: nn.Module, sigma: float = 0.2, seed: int = 0, num_classes: int = 10,
                 name: str = "model") -> None:
        super().__init__(model, num_classes, name)
        self.sigma = sigma
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def description(self) -> str:
        return f"Gaussian input noise (sigma={self.sigma:g}) before {type(self.model).__name__}"

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.generator).to(x.device, x.dtype)
        return self.model((x + self.sigma * noise).clamp(0, 1))


def as_defense(model: nn.Module, num_classes: int = 10, name: str = "model", opaque: bool = False) -> Defense:
    """Wrap a model in the adapter that fits it: MeanSparse layers are found automatically."""
    if isinstance(model, Defense):
        return model
    if opaque:
        return OpaqueModel(model, num_classes, name)
    if meansparse_layers(model):
        return MeanSparseDefense(model, num_classes, name)
    return Undefended(model, num_classes, name)

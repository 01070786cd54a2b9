"""A user's own module the suite knows nothing about: automatic BPDA where it needs one, and the test-time
defense's unrolled gradient where its forward runs its own optimisation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from defenses.auto_bpda import AUTO_SURROGATES, AutoBPDA, ScanResult, scan_model
from defenses.ensemble import with_ensemble
from defenses.gradient_mode import DEFAULT_TEMPERATURE
from defenses.protocol import Defense
from defenses.test_time import KIND, UNROLLED, ForwardTrace, Unrolled, submodule, trace_forward

log = logging.getLogger(__name__)


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
        if x is not None:
            self.example_input = x[: self.EXAMPLES].detach().clone()
        if self.scan_result is None and self.example_input is not None:
            try:
                self.scan_result = scan_model(self.model, self.example_input)
            except Exception as error:  # noqa: BLE001 - a model the mode cannot run keeps its exact gradients
                log.warning(
                    "automatic BPDA cannot scan %s (%s: %s); exact gradients only",
                    type(self.model).__name__,
                    type(error).__name__,
                    error,
                )
                self.scan_result = ScanResult([], error=f"{type(error).__name__}: {error}")
        return self.scan_result

    def trace(self) -> ForwardTrace | None:
        """What one forward does (autograd calls inside, the static model it wraps); cached, None before any input."""
        if self.trace_result is None and self.example_input is not None:
            try:
                self.trace_result = trace_forward(self.model, self.example_input)
            except Exception as error:  # noqa: BLE001 - a forward the hooks cannot follow is treated as static
                log.warning(
                    "cannot trace the forward of %s (%s: %s)", type(self.model).__name__, type(error).__name__, error
                )
                self.trace_result = ForwardTrace(0, None, 0)
        return self.trace_result

    @property
    def test_time(self) -> bool:
        """Whether the forward runs its own optimisation (a test-time defense)."""
        trace = self.trace()
        return trace is not None and trace.test_time

    @property
    def surrogates(self) -> tuple[str, ...]:  # type: ignore[override]  # a class attribute on Defense
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
            static = "given" if self.static_model is not None else (trace.static_path or "not found")
            text += (
                f"; {KIND}: {trace.autograd_calls} autograd call(s) per forward, static model {static}, "
                f"~{trace.passes_per_forward:g} passes of it per forward"
            )
        return text

    def base_model(self) -> nn.Module | None:
        """A test-time defense's static model (given, or the classifier its forward applies to its output)."""
        if not self.test_time:
            return None
        if self.static_model is not None:
            return self.static_model
        trace = self.trace()
        return submodule(self.model, trace.static_path) if trace is not None and trace.static_path else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.example_input is None:
            self.example_input = x[: self.EXAMPLES].detach().clone()
        if self._mode == "exact":
            return self.model(x)
        if self._mode == UNROLLED:  # the full gradient through the forward's own optimisation steps
            with Unrolled():
                return self.model(x)
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

"""Test-time defenses: a forward that runs its own optimisation (purification steps on the input, entropy
minimisation: `torch.autograd.grad` inside `forward`, usually with the output detached).

Croce et al. (ICML 2022, "Evaluating the adversarial robustness of adaptive test-time defenses") attacked such
defenses in two ways that this module makes available to the suite:

1. **The static model inside.** `trace_forward` runs one forward with a forward hook on every submodule and an
   autograd counter: the outermost submodule whose output *is* the forward's final output is the classifier the
   defense wraps (its static model). It becomes `OpaqueModel.base_model()`, so the standard attacks crafted on it
   transfer to the defense (`transfer-base:...`), judged, as always, on the defense's exact forward.
2. **The full gradient through the unrolled steps.** Inside `Unrolled()` every `torch.autograd.grad` of the
   forward keeps its graph (`create_graph=True`), and `detach()` / `.data` on a tensor that depends on the input
   becomes a copy that keeps its history, so the defense's output is a differentiable function of the input
   through all its purification steps (second-order terms included). Forward values are unchanged: the same
   operations on the same values; only what autograd records differs. This is the defense's surrogate `unrolled`
   (`apgd-ce+unrolled`). A forward that calls `loss.backward()` and reads `.grad` is not covered (its inner
   gradient lands on a leaf the mode cannot see); the planner then finds that no gradient reaches the input
   through `unrolled` and lists those attacks as not applicable.

Why a TorchFunctionMode: `torch.autograd.grad`, `detach` and `requires_grad_` all pass through
`__torch_function__` (also when the user imported `grad` by name), and the mode is entered only around the
model's own forward (`OpaqueModel.forward`), never around the attack, whose own detaches must stay detaches.
Memory grows with the number of steps (each step's double-backward graph is kept); checkpointing is left to a
defense that needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

log = logging.getLogger(__name__)

UNROLLED = "unrolled"
KIND = "test-time optimisation inside forward"
_GRADS = {"grad", "backward"}
_DETACHES = {"detach", "detach_"}
_ZERO_DERIVATIVE = {"sign", "sgn"}  # e.g. the signed step of a PGD-style purifier


@dataclass(frozen=True)
class ForwardTrace:
    """What one traced forward did: autograd calls, the static model found, and what one forward costs."""

    autograd_calls: int  # torch.autograd.grad / backward calls inside one forward
    static_path: str | None  # dotted name of the static model inside (None: not found)
    static_calls: int  # how often the static model ran in that forward
    modules_called: dict[str, int] = field(default_factory=dict)  # top-level submodules -> calls

    @property
    def test_time(self) -> bool:
        return self.autograd_calls > 0

    @property
    def passes_per_forward(self) -> float:
        """Static-model passes one forward of the defense costs: its forwards plus one backward per autograd call
        (a backward costs about as much as a forward, a conservative count for the budget)."""
        return float(max(self.static_calls, 1) + self.autograd_calls)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND if self.test_time else None,
            "autograd_calls": self.autograd_calls,
            "static_model": self.static_path,
            "static_calls": self.static_calls,
            "passes_per_forward": self.passes_per_forward,
        }


class _CountAutograd(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        if getattr(func, "__name__", "") in _GRADS:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def trace_forward(model: nn.Module, x: torch.Tensor) -> ForwardTrace:
    """One forward of `model` on `x` under `torch.no_grad` (as the judge scores), with every submodule's calls and
    last output recorded, and autograd calls counted.

    The static model is the outermost submodule (shortest dotted name) whose last output equals the final output
    exactly and whose input had x's shape: the classifier the forward applied to the purified input. Among
    several such (a wrapper around the classifier, the classifier's last layer), the outermost is the whole
    classifier."""
    calls: dict[str, int] = {}
    last: dict[str, tuple[torch.Size | None, torch.Tensor | None]] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            shape = inputs[0].shape if inputs and isinstance(inputs[0], torch.Tensor) else None
            last[name] = (shape, output.detach() if isinstance(output, torch.Tensor) else None)

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in model.named_modules() if name]
    counter = _CountAutograd()
    try:
        with torch.no_grad(), counter:
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    final = out.detach() if isinstance(out, torch.Tensor) else None
    matches = [
        name
        for name, (shape, value) in last.items()
        if final is not None
        and value is not None
        and shape == x.shape
        and value.shape == final.shape
        and torch.equal(value, final)
    ]
    static = min(matches, key=lambda name: (name.count("."), name), default=None)
    top = {name: count for name, count in calls.items() if "." not in name}
    return ForwardTrace(counter.calls, static, calls.get(static, 0) if static else 0, top)


def submodule(model: nn.Module, path: str) -> nn.Module:
    """`model`'s submodule at dotted `path` (KeyError with the available names when there is none)."""
    modules = dict(model.named_modules())
    if path not in modules or not path:
        names = ", ".join(n for n in modules if n and "." not in n)
        raise KeyError(f"{type(model).__name__} has no submodule {path!r}; its submodules: {names}")
    return modules[path]


class Unrolled(TorchFunctionMode):
    """`with Unrolled():` around a forward that optimises its input: inner gradients keep their graph, detaches keep
    their history, so autograd differentiates through every step. Forward values are those of the plain forward."""

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name == "__get__" and getattr(getattr(func, "__self__", None), "__name__", "") == "data":
            name = ".data"
        if name == "grad" and torch.is_grad_enabled():
            kwargs["create_graph"] = True  # the inner gradient is itself a function of the input
            return func(*args, **kwargs)
        if name in _DETACHES or name == ".data":
            tensor = args[0]
            if isinstance(tensor, torch.Tensor) and tensor.requires_grad and torch.is_grad_enabled():
                # Same values, history kept: a copy (so in-place edits stay local); detach_ becomes a no-op.
                return tensor if name == "detach_" else tensor.clone()
        if name in _ZERO_DERIVATIVE and args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            # Its derivative is 0 almost everywhere, so the gradient is the same without the (inner-gradient) graph
            # behind it; cutting it here spares the backward a walk through every step's double-backward graph.
            return func(args[0].detach(), *args[1:], **kwargs)
        if name == "requires_grad_" and args and isinstance(args[0], torch.Tensor) and not args[0].is_leaf:
            return args[0]  # a "detached" copy asks for gradients: it already carries them, through its history
        return func(*args, **kwargs)


__all__ = ["ForwardTrace", "KIND", "UNROLLED", "Unrolled", "submodule", "trace_forward"]

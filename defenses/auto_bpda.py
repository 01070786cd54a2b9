"""Automatic BPDA for models the suite cannot see inside: exact forward, surrogate backward, no names needed.

While `AutoBPDA(surrogate, temperature)` is active, the non-differentiable operations a model applies to tensors
that depend on its input get a surrogate backward (Athalye et al. 2018), and every forward value stays the one
the operation itself computed (each replaced result is the operation's own output tensor, wrapped in an autograd
Function whose backward is the surrogate's; tests/test_auto_bpda.py checks the logits bit for bit):

    round, floor, ceil, trunc, fix (and their in-place forms), casts of a float to an integer dtype
        identity: straight-through (derivative 1);  smooth: sigmoid bumps of width T at each step
    sign
        identity: straight-through;  smooth: tanh(x / (T * rms(x)))
    comparisons gt/ge/lt/le (`x > t`) and what is built from their masks: casts to float, arithmetic, stacking,
    ~, &, |, `torch.where(mask, a, b)`, `masked_fill`
        the mask m = step(z) with the margin z (e.g. x - t) becomes a "shadow" float:
        identity: straight-through on z;  smooth: sigmoid(z / (T * rms(z))), per sample.
        `where`: identity sends the whole gradient to the branch that depends on the input when only one does
        (a dead zone `where(|x - mean| < crop, mean, x)` becomes the identity, exactly MeanSparse's straight-
        through); when neither does (a binarizer), straight-through through the mask; smooth differentiates
        s * a + (1 - s) * b, which for a dead zone is MeanSparse's smooth surrogate.
    one_hot(argmax(x)), scatter of ones at topk(x) indices (k-WTA written with indices)
        identity: softmax(x / rms(x)) resp. a straight-through mask;  smooth: the same at temperature T
    detach() and .data on tensors that depend on the input
        identity and smooth: the gradient passes through (the detach is a surrogate's identity)

Why a TorchFunctionMode and not an FX / torch.export pass: user models rarely trace (data-dependent Python,
in-place ops, `.data`), while every tensor operation, method and property still passes through
`__torch_function__`. Why not a dispatch-level (TorchDispatchMode) mode: below autograd it sees aten ops after
autograd has recorded them, too late to change a backward. The mode is entered only around the model's forward
(`OpaqueModel.forward`), never around an attack, whose own `detach()` calls must stay detaches.

`scan_model(model, x)` runs one forward under the mode with a recorder and lists which operations would be
replaced, in which module, and how many calls (whether any gradient reaches the input at all is
defenses/gradient_path.py's question).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakIdKeyDictionary

log = logging.getLogger(__name__)

AUTO_SURROGATES = ("exact", "identity", "smooth")
STEPS = {"round", "floor", "ceil", "trunc", "fix"}
INPLACE_STEPS = {name + "_" for name in STEPS} | {"sign_"}
SIGNS = {"sign", "sgn"}
COMPARISONS = {
    "gt": 1,
    "greater": 1,
    "__gt__": 1,
    "ge": 1,
    "greater_equal": 1,
    "__ge__": 1,
    "lt": -1,
    "less": -1,
    "__lt__": -1,
    "le": -1,
    "less_equal": -1,
    "__le__": -1,
}
NOTS = {"logical_not", "__invert__", "bitwise_not"}
ANDS = {"logical_and", "__and__", "__rand__", "bitwise_and"}
ORS = {"logical_or", "__or__", "__ror__", "bitwise_or"}
DETACHES = {"detach", ".data"}
INT_CASTS = {"to", "long", "int", "short", "char", "byte", "type"}
INDEX_SOURCES = {"topk", "argmax", "max", "argmin", "min"}
# Operations that never need a surrogate and are too frequent to inspect (the fast path); properties other than
# `.data` (shape, dtype, grad_fn, ...) are skipped too.
_NEVER = {
    "dim",
    "size",
    "numel",
    "__len__",
    "is_floating_point",
    "__repr__",
    "__format__",
    "__bool__",
    "item",
    "tolist",
}


def _name(func: Callable[..., Any]) -> str:
    name = getattr(func, "__name__", str(func))
    if name == "__get__":  # a property, e.g. Tensor.data
        return "." + getattr(getattr(func, "__self__", None), "__name__", "?")
    return name


def _rms(z: torch.Tensor) -> torch.Tensor:
    """Per-sample root mean square (the scale a temperature is measured in), detached, broadcastable to z."""
    z = z.detach().float()
    if z.dim() < 2:
        value = z.pow(2).mean().sqrt()
    else:
        value = z.pow(2).flatten(1).mean(1).sqrt().view(-1, *([1] * (z.dim() - 1)))
    return value.clamp_min(1e-6)


class _Replace(torch.autograd.Function):
    """Forward: `exact`, the operation's own output. Backward: the gradient goes to `surrogate` instead."""

    @staticmethod
    def forward(ctx: Any, exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
        ctx.dtype = surrogate.dtype
        return exact

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, grad.to(ctx.dtype)


def replace(exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """`exact`'s values with `surrogate`'s backward (shapes must broadcast to `exact`)."""
    if surrogate.shape != exact.shape:
        surrogate = surrogate.expand(exact.shape)
    return _Replace.apply(exact.detach(), surrogate)


@dataclass(frozen=True)
class Replacement:
    """One kind of operation the mode replaced: where (module path), what, and how many calls."""

    op: str
    module: str
    calls: int

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "module": self.module, "calls": self.calls}


@dataclass
class ScanResult:
    replacements: list[Replacement]
    error: str | None = None  # why the scan could not run (then nothing is replaced)

    @property
    def ops(self) -> list[str]:
        return sorted({r.op for r in self.replacements})

    def summary(self) -> str:
        if not self.replacements:
            return "no non-differentiable operation on the input's path"
        return ", ".join(f"{r.op} x{r.calls} in {r.module or '<model>'}" for r in self.replacements)

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.replacements]


class AutoBPDA(TorchFunctionMode):
    """`with AutoBPDA("identity"):` - forward values exact, non-differentiable operations get a surrogate backward.

    surrogate: `identity` (straight-through) or `smooth` (temperature `temperature`, in units of each operation's
    own scale: the step for rounding, the per-sample rms of the margin for comparisons).
    """

    def __init__(self, surrogate: str = "identity", temperature: float = 0.1, record: bool = False) -> None:
        super().__init__()
        if surrogate not in ("identity", "smooth"):
            raise ValueError(f"automatic BPDA surrogate must be 'identity' or 'smooth', not {surrogate!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, not {temperature}")
        self.surrogate, self.temperature = surrogate, float(temperature)
        self.smooth = surrogate == "smooth"
        self.shadows: WeakIdKeyDictionary = WeakIdKeyDictionary()  # bool/int tensor -> float surrogate
        self.indices: WeakIdKeyDictionary = WeakIdKeyDictionary()  # index tensor -> (source, dim, kind, values)
        self.record = record
        self.calls: Counter[tuple[str, str]] = Counter()  # (operation, module) -> calls
        self.module_stack: list[str] = []

    # -- bookkeeping --------------------------------------------------------------------------------------------

    def _note(self, op: str) -> None:
        if self.record:
            self.calls[(op, self.module_stack[-1] if self.module_stack else "")] += 1

    def _live(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor) and (
            value.requires_grad or value in self.shadows or value in self.indices
        )

    def _shadow(self, value: Any) -> Any:
        return self.shadows.get(value, value) if isinstance(value, torch.Tensor) else value

    # -- the mode -------------------------------------------------------------------------------------------------

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = _name(func)
        if name in _NEVER or (name.startswith(".") and name != ".data") or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        flat, _ = tree_flatten((args, kwargs))
        if not any(self._live(value) for value in flat):
            return func(*args, **kwargs)
        try:
            return self._handle(func, name, args, kwargs, flat)
        except _Fallback:
            return func(*args, **kwargs)

    def _handle(
        self, func: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any], flat: list[Any]
    ) -> Any:  # noqa: C901 - one dispatch table
        if name in STEPS and _float_grad(args[0]):
            return self._step(func, name, args, kwargs)
        if name in INPLACE_STEPS and _float_grad(args[0]):
            return self._inplace_step(func, name, args, kwargs)
        if name in SIGNS and _float_grad(args[0]):
            return self._sign(func, args, kwargs)
        if name in COMPARISONS and len(args) >= 2 and not kwargs:
            return self._compare(func, name, args)
        if name in DETACHES and _float_grad(args[0]):
            self._note(name)
            return replace(func(*args, **kwargs), args[0])
        if name == "where" and len(args) >= 3 and "TensorBase" not in getattr(func, "__qualname__", ""):
            return self._where(func, args, kwargs, args[0], args[1], args[2])
        if name == "where" and len(args) >= 3:  # x.where(cond, other) == torch.where(cond, x, other)
            return self._where(func, args, kwargs, args[1], args[0], args[2])
        if name == "masked_fill" and len(args) >= 3:
            return self._where(func, args, kwargs, args[1], args[2], args[0])
        if name in NOTS | ANDS | ORS and any(self._shadowed(v) for v in args):
            return self._logic(func, name, args, kwargs)
        if name in INT_CASTS and _float_grad(args[0]):
            return self._int_cast(func, name, args, kwargs)
        if name in INDEX_SOURCES and _float_grad(args[0]):
            return self._index_source(func, name, args, kwargs)
        if name == "one_hot" and args and args[0] in self.indices:
            return self._one_hot(func, args, kwargs)
        if name in ("scatter", "scatter_") and len(args) >= 3 and args[2] in self.indices:
            return self._scatter(func, name, args, kwargs)
        if any(self._shadowed(v) for v in flat):
            return self._propagate(func, args, kwargs)
        return func(*args, **kwargs)

    def _shadowed(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor) and value in self.shadows

    # -- handlers -------------------------------------------------------------------------------------------------

    def _step_surrogate(self, name: str, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """A differentiable stand-in for a staircase on x (steps at integers of x * scale)."""
        if not self.smooth:
            return x
        u = x * scale
        # round's steps sit at half-integers; floor/ceil/trunc/integer casts step at integers.
        offset = torch.floor(u).detach() + 0.5 if name.startswith("round") else torch.round(u).detach()
        return torch.sigmoid((u - offset) / self.temperature) / scale

    def _step(self, func: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = args[0]
        scale = 10.0 ** int(kwargs.get("decimals", 0)) if name == "round" else 1.0
        with torch.no_grad():
            exact = func(*args, **kwargs)
        self._note(name)
        return replace(exact, self._step_surrogate(name, x, scale))

    def _inplace_step(self, func: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = args[0]
        before = x.clone()  # keeps x's history; x itself is about to be overwritten
        with torch.no_grad():
            func(*args, **kwargs)  # the exact in-place operation, on x
            exact = x.detach().clone()
        self._note(name)
        if name == "sign_":
            surrogate = torch.tanh(before / (self.temperature * _rms(before))) if self.smooth else before
        else:
            surrogate = self._step_surrogate(name[:-1], before)
        # Route x's gradient to the surrogate; copy_ writes the exact values back, bit for bit.
        return _copy_into(x, replace(exact, surrogate))

    def _sign(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = args[0]
        with torch.no_grad():
            exact = func(*args, **kwargs)
        self._note("sign")
        surrogate = torch.tanh(x / (self.temperature * _rms(x))) if self.smooth else x
        return replace(exact, surrogate)

    def _margin_shadow(self, exact: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The float stand-in for the mask step(z): straight-through, or a sigmoid of width T * rms(z)."""
        if z.shape != exact.shape:
            z = z.expand(exact.shape)
        if self.smooth:
            return torch.sigmoid(z / (self.temperature * _rms(z)))
        return replace(exact.to(z.dtype), z)

    def _compare(self, func: Callable[..., Any], name: str, args: tuple[Any, ...]) -> Any:
        a, b = args[0], args[1]
        exact = func(*args)
        grad = [v for v in (a, b) if isinstance(v, torch.Tensor) and v.requires_grad and v.is_floating_point()]
        if not grad or not isinstance(exact, torch.Tensor):
            return exact
        z = (a - b) if COMPARISONS[name] > 0 else (b - a)
        if not isinstance(z, torch.Tensor) or torch.broadcast_shapes(z.shape, exact.shape) != exact.shape:
            return exact
        self._note(name.strip("_"))
        self.shadows[exact] = self._margin_shadow(exact, z)
        return exact

    def _where(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], cond: Any, a: Any, b: Any
    ) -> Any:
        if not self._shadowed(cond):
            return func(*args, **kwargs)
        soft = self.shadows[cond]
        a_live = isinstance(a, torch.Tensor) and a.requires_grad
        b_live = isinstance(b, torch.Tensor) and b.requires_grad
        if not self.smooth and a_live and b_live:
            return func(*args, **kwargs)  # both branches carry gradients: the exact split is the identity
        with torch.no_grad():
            exact = func(*args, **kwargs)
        if not exact.is_floating_point():
            raise _Fallback
        self._note("where")
        if not self.smooth and a_live != b_live:
            surrogate = a if a_live else b  # the selection as if absent: e.g. a dead zone passes the gradient
        else:
            surrogate = soft * a + (1 - soft) * b
        return replace(exact, surrogate.to(exact.dtype))

    def _logic(self, func: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        exact = func(*args, **kwargs)
        floats = [
            self.shadows[v] if self._shadowed(v) else (v.float() if isinstance(v, torch.Tensor) else float(v))
            for v in args[:2]
        ]
        if name in NOTS:
            shadow = 1 - floats[0]
        elif name in ANDS:
            shadow = floats[0] * floats[1]
        else:
            shadow = floats[0] + floats[1] - floats[0] * floats[1]
        if isinstance(shadow, torch.Tensor) and shadow.shape == exact.shape:
            self.shadows[exact] = shadow
        return exact

    def _int_cast(self, func: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = args[0]
        exact = func(*args, **kwargs)
        if (
            not isinstance(exact, torch.Tensor)
            or exact.is_floating_point()
            or exact.dtype == torch.bool
            or exact.is_complex()
            or exact.shape != x.shape
        ):
            return exact
        self._note(f"cast-to-{str(exact.dtype).replace('torch.', '')}")
        self.shadows[exact] = replace(exact.to(x.dtype), self._step_surrogate("trunc", x))
        return exact

    def _index_source(self, func: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        exact = func(*args, **kwargs)
        x = args[0]
        dim = kwargs.get("dim", args[2 if name == "topk" else 1] if len(args) > (2 if name == "topk" else 1) else None)
        if name == "topk":
            dim = -1 if dim is None else dim
            largest = kwargs.get("largest", args[3] if len(args) > 3 else True)
            self.indices[exact.indices] = (x, dim % x.dim(), "topk" if largest else "bottomk", exact.values)
        elif dim is not None and isinstance(exact, torch.Tensor) and name in ("argmax", "argmin"):
            keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
            if not keep:
                self.indices[exact] = (x, dim % x.dim(), name, None)
        elif dim is not None and isinstance(exact, tuple) and hasattr(exact, "indices"):
            keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
            if not keep:
                self.indices[exact.indices] = (x, dim % x.dim(), "argmax" if name == "max" else "argmin", None)
        return exact

    def _one_hot(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        exact = func(*args, **kwargs)
        x, dim, kind, _ = self.indices[args[0]]
        if kind not in ("argmax", "argmin") or dim != x.dim() - 1 or exact.shape != x.shape:
            return exact
        self._note("one_hot(argmax)")
        logits = x if kind == "argmax" else -x
        temperature = self.temperature if self.smooth else 1.0
        self.shadows[exact] = F.softmax(logits / (temperature * _rms(logits)), dim=dim)
        return exact

    def _scatter(self, func: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        target, dim, index = args[0], args[1], args[2]
        x, source_dim, kind, values = self.indices[index]
        value: Any = args[3] if len(args) > 3 else kwargs.get("value", kwargs.get("src"))
        if isinstance(value, torch.Tensor):
            if value.numel() == 0 or not bool((value == value.flatten()[0]).all()):
                return func(*args, **kwargs)
            value = float(value.flatten()[0])
        usable = (
            kind in ("topk", "bottomk")
            and dim % target.dim() == source_dim
            and target.shape == x.shape
            and isinstance(value, (int, float))
            and target.is_floating_point()
            and not target.requires_grad
            and bool((target == 0).all())
        )
        if not usable:
            return func(*args, **kwargs)
        with torch.no_grad():
            exact = func(*args, **kwargs) if name == "scatter" else func(target.clone(), *args[1:], **kwargs)
        kth = values.narrow(source_dim, values.shape[source_dim] - 1, 1)
        z = (x - kth) if kind == "topk" else (kth - x)
        self._note("scatter(topk)")
        soft = self._margin_shadow((exact != 0), z) * value
        result = replace(exact, soft.to(exact.dtype))
        return _copy_into(target, result) if name == "scatter_" else result

    def _propagate(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Any other operation on a shadowed mask: exact on the real tensors, the same on the shadows."""
        exact = func(*args, **kwargs)
        if not isinstance(exact, torch.Tensor):
            return exact
        try:
            surrogate = func(*tree_map(self._shadow, args), **tree_map(self._shadow, kwargs))
        except Exception:  # noqa: BLE001 - an operation that has no float version keeps its exact backward
            return exact
        if (
            not isinstance(surrogate, torch.Tensor)
            or not surrogate.is_floating_point()
            or surrogate.shape != exact.shape
        ):
            return exact
        if exact.is_floating_point():
            return replace(exact, surrogate.to(exact.dtype))
        self.shadows[exact] = surrogate
        return exact


class _Fallback(Exception):
    """A handler met a case it does not cover: the operation runs as it is."""


def _float_grad(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad and value.is_floating_point()


def _copy_into(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Write `source` into `target` in place, so a caller that ignores the return value sees the result."""
    return target.copy_(source)


@contextmanager
def _module_names(model: nn.Module, mode: AutoBPDA) -> Iterator[None]:
    """Keep `mode.module_stack` on the module currently running (for the scan's "where")."""

    def enter(name: str) -> Callable[..., Any]:
        def hook(module: nn.Module, inputs: Any) -> None:
            mode.module_stack.append(name)

        return hook

    def leave(module: nn.Module, inputs: Any, output: Any) -> None:  # a hook returning a value replaces the output
        mode.module_stack.pop()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def scan_model(model: nn.Module, x: torch.Tensor) -> ScanResult:
    """One forward under a recording mode: which non-differentiable operations touch the input's path, and where."""
    mode = AutoBPDA("identity", record=True)
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), _module_names(model, mode), mode:
        model(x)
    replacements = [Replacement(op, module, calls) for (op, module), calls in mode.calls.items()]
    return ScanResult(sorted(replacements, key=lambda r: (r.module, r.op)))


__all__ = ["AUTO_SURROGATES", "AutoBPDA", "Replacement", "ScanResult", "replace", "scan_model"]

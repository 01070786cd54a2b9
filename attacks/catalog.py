"""Our attacks by name, each registered where it is defined (timm's `@register_model` is the model):

    @register("apgd-ce", {"iters": "n_iter", "restarts": "n_restarts"}, loss="ce")
    class APGD(Attack): ...

The entry holds what the name grammar (`attacks.names`) and the builder (`attacks.registry`) need: the budget keys
and the constructor argument each sets, which keys take fractions or 0, and the class, whose own attributes say
whether it takes gradients (`gradient_free`), chooses them itself (`own_gradients`) or is a transformation
(`threat_kind`). So adding an attack is one module in `attacks/` (plus its test): `entries()` imports every module
of the package once, and the module registers its attacks by being there.

A leaf: it imports nothing of ours at module level, so the grammar and every attack module can import it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class Entry:
    """One attack name: its class, the constructor arguments the name fixes, and its budget keys."""

    name: str
    cls: type
    fixed: Mapping[str, Any]
    budget: Mapping[str, str]  # budget key -> constructor argument, in canonical order
    fractional: frozenset[str] = field(default_factory=frozenset)  # keys taking any positive number
    from_zero: frozenset[str] = field(default_factory=frozenset)  # whole-number keys for which 0 is a real choice

    def build(self, **kwargs: Any) -> Any:
        return self.cls(**self.fixed, **kwargs)

    @property
    def gradient_free(self) -> bool:  # a surrogate backward (+bpda) would change nothing, so it is refused
        return bool(getattr(self.cls, "gradient_free", False))

    @property
    def own_gradients(self) -> bool:  # a +bpda modifier would contradict the attack's own schedule of backwards
        return bool(getattr(self.cls, "own_gradients", False))

    @property
    def role(self) -> str | None:  # what it is for, in a few words, for the report's "why"
        return getattr(self.cls, "role", None)

    @property
    def transformation(self) -> bool:  # its threat is a transformation the judge re-applies, not an Lp ball
        return getattr(self.cls, "threat_kind", "lp") != "lp"


_ENTRIES: dict[str, Entry] = {}
_discovered = False


def register(
    name: str,
    budget: Mapping[str, str] | None = None,
    *,
    fractional: tuple[str, ...] = (),
    from_zero: tuple[str, ...] = (),
    **fixed: Any,
) -> Callable[[T], T]:
    """Class decorator: `name` builds `cls(**fixed, **kwargs)`; `budget` maps its `@KEY=VALUE` keys to constructor
    arguments. Stack it to give one class several names (APGD with each loss)."""

    def decorate(cls: T) -> T:
        if name in _ENTRIES and _ENTRIES[name].cls is not cls:
            raise ValueError(f"attack {name!r} is registered twice ({_ENTRIES[name].cls.__name__}, {cls.__name__})")
        keys = dict(budget or {})
        unknown = (set(fractional) | set(from_zero)) - set(keys)
        if unknown:
            raise ValueError(f"attack {name!r}: {sorted(unknown)} are not among its budget keys {sorted(keys)}")
        _ENTRIES[name] = Entry(name, cls, dict(fixed), keys, frozenset(fractional), frozenset(from_zero))
        return cls

    return decorate


def entries() -> dict[str, Entry]:
    """Every registered attack, by name, in the order the grammar lists them."""
    global _discovered
    if not _discovered:
        import attacks

        for module in pkgutil.iter_modules(attacks.__path__):
            importlib.import_module(f"attacks.{module.name}")
        _discovered = True
    return dict(sorted(_ENTRIES.items()))

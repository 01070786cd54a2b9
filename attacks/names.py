"""Attack names: one grammar, parsed and formatted here, so a stored result names an attack that can be re-run.

    NAME      := [transfer-base:]BASE[+bpda-identity | +bpda-smooth[-T<t>] | +bpda-ensemble | +unrolled][+eot<K>]
                 [+survivors][@KEY=VALUE,...]
    examples:    apgd-ce    apgd-ce+eot20    apgd-t+bpda-smooth-T0.03@iters=500,restarts=5    apgd-dlr+bpda-ensemble
                 square@queries=20000,restarts=3    square+eot20    square+survivors@restarts=5
                 torchattacks:PGD@steps=20    transfer-base:apgd-ce
                 apgd-continuation-linear@stages=5,iters=20    apgd-anneal    apgd-escape+bpda-identity@weight=0.5

`+bpda-ensemble` averages the gradients of identity and of smooth at every temperature of the sweep
(defenses/ensemble.py). `+unrolled` takes the full gradient through a test-time defense's own optimisation steps
(defenses/test_time.py): not a surrogate, the exact derivative of the unrolled forward. `+survivors` runs the
attack only on the samples that every attack before it in the plan left robust (the others are `not_run:cascade`),
whatever the suite's mode: a last search on what is left.

BASE is one of ours (`attacks.catalog.entries()`, each registered where it is defined) or `torchattacks:<Class>` /
`foolbox:<Class>`. `@KEY=VALUE` sets a budget; each of our attacks accepts the keys it registered, which map to
constructor arguments (`iters` -> `n_iter`). For a
library attack the keys are the class's own constructor arguments. `format_name(parse_name(s))` is the canonical
spelling of `s` (modifiers in the order above, budget keys in table order, defaults left out), and
`Attack.label` is that spelling, so `make_attack(a.label).label == a.label`.

Every mistake is an `UnknownAttack` (a `UserError`) whose one-line message names the attack and the fix.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Any

from attacks.catalog import entries
from attacks.libraries import LIBRARIES
from defenses.errors import UserError

TRANSFER_PREFIX = "transfer-base:"
_MODIFIER = re.compile(r"bpda-identity|bpda-ensemble|bpda-smooth(?:-T(?P<t>.*))?|unrolled|eot(?P<k>.*)|survivors")
UNROLLED = "unrolled"  # the surrogate name of `+unrolled` (defenses/test_time.py)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class UnknownAttack(UserError, ValueError):
    """An attack name that does not parse, or names no attack, or sets a budget the attack does not have."""


@dataclass(frozen=True)
class AttackName:
    """A parsed attack name. `budget` holds (key, value) pairs in canonical order."""

    base: str
    surrogate: str = "exact"  # exact | identity | smooth | ensemble
    temperature: float | None = None
    eot: int = 1
    survivors: bool = False  # run only on the samples every earlier attack left robust
    budget: tuple[tuple[str, int | float], ...] = ()
    inner: AttackName | None = field(default=None)  # for transfer-base:INNER

    @property
    def library(self) -> str | None:
        library = self.base.partition(":")[0]
        return library if ":" in self.base and library in LIBRARIES else None

    def constructor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the attack's constructor (only what differs from its defaults)."""
        kwargs: dict[str, Any] = {}
        if self.surrogate != "exact":
            kwargs["surrogate"] = self.surrogate
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.eot != 1:
            kwargs["eot"] = self.eot
        if self.survivors:
            kwargs["on_survivors"] = True
        entry = entries().get(self.base)
        table = entry.budget if entry else {}
        for key, value in self.budget:
            kwargs[table.get(key, key)] = value
        return kwargs


def _number_text(value: float) -> str:
    # `g` keeps the labels that exist (T0.03, T1); repr where `g` would round the value away.
    text = f"{value:g}"
    return text if float(text) == value else repr(value)


def format_name(name: AttackName) -> str:
    """The canonical spelling of a parsed name."""
    if name.inner is not None:
        return TRANSFER_PREFIX + format_name(name.inner)
    text = name.base
    if name.surrogate == UNROLLED:
        text += f"+{UNROLLED}"
    elif name.surrogate != "exact":
        text += f"+bpda-{name.surrogate}"
        if name.surrogate == "smooth" and name.temperature is not None:
            text += f"-T{_number_text(name.temperature)}"
    if name.eot != 1:
        text += f"+eot{name.eot}"
    if name.survivors:
        text += "+survivors"
    if name.budget:
        text += "@" + ",".join(f"{k}={v if isinstance(v, int) else _number_text(v)}" for k, v in name.budget)
    return text


def _close(word: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    return f"did you mean {' or '.join(matches)}? " if matches else ""


def _library_attacks(library: str) -> list[str]:
    from attacks.libraries import available_attacks

    return available_attacks(library)


def _check_base(spec: str, base: str) -> None:
    if base in entries():
        return
    if ":" in base:
        library, _, attack = base.partition(":")
        if library not in LIBRARIES:
            raise UnknownAttack(
                f"attack {spec!r}: unknown attack library {library!r}; "
                f"{_close(library, list(LIBRARIES))}"
                f"use torchattacks:<Class> or foolbox:<Class>"
            )
        available = _library_attacks(library)
        if attack not in available:
            raise UnknownAttack(
                f"attack {spec!r}: {library} has no attack {attack!r}; {_close(attack, available)}"
                f"`audit attacks` lists the names"
            )
        return
    where = "" if base == spec else f" in {spec!r}"
    ours = list(entries())
    raise UnknownAttack(
        f"unknown attack {base!r}{where}; {_close(base, ours)}"
        f"choose one of {', '.join(ours)}, torchattacks:<Class>, foolbox:<Class>, "
        f"transfer-base:<attack>"
    )


def _parse_modifiers(spec: str, base: str, modifiers: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for modifier in modifiers:
        match = _MODIFIER.fullmatch(modifier)
        if not match:
            raise UnknownAttack(
                f"attack {spec!r}: unknown modifier +{modifier}; use +bpda-identity, "
                f"+bpda-smooth-T<temperature>, +bpda-ensemble, +unrolled, +eot<K> or +survivors"
            )
        kind = "survivors" if modifier == "survivors" else "eot" if modifier.startswith("eot") else "surrogate"
        if kind in out:
            shown = {"eot": "+eot", "survivors": "+survivors"}.get(kind, "+bpda")
            raise UnknownAttack(f"attack {spec!r}: more than one {shown} modifier; give each at most once")
        if kind == "survivors":
            out["survivors"] = True
            continue
        if kind == "eot":
            count = match.group("k")
            if not count.isdigit() or int(count) < 1:
                raise UnknownAttack(f"attack {spec!r}: +eot{count} must count at least one draw, e.g. +eot10")
            out["eot"] = int(count)
            continue
        entry = entries().get(base)
        if entry and entry.gradient_free:
            raise UnknownAttack(
                f"attack {spec!r}: {base} takes no gradients, so +{modifier} would change nothing; drop it"
            )
        if entry and entry.own_gradients:
            raise UnknownAttack(
                f"attack {spec!r}: {base} sets its own gradients at every stage, so +{modifier} "
                f"would contradict it; drop it"
            )
        if modifier == UNROLLED:
            out["surrogate"] = UNROLLED
            continue
        out["surrogate"] = modifier[len("bpda-") :].partition("-")[0]  # identity | smooth | ensemble
        if match.group("t") is not None:
            out["temperature"] = _temperature(spec, match.group("t"))
    return out


def _temperature(spec: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UnknownAttack(
            f"attack {spec!r}: the smooth surrogate's temperature must be a positive number, not "
            f"{text!r} (e.g. +bpda-smooth-T0.03)"
        )
    return value


def _parse_value(spec: str, key: str, text: str, integer: bool) -> int | float:
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise UnknownAttack(f"attack {spec!r}: budget {key}={text} is not a number") from None
        if integer or not math.isfinite(value):
            raise UnknownAttack(f"attack {spec!r}: budget {key}={text} must be a whole number") from None
    return value


def _library_budget(spec: str, base: str, items: list[tuple[str, str]]) -> dict[str, int | float]:
    """Budget keys of a library attack: its constructor's arguments, of the type of their defaults."""
    from attacks.libraries import attack_class

    library, _, name = base.partition(":")
    constructor = attack_class(library, name).__init__  # type: ignore[misc]  # the class itself, not an instance
    parameters = inspect.signature(constructor).parameters
    budget: dict[str, int | float] = {}
    for key, text in items:
        if key in ("model", "eps", "epsilons"):
            raise UnknownAttack(
                f"attack {spec!r}: {key} is not a budget: the model comes from the audit and eps from --eps"
            )
        if key not in parameters or key == "self":
            numeric = [
                p
                for p, v in parameters.items()
                if isinstance(v.default, (int, float))
                and not isinstance(v.default, bool)
                and p not in ("eps", "epsilons")
            ]
            raise UnknownAttack(
                f"attack {spec!r}: {base} has no budget {key!r}; {_close(key, numeric)}"
                f"its numeric arguments: {', '.join(numeric) or 'none'}"
            )
        default = parameters[key].default
        if isinstance(default, bool) or not isinstance(default, (int, float, type(None))):
            raise UnknownAttack(f"attack {spec!r}: {base}'s argument {key!r} is not a number; set it from Python")
        value = _parse_value(spec, key, text, integer=isinstance(default, int))
        # A count or size whose default is positive must stay positive (steps=0 would silently do nothing).
        if isinstance(default, (int, float)) and default > 0 and not value > 0:
            raise UnknownAttack(f"attack {spec!r}: budget {key}={text} must be positive")
        budget[key] = value
    return dict(sorted(budget.items()))


def _parse_budget(spec: str, base: str, text: str) -> tuple[tuple[str, int | float], ...]:
    items: list[tuple[str, str]] = []
    for part in text.split(","):
        key, equals, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not _KEY.fullmatch(key) or not value:
            raise UnknownAttack(f"attack {spec!r}: budget {part!r} is not KEY=VALUE (e.g. @iters=500,restarts=5)")
        if key in dict(items):
            raise UnknownAttack(f"attack {spec!r}: budget {key} given twice")
        items.append((key, value))
    if ":" in base:
        return tuple(_library_budget(spec, base, items).items())
    entry = entries()[base]
    table = entry.budget
    budget: dict[str, int | float] = {}
    for key, value in items:
        if key not in table:
            accepted = f"its budgets: {', '.join(table)}" if table else "it takes no budget"
            raise UnknownAttack(f"attack {spec!r}: {base} has no budget {key!r}; {_close(key, list(table))}{accepted}")
        if key in entry.fractional:
            number = _parse_value(spec, key, value, integer=False)
            if not (math.isfinite(number) and number > 0):
                raise UnknownAttack(f"attack {spec!r}: budget {key}={value} must be a positive number")
            budget[key] = number
            continue
        number = _parse_value(spec, key, value, integer=True)
        if number < (0 if key in entry.from_zero else 1):
            least = "0 or more" if key in entry.from_zero else "a positive whole number"
            raise UnknownAttack(f"attack {spec!r}: budget {key}={value} must be {least}")
        budget[key] = number
    return tuple((key, budget[key]) for key in table if key in budget)


def parse_name(spec: str) -> AttackName:
    """Parse and validate an attack name; raises UnknownAttack with a one-line message."""
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownAttack("empty attack name; `audit attacks` lists the names")
    spec = spec.strip()
    if spec.startswith(TRANSFER_PREFIX):
        inner = spec[len(TRANSFER_PREFIX) :]
        if not inner or inner.startswith(TRANSFER_PREFIX):
            raise UnknownAttack(
                f"attack {spec!r}: transfer-base: takes one attack to craft on the base model, "
                f"e.g. transfer-base:apgd-ce"
            )
        parsed = parse_name(inner)
        if parsed.survivors:
            raise UnknownAttack(
                f"attack {spec!r}: +survivors does not apply to a transfer attack's inner attack; drop it"
            )
        if parsed.base in entries() and entries()[parsed.base].transformation:
            raise UnknownAttack(
                f"attack {spec!r}: transfer-base: takes an Lp attack; {parsed.base} is a "
                f"transformation attack (run it on the defense itself)"
            )
        return AttackName(base="transfer-base", inner=parsed)
    head, at, budget_text = spec.partition("@")
    base, *modifiers = head.split("+")
    if not base:
        raise UnknownAttack(f"attack {spec!r}: no attack before the modifiers; e.g. apgd-ce+eot10")
    _check_base(spec, base)
    modifier_settings = _parse_modifiers(spec, base, modifiers)
    if at and not budget_text:
        raise UnknownAttack(f"attack {spec!r}: nothing after @; give KEY=VALUE budgets, e.g. @iters=500")
    budget = _parse_budget(spec, base, budget_text) if at else ()
    return AttackName(base=base, budget=budget, **modifier_settings)


def _default(cls: type, argument: str) -> Any:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            parameter = inspect.signature(init).parameters.get(argument)
            if parameter is not None:
                return parameter.default
    return inspect.Parameter.empty


def label_of(attack: Any) -> str:
    """The canonical name of a built attack, with every budget that differs from its constructor's default."""
    budget: list[tuple[str, int | float]] = []
    if attack.name in entries():
        for key, argument in entries()[attack.name].budget.items():
            value = getattr(attack, argument, None)
            if value is not None and value != _default(type(attack), argument):
                budget.append((key, value))
    elif isinstance(getattr(attack, "kwargs", None), dict):  # a library attack: every argument it was given
        budget = sorted(attack.kwargs.items())
    return format_name(
        AttackName(
            base=attack.name,
            surrogate=attack.surrogate,
            temperature=attack.temperature,
            eot=attack.eot,
            survivors=getattr(attack, "on_survivors", False),
            budget=tuple(budget),
        )
    )


def budget_of(attack: Any) -> dict[str, int | float]:
    """Every budget of one of our attacks, defaults included (e.g. {"iters": 100, "restarts": 1})."""
    entry = entries().get(attack.name)
    return {
        key: getattr(attack, argument)
        for key, argument in (entry.budget if entry else {}).items()
        if getattr(attack, argument, None) is not None
    }


def family_of(attack: Any) -> str:
    """The attack's name without its budget or `+survivors`: attacks of one family differ only in how much they
    spend (which samples they run on is scheduling, not what the attack is)."""
    return format_name(
        AttackName(base=attack.name, surrogate=attack.surrogate, temperature=attack.temperature, eot=attack.eot)
    )


def split_attack_list(text: str) -> list[str]:
    """`--attacks a,b@iters=5,restarts=2,c` -> [a, b@iters=5,restarts=2, c]: a comma also separates budgets, so a
    KEY=VALUE piece after a name with @ belongs to that name."""
    names: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if names and "@" in names[-1] and "=" in piece and "@" not in piece and "+" not in piece:
            names[-1] += "," + piece
        else:
            names.append(piece)
    if any(not name for name in names):
        raise UnknownAttack(f"--attacks {text!r} has an empty name; give comma-separated names, e.g. apgd-ce,square")
    return names

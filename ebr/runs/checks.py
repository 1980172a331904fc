"""What a config value must be, declared by the value's owner next to its default.

A schema field says `field(default=..., metadata=checked(Integer(1)))`, a function's parameter
`Annotated[int, Integer(1)]`; `ebr.validation` reads the declarations and reports every value
that breaks one, naming the key, the value and what is allowed, before any work. An option list
may be named by its import path (`OneOf("ebr.models.frequency.LOGQ_OPTIONS")`) so that a light
module (the config schema, read by every command line) does not import its heavy owner.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

# the dataclass field metadata key of a declared check
CHECK = "check"


class Check:
    """A rule for one config value."""

    def problem(self, key: str, value: Any) -> str | None:
        """The line naming `key`, its value and what is allowed when `value` breaks the rule, else None.

        Args:
            key: the dotted config key.
            value: its value, as plain Python (lists, dicts, scalars).
        """
        raise NotImplementedError


def checked(check: Check) -> dict[str, Check]:
    """A field's metadata declaring `check` (`field(default=..., metadata=checked(...))`).

    Args:
        check: the rule.
    """
    return {CHECK: check}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value


@dataclass(frozen=True)
class Integer(Check):
    """An integer >= `minimum` (None allowed when `optional`).

    Args:
        minimum: the smallest allowed value.
        optional: None is allowed.
    """

    minimum: int
    optional: bool = False

    def problem(self, key: str, value: Any) -> str | None:
        if self.optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            return f"{key}={value!r}: must be an integer >= {self.minimum}"
        return None


@dataclass(frozen=True)
class Number(Check):
    """A finite number above `low` (or at it, with `low_inclusive`) and below `high` (exclusive).

    Args:
        low: the lower bound.
        low_inclusive: `low` itself is allowed.
        high: the (exclusive) upper bound; infinity: any finite number.
        optional: None is allowed.
    """

    low: float = 0.0
    low_inclusive: bool = False
    high: float = math.inf
    optional: bool = False

    def problem(self, key: str, value: Any) -> str | None:
        if self.optional and value is None:
            return None
        above = _is_number(value) and (value >= self.low if self.low_inclusive else value > self.low)
        if above and value < self.high:
            return None
        sign = ">=" if self.low_inclusive else ">"
        if self.high == math.inf:
            what = f"a finite number {sign} {self.low:g}"
        else:
            what = f"a number with {self.low:g} {'<=' if self.low_inclusive else '<'} x < {self.high:g}"
        return f"{key}={value!r}: must be {what}"


# the most common rule: a finite number > 0 (learning rates, temperatures, lengths of time)
POSITIVE = Number()
NON_NEGATIVE = Number(low_inclusive=True)


@dataclass(frozen=True)
class OneOf(Check):
    """One of the owner's options: a tuple, or the import path of the owner's tuple or mapping.

    Args:
        options: the allowed values, or `"package.module.NAME"` of them (a mapping's keys).
    """

    options: tuple[str, ...] | str

    def allowed(self) -> tuple[str, ...]:
        """The allowed values (importing their owner when they are named by path)."""
        if not isinstance(self.options, str):
            return self.options
        module, _, name = self.options.rpartition(".")
        found = getattr(importlib.import_module(module), name)
        return tuple(found.keys() if isinstance(found, Mapping) else found)

    def problem(self, key: str, value: Any) -> str | None:
        allowed = self.allowed()
        return None if value in allowed else f"{key}={value!r}: must be one of {', '.join(allowed)}"


@dataclass(frozen=True)
class IntegerList(Check):
    """A list of integers >= 1 (an empty one allowed with `allow_empty`).

    Args:
        allow_empty: the list may be empty.
    """

    allow_empty: bool = False

    def problem(self, key: str, value: Any) -> str | None:
        if value is None:
            return None
        items = list(value) if isinstance(value, list | tuple) else None
        bad = items is None or (not items and not self.allow_empty)
        bad = bad or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in items or [])
        if not bad:
            return None
        return f"{key}={value!r}: must be a {'' if self.allow_empty else 'non-empty '}list of integers >= 1"


def declared_checks(owner: Any) -> dict[str, Check]:
    """The checks an owner declares per setting: a dataclass's field metadata (`checked(...)`) or a
    function's `Annotated[type, check]` parameters.

    Args:
        owner: a dataclass or a function.
    """
    if dataclasses.is_dataclass(owner):
        return {f.name: f.metadata[CHECK] for f in dataclasses.fields(owner) if CHECK in f.metadata}
    found = {}
    for name, hint in get_type_hints(owner, include_extras=True).items():
        for extra in getattr(hint, "__metadata__", ()):
            if isinstance(extra, Check):
                found[name] = extra
    return found


def problems(owner: Any, values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """One line per value in `values` that breaks the check `owner` declares for it.

    Args:
        owner: a dataclass or a function (`declared_checks`).
        values: setting name -> value (plain Python); names absent here are not checked.
        prefix: the config node of the settings (`split`), prepended to each key.
    """
    lines = []
    for name, check in declared_checks(owner).items():
        if name in values:
            line = check.problem(f"{prefix}.{name}" if prefix else name, values[name])
            if line is not None:
                lines.append(line)
    return lines


def refuse_problems(owner: Any, prefix: str, **values: Any) -> None:
    """Raise when a value breaks its declared check (an owner checking its own arguments).

    Args:
        owner: the dataclass or function whose settings these are.
        prefix: the config node of the settings, named in the message.
        **values: setting name -> value.

    Raises:
        ValueError: naming every bad key, its value and what is allowed.
    """
    lines = problems(owner, values, prefix)
    if lines:
        raise ValueError("; ".join(lines))

"""What a config value must be, declared by the value's owner next to its default.

A schema field says `field(default=..., metadata=checked(Integer(1)))`, a function's parameter
`Annotated[int, Integer(1)]`; `ebr.validation` reads the declarations and reports every value
that breaks one, naming the key, the value and what is allowed, before any work. An option list
may be named by its import path (`OneOf("ebr.models.frequency.LOGQ_OPTIONS")`) so that a light
module (the config schema, read by every command line) does not import its heavy owner; while the
owner is not loaded, a literal tuple or a mapping with literal keys is read from its source, so the
checks before work do not load torch either (a baseline job never does).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import math
import numbers
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
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
        if module not in sys.modules:
            literal = _literal_options(module, name)
            if literal is not None:
                return literal
        found = getattr(importlib.import_module(module), name)
        return tuple(found.keys() if isinstance(found, Mapping) else found)

    def problem(self, key: str, value: Any) -> str | None:
        allowed = self.allowed()
        return None if value in allowed else f"{key}={value!r}: must be one of {', '.join(allowed)}"


def _literal_options(module: str, name: str) -> tuple[str, ...] | None:
    """`module.name` read from the module's source without importing it: a tuple or list of literals,
    or the literal keys of a dict (None when it is not written as one)."""
    source = _module_source(module.split("."))
    if source is None:
        return None
    for node in _parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        value = node.value  # type: ignore[union-attr]
        items = value.keys if isinstance(value, ast.Dict) else getattr(value, "elts", None)
        if items is None or not all(isinstance(item, ast.Constant) for item in items):
            return None
        return tuple(item.value for item in items)  # type: ignore[union-attr]
    return None


def statically_defined(target: str) -> bool:
    """Whether `target` ("package.module.Name") names a module, or a name its module's source defines
    or imports at top level, found without running the module (a light check of a `_target_` that
    would otherwise load torch). False means "not found that way": import it to know.

    Args:
        target: a dotted import path.
    """
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        source = _module_source(parts[:cut])
        if source is None:
            continue
        rest = parts[cut:]
        return not rest or (len(rest) == 1 and rest[0] in _top_level_names(_parse(source)))
    return False


def _module_source(parts: list[str]) -> Path | None:
    """The source file of module `parts`, found on the file system below its top-level package
    (which is found without being run); None when there is none."""
    spec = importlib.util.find_spec(parts[0])
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    path, folders = Path(spec.origin), [Path(f) for f in spec.submodule_search_locations or []]
    for part in parts[1:]:
        found = [f / part / "__init__.py" for f in folders if (f / part / "__init__.py").is_file()]
        found += [f / f"{part}.py" for f in folders if (f / f"{part}.py").is_file()]
        if not found:
            return None
        path = found[0]
        folders = [path.parent] if path.name == "__init__.py" else []
    return path


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at top level (also inside top-level if/try blocks)."""
    names: set[str] = set()
    nodes = list(tree.body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try):
            nodes += [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
            nodes += [n for handler in getattr(node, "handlers", []) for n in handler.body]
    return names


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

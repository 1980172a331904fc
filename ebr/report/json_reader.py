"""Reading ``report.json`` back into a `Report`, checking every key (errors name the file and key)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ebr.report.claim_schema import ClaimError, parse_claim
from ebr.report.code import CodeUsed
from ebr.report.document import (
    REPORT_JSON,
    SCHEMA,
    SCHEMA_PREFIX,
    DataRead,
    Delta,
    Method,
    Problem,
    Provenance,
    Report,
    ReportArm,
    ReportFormatError,
    ResultRow,
)
from ebr.report.pooled import ClaimResult, PooledDelta, WorldDelta


def read_report(data: Any, source: str = REPORT_JSON) -> Report:
    """A parsed ``report.json`` document as a `Report` (see `Report.from_json`).

    Args:
        data: the parsed JSON.
        source: the file it came from, named in error messages.

    Raises:
        ReportFormatError: another schema, or a key missing or of the wrong type.
    """
    return _Reader(source).report(data)


def load_report(path: str | Path) -> Report:
    """Read a sweep's ``report.json``.

    Args:
        path: the sweep directory or the report.json file itself.

    Raises:
        ReportFormatError: the file is absent, not JSON, or not a report of this schema.
    """
    path = Path(path)
    file = path / REPORT_JSON if path.is_dir() else path
    if not file.is_file():
        raise ReportFormatError(f"{file}: no {REPORT_JSON} (run `ebr-report {path}` first)")

    def reject_constant(name: str) -> float:
        raise ReportFormatError(f"{file}: holds {name}, not a finite number")

    try:
        data = json.loads(file.read_text(encoding="utf-8"), parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise ReportFormatError(f"{file}: not valid JSON ({exc})") from exc
    return read_report(data, str(file))


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


def _map_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, dict) and all(_is_str(k) and check(v) for k, v in value.items())


def _is_interval(value: Any) -> bool:
    return value is None or (isinstance(value, list) and len(value) == 2 and all(map(_is_number, value)))


class _Reader:
    """Checks a parsed report.json field by field; every error names the file and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ReportFormatError:
        return ReportFormatError(
            f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}"
        )

    def take(self, node: Any, key: str, where: str, check: Callable[[Any], bool], what: str) -> Any:
        path = f"{where}.{key}" if where else key
        if not isinstance(node, dict):
            raise self.fail(where, "expected a JSON object")
        if key not in node:
            raise self.fail(path, "missing")
        value = node[key]
        if not check(value):
            raise self.fail(path, f"expected {what}, got {_short(value)}")
        return value

    def report(self, data: Any) -> Report:
        if not isinstance(data, dict) or not _is_str(data.get("schema")):
            raise self.fail("", f"not an ebr report (expected schema {SCHEMA!r})")
        schema = data["schema"]
        if schema != SCHEMA:
            if schema.startswith(SCHEMA_PREFIX):
                raise self.fail(
                    "schema",
                    f"{schema!r} is not {SCHEMA!r}: written by another version of ebr-report; "
                    "run ebr-report on the sweep again",
                )
            raise self.fail("", f"not an ebr report (expected schema {SCHEMA!r}, got {schema!r})")
        take = self.take
        opt_str, str_list = _optional(_is_str), _list_of(_is_str)
        meta = Provenance(
            sweep_dir=take(data, "sweep_dir", "", _is_str, "a string"),
            generated_at=take(data, "generated_at", "", _is_str, "a string"),
            date=take(data, "date", "", _is_str, "a string"),
            ebr_version=take(data, "ebr_version", "", _is_str, "a string"),
            git_commit=take(data, "git_commit", "", opt_str, "a string or null"),
            git_dirty=take(data, "git_dirty", "", _optional(lambda v: isinstance(v, bool)), "a bool or null"),
            experiment_name=take(data, "experiment_name", "", opt_str, "a string or null"),
            technique=take(data, "technique", "", opt_str, "a string or null"),
            control=take(data, "control", "", lambda v: isinstance(v, bool), "true or false"),
            page=take(data, "page", "", opt_str, "a string or null"),
            paper=dict(take(data, "paper", "", _map_of(_is_str), "an object of strings")),
            wandb_group=take(data, "wandb_group", "", opt_str, "a string or null"),
            wandb_project=take(data, "wandb_project", "", opt_str, "a string or null"),
            code=self.code(data),
        )
        labels = take(data, "arms", "", str_list, "a list of arm labels")
        shorts = take(data, "arm_short_labels", "", _map_of(_is_str), "an object arm -> short label")
        values = take(data, "arm_values", "", _map_of(_map_of(_is_str)), "an object arm -> {key: value}")
        for name, mapping in (("arm_short_labels", shorts), ("arm_values", values)):
            if set(mapping) != set(labels):
                raise self.fail(name, f"its arms {sorted(mapping)} are not the arms {labels}")
        arms = tuple(ReportArm(label, shorts[label], dict(values[label])) for label in labels)
        failed = self.problems(data, "failed")
        missing = self.problems(data, "missing")
        for key, problems in (("n_failed", failed), ("n_missing", missing)):
            count = take(data, key, "", _is_int, "an integer")
            if count != len(problems):
                raise self.fail(key, f"{count} but {len(problems)} listed")
        report = Report(
            meta=meta,
            data=tuple(
                self.data_read(item, f"data[{i}]")
                for i, item in enumerate(take(data, "data", "", lambda v: isinstance(v, list), "a list"))
            ),
            arms=arms,
            arm_keys=tuple(take(data, "arm_keys", "", str_list, "a list of strings")),
            seed_key=take(data, "seed_key", "", _is_str, "a string"),
            seeds=tuple(take(data, "seeds", "", str_list, "a list of strings")),
            baseline=take(data, "baseline", "", opt_str, "an arm label or null"),
            baseline_source=take(data, "baseline_source", "", opt_str, "a string or null"),
            n_runs=take(data, "n_runs", "", _is_int, "an integer"),
            expected_runs=take(data, "expected_runs", "", _is_int, "an integer"),
            n_finished=take(data, "n_finished", "", _is_int, "an integer"),
            failed=failed,
            missing=missing,
            headline_metrics=tuple(take(data, "headline_metrics", "", str_list, "a list of strings")),
            metrics=tuple(take(data, "metrics", "", str_list, "a list of strings")),
            method=self.method(take(data, "method", "", lambda v: isinstance(v, dict), "an object")),
            notes=tuple(take(data, "notes", "", str_list, "a list of strings")),
            results=self.results(
                take(data, "results", "", lambda v: isinstance(v, dict), "an object"), labels
            ),
            worlds=tuple(take(data, "worlds", "", str_list, "a list of worlds")) if "worlds" in data else (),
            claims=self.claims(data),
        )
        if report.baseline is not None and report.baseline not in labels:
            raise self.fail("baseline", f"{report.baseline!r} is not one of the arms {labels}")
        return report

    def data_read(self, node: Any, where: str) -> DataRead:
        take = self.take
        return DataRead(
            name=take(node, "name", where, _is_str, "a string"),
            source=take(node, "source", where, _optional(_is_str), "a string or null"),
            recorded_in=take(node, "recorded_in", where, _is_str, "a string"),
            jobs=tuple(take(node, "jobs", where, _list_of(_is_str), "a list of job names")),
        )

    def problems(self, data: dict[str, Any], key: str) -> tuple[Problem, ...]:
        items = self.take(data, key, "", lambda v: isinstance(v, list), "a list")
        out = []
        for i, node in enumerate(items):
            where = f"{key}[{i}]"
            out.append(
                Problem(
                    name=self.take(node, "name", where, _is_str, "a string"),
                    arm=self.take(node, "arm", where, _is_str, "a string"),
                    seed=self.take(node, "seed", where, _optional(_is_str), "a string or null"),
                    reason=self.take(node, "reason", where, _is_str, "a string"),
                )
            )
        return tuple(out)

    def code(self, data: dict[str, Any]) -> tuple[CodeUsed, ...]:
        # absent in reports written before runs recorded their code: nothing to list
        items = self.take(data, "code", "", lambda v: isinstance(v, list), "a list") if "code" in data else []
        opt_str = _optional(_is_str)
        out = []
        for i, node in enumerate(items):
            where = f"code[{i}]"
            out.append(
                CodeUsed(
                    label=self.take(node, "label", where, _is_str, "a string"),
                    git_commit=self.take(node, "git_commit", where, opt_str, "a string or null"),
                    git_diff_sha256=self.take(node, "git_diff_sha256", where, opt_str, "a string or null"),
                    ebr_version=self.take(node, "ebr_version", where, opt_str, "a string or null"),
                    packages=dict(
                        self.take(node, "packages", where, _map_of(opt_str), "an object of versions")
                    ),
                    jobs=tuple(self.take(node, "jobs", where, _list_of(_is_str), "a list of job names")),
                )
            )
        return tuple(out)

    def method(self, node: dict[str, Any]) -> Method:
        take = self.take
        return Method(
            estimator=take(node, "estimator", "method", _is_str, "a string"),
            interval=take(node, "interval", "method", _is_str, "a string"),
            bootstrap=take(node, "bootstrap", "method", _optional(_is_str), "a string or null"),
            p_value=take(node, "p_value", "method", _is_str, "a string"),
            level=float(take(node, "level", "method", _is_number, "a number")),
            primary_interval=take(node, "primary_interval", "method", _is_str, "a string"),
            n_bootstrap=take(node, "n_bootstrap", "method", _is_int, "an integer"),
            bootstrap_seed=take(node, "bootstrap_seed", "method", _is_int, "an integer"),
        )

    def results(self, node: dict[str, Any], labels: list[str]) -> dict[str, dict[str, ResultRow]]:
        out: dict[str, dict[str, ResultRow]] = {}
        for metric, rows in node.items():
            where = f"results[{metric!r}]"
            if not isinstance(rows, dict):
                raise self.fail(where, "expected an object arm -> row")
            unknown = [arm for arm in rows if arm not in labels]
            if unknown:
                raise self.fail(where, f"arm(s) {unknown} are not among the arms {labels}")
            out[metric] = {arm: self.row(row, f"{where}[{arm!r}]") for arm, row in rows.items()}
        return out

    def delta(self, node: dict[str, Any], at: str) -> Delta:
        take = self.take
        opt_number = _optional(_is_number)
        rel = take(node, "rel_mean", at, opt_number, "a number or null")
        p_value = take(node, "p_value", at, opt_number, "a number or null")
        return Delta(
            n_pairs=take(node, "n_pairs", at, _is_int, "an integer"),
            rel_mean=None if rel is None else float(rel),
            t_ci=_pair(take(node, "t_ci", at, _is_interval, "[low, high] or null")),
            bootstrap_ci=_pair(take(node, "bootstrap_ci", at, _is_interval, "[low, high] or null")),
            p_value=None if p_value is None else float(p_value),
            per_seed=_floats(take(node, "per_seed", at, _map_of(_is_number), "seed -> number")),
            excluded=dict(take(node, "excluded", at, _map_of(_is_str), "seed -> reason")),
            clipped=bool(node.get("clipped", False)),
            pooled=self.pooled(node["pooled"], f"{at}.pooled") if node.get("pooled") is not None else None,
        )

    def pooled(self, node: Any, at: str) -> PooledDelta:
        take = self.take
        opt_number = _optional(_is_number)
        worlds = []
        for i, item in enumerate(take(node, "worlds", at, lambda v: isinstance(v, list), "a list")):
            where = f"{at}.worlds[{i}]"
            mean = take(item, "mean", where, opt_number, "a number or null")
            worlds.append(
                WorldDelta(
                    world=take(item, "world", where, _is_str, "a string"),
                    n_pairs=take(item, "n_pairs", where, _is_int, "an integer"),
                    mean=None if mean is None else float(mean),
                    t_ci=_pair(take(item, "t_ci", where, _is_interval, "[low, high] or null")),
                    agrees=take(item, "agrees", where, lambda v: isinstance(v, bool), "true or false"),
                )
            )
        mean = take(node, "mean", at, opt_number, "a number or null")
        return PooledDelta(
            n_worlds=take(node, "n_worlds", at, _is_int, "an integer"),
            mean=None if mean is None else float(mean),
            ci=_pair(take(node, "ci", at, _is_interval, "[low, high] or null")),
            world_t_ci=_pair(take(node, "world_t_ci", at, _is_interval, "[low, high] or null")),
            worlds=tuple(worlds),
        )

    def claims(self, data: dict[str, Any]) -> tuple[ClaimResult, ...]:
        # absent in reports of experiments that declare no claims
        is_list, is_object = (lambda v: isinstance(v, list)), (lambda v: isinstance(v, dict))
        items = self.take(data, "claims", "", is_list, "a list") if "claims" in data else []
        out = []
        for i, node in enumerate(items):
            where = f"claims[{i}]"
            spec = self.take(node, "claim", where, is_object, "an object")
            try:
                claim = parse_claim(spec, f"{self.source}: {where}.claim", None, [])
            except ClaimError as exc:
                raise self.fail("", str(exc)) from exc
            delta = self.take(
                node, "delta", where, _optional(lambda v: isinstance(v, dict)), "an object or null"
            )
            offline = self.take(
                node, "offline", where, _map_of(lambda v: isinstance(v, dict)), "metric -> delta"
            )
            out.append(
                ClaimResult(
                    claim=claim,
                    arm=self.take(node, "arm", where, _optional(_is_str), "an arm label or null"),
                    baseline=self.take(node, "baseline", where, _optional(_is_str), "an arm label or null"),
                    delta=None if delta is None else self.delta(delta, f"{where}.delta"),
                    offline={m: self.delta(d, f"{where}.offline[{m!r}]") for m, d in offline.items()},
                    problem=self.take(node, "problem", where, _optional(_is_str), "a string or null"),
                )
            )
        return tuple(out)

    def row(self, node: Any, where: str) -> ResultRow:
        take = self.take
        opt_number = _optional(_is_number)
        delta_node = take(node, "delta", where, _optional(lambda v: isinstance(v, dict)), "an object or null")
        delta = None if delta_node is None else self.delta(delta_node, f"{where}.delta")
        mean = take(node, "mean", where, opt_number, "a number or null")
        std = take(node, "std", where, opt_number, "a number or null")
        return ResultRow(
            n=take(node, "n", where, _is_int, "an integer"),
            mean=None if mean is None else float(mean),
            std=None if std is None else float(std),
            values=_floats(take(node, "values", where, _map_of(_is_number), "an object seed -> number")),
            missing_in=tuple(take(node, "missing_in", where, _list_of(_is_str), "a list of job names")),
            is_baseline=take(node, "is_baseline", where, lambda v: isinstance(v, bool), "true or false"),
            paper=take(node, "paper", where, _optional(_is_str), "a string or null"),
            delta=delta,
        )


def _pair(value: list[float] | None) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


def _floats(mapping: Mapping[str, Any]) -> dict[str, float]:
    # JSON writes 2.0 as 2.0 but a hand-written 2 reads as int: the object holds floats either way
    return {key: float(value) for key, value in mapping.items()}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

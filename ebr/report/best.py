"""``ebr-report --best SWEEP_DIR``: the trials of a hyperparameter search, the best one as a file.

Reads the job directories only (``.hydra/``, ``metrics.json``, ``error.txt``), not the Optuna
database: each trial is a job whose ``.hydra/config.yaml`` names the objective
(`optimized_metric`) and whose ``.hydra/hydra.yaml`` holds the direction and the searched keys.
The best trial's overrides become an ``@package _global_`` experiment file (written atomically, its
values at full precision, the study, trial number, objective and commit in its comment): the experiment the
search ran under (a defaults entry), its group choices, its key values and its seed (when not the
schema's default), with `hydra.sweeper.params` fixing every searched key to the best value and
sweeping the final seeds, so the final runs are one command
(``ebr-train -m --config-dir DIR experiment=NAME``), which scores the test window (refitted on
train+val where the data's eval group says so).

The baselines' in-job grids (``tune/recall@50[rank=32]``, ``tune/rank`` in ``metrics.json``) are
printed in the same form: one row per grid value with its validation score, the chosen one marked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ebr.runs import (
    CONFIG_FILE,
    ERROR_FILE,
    HYDRA_FILE,
    METRICS_FILE,
    OVERRIDES_FILE,
    dig,
    read_metrics,
    read_record,
    read_yaml,
    write_atomic,
)

# overrides a best-trial file leaves out: the search itself, Hydra's settings, the window (the
# final runs score test), keys that cannot change results and the machine's share a search was
# given (threads), which is the final runs' to choose
DROPPED_KEYS = (
    "hparams_search",
    "optimized_metric",
    "eval.window",
    "logger",
    "force",
    "num_threads",
    "seed",
    "experiment",
    "experiment_name",
)
DEFAULT_SEEDS = "0,1,2,3,4"
# the `seed` a job gets when nothing sets it (ebr/config.py's schema; this package reads run
# directories only): a best-trial file restates it only when the trial ran another
# (tests/test_config_defaults.py rejects a preset that restates a schema default)
SCHEMA_SEED = 0
_TUNE = re.compile(r"^tune/(?P<metric>[^\[]+)\[(?P<name>[^=]+)=(?P<value>.*)\]$")


class SearchReadError(ValueError):
    """A directory that holds no trial of a hyperparameter search."""


@dataclass(frozen=True)
class Trial:
    """One job of a search.

    Args:
        number: the job number (Optuna's trial number in an ebr search).
        path: the job directory.
        overrides: its ``.hydra/overrides.yaml``.
        status: "finished", "failed" or "missing".
        value: its objective (None unless finished).
    """

    number: int
    path: Path
    overrides: list[str]
    status: str
    value: float | None


@dataclass(frozen=True)
class Search:
    """The trials of a search directory and what they optimized."""

    path: Path
    metric: str
    direction: str
    searched: list[str]
    trials: list[Trial]
    study_name: str

    def best(self) -> Trial | None:
        """The finished trial with the best finite objective (the earliest on ties)."""
        scored = [t for t in self.trials if t.value is not None and math.isfinite(t.value)]
        if not scored:
            return None
        sign = 1.0 if self.direction == "maximize" else -1.0
        return max(scored, key=lambda t: (sign * t.value, -t.number))  # type: ignore[operator]


def _job_dirs(sweep_dir: Path) -> list[Path]:
    jobs = [
        p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit() and (p / OVERRIDES_FILE).is_file()
    ]
    return sorted(jobs, key=lambda p: int(p.name))


def load_search(sweep_dir: Path) -> Search:
    """The trials of a search directory.

    Raises:
        SearchReadError: when no job directory names an `optimized_metric`.
    """
    if not sweep_dir.is_dir():
        raise SearchReadError(f"{sweep_dir} is not a directory")
    trials, metric, direction, searched, study = [], None, "maximize", [], sweep_dir.name
    for job in _job_dirs(sweep_dir):
        config = read_yaml(job / CONFIG_FILE, default={})
        metric = metric or (config.get("optimized_metric") if isinstance(config, dict) else None)
        sweeper = dig(read_yaml(job / HYDRA_FILE, default={}), ("hydra", "sweeper")) or {}
        direction = str(sweeper.get("direction", direction))
        searched = [str(k) for k in (sweeper.get("params") or {})] or searched
        study = str(sweeper.get("study_name") or study)
        overrides = [str(o) for o in read_yaml(job / OVERRIDES_FILE, default=[])]
        status, value = "missing", None
        if (job / METRICS_FILE).is_file():
            status = "finished"
            value = read_metrics(job).get(str(metric)) if metric else None
        elif (job / ERROR_FILE).is_file():
            status = "failed"
        trials.append(Trial(int(job.name), job, overrides, status, value))
    if not metric:
        raise SearchReadError(f"{sweep_dir}: no job names an optimized_metric (not a hparams_search sweep)")
    direction = direction.lower().replace("direction.", "")
    return Search(sweep_dir, str(metric), direction, searched, trials, study)


def _key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def _value(override: str) -> str:
    return override.partition("=")[2]


def search_overrides(trial: Trial, searched: list[str]) -> list[str]:
    """The trial's overrides of the searched keys, in the search's order."""
    found = {_key(o): o for o in trial.overrides}
    return [found[key] for key in searched if key in found]


def best_experiment(
    search: Search, trial: Trial, seeds: str = DEFAULT_SEEDS, name: str | None = None
) -> tuple[str, str]:
    """The best trial as an experiment file: (file name stem, YAML text).

    Args:
        search: the search.
        trial: its best trial.
        seeds: the final runs' seeds (`hydra.sweeper.params.seed`).
        name: the file's stem and its `experiment_name` (None: `<study>_best`).
    """
    config = read_yaml(trial.path / CONFIG_FILE, default={})
    choices = dig(read_yaml(trial.path / HYDRA_FILE, default={}), ("hydra", "runtime", "choices")) or {}
    name = name or f"{search.study_name}_best"
    defaults: list[Any] = []
    if choices.get("experiment"):
        # the experiment the search ran under, relative to this file's group (experiment/)
        defaults.append(str(choices["experiment"]))
    body: dict[str, Any] = {}
    group_values: dict[str, str] = {}
    for override in trial.overrides:
        key = _key(override)
        if key.startswith("hydra") or key in DROPPED_KEYS or override.startswith("~"):
            continue
        if key in choices:
            defaults.append({f"override /{key}": _value(override)})
            group_values[key] = _value(override)
            continue
        value = dig(config, tuple(key.split(".")))
        _set(body, key, yaml.safe_load(_value(override)) if value is None else value)
    defaults.append("_self_")
    params: dict[str, str] = {}
    for key in search.searched:
        if key == "seed":
            continue
        written = group_values.get(key, dig(config, tuple(key.split("."))))
        params[key] = str(written).lower() if isinstance(written, bool) else str(written)
    params["seed"] = seeds
    seed = config.get("seed", SCHEMA_SEED)
    document = {
        "defaults": defaults,
        "experiment_name": name,
        **({} if seed == SCHEMA_SEED else {"seed": seed}),
        **body,
        "hydra": {"sweeper": {"params": params}},
    }
    header = "# @package _global_\n" + provenance(search, trial, seeds)
    return name, header + yaml.safe_dump(document, sort_keys=False)


def provenance(search: Search, trial: Trial, seeds: str = DEFAULT_SEEDS) -> str:
    """The comment lines of a best-trial file: the study, the trial, its objective and the code it ran.

    Args:
        search: the search.
        trial: its best trial.
        seeds: the final runs' seeds.
    """
    code = dig(read_record(trial.path) or {}, ("code",)) or {}
    commit = code.get("git_commit") or "unknown (no run.json)"
    if code.get("git_diff_sha256"):
        commit += f" with uncommitted changes (diff sha256 {str(code['git_diff_sha256'])[:12]})"
    searched = ", ".join(key for key in search.searched if key != "seed") or "none recorded"
    return (
        f"# The best trial of the hyperparameter search {search.path} (written by ebr-report --best):\n"
        f"# study {search.study_name}, trial {trial.number} of {len(search.trials)}, validation "
        f"{search.metric} = {trial.value!r} ({search.direction}),\n"
        f"# code at commit {commit}. Searched keys: {searched}; the values below are the trial's, at\n"
        "# full precision. A single run reproduces the trial with eval.window=val; without it (the\n"
        f"# default, test), a multirun is the final runs: seeds {seeds}, the test window, refitted on\n"
        "# train+val where the data's eval group says so (data=movielens: eval=refit).\n"
    )


def _set(node: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def grid_rows(job: Path) -> list[tuple[str, float, bool]]:
    """A baseline job's in-job grid: (``name=value``, validation score, chosen) per grid value."""
    if not (job / METRICS_FILE).is_file():
        return []
    metrics = read_metrics(job)
    rows = []
    for key, score in sorted(metrics.items()):
        match = _TUNE.match(key)
        if match is None:
            continue
        name, value = match["name"], match["value"]
        chosen = metrics.get(f"tune/{name}")
        is_chosen = chosen is not None and _same(value, chosen)
        rows.append((f"{name}={value}", float(score), is_chosen))
    return rows


def _same(text: str, number: float) -> bool:
    try:
        return math.isclose(float(text), float(number))
    except ValueError:
        return False


def format_trials(search: Search) -> str:
    """The trials as a table, best first marked, with the searched overrides."""
    best = search.best()
    lines = [
        f"search {search.path}: {len(search.trials)} trials, {search.direction} validation {search.metric}"
    ]
    for trial in search.trials:
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        mark = "*" if best is not None and trial.number == best.number else " "
        shown = " ".join(search_overrides(trial, search.searched))
        lines.append(f"{mark} {trial.number:>4}  {trial.status:<8}  {value:>8}  {shown}")
    return "\n".join(lines)


def format_grids(sweep_dir: Path) -> str:
    """The in-job grids of the baseline jobs of a sweep directory, in the trials' form ("" if none)."""
    jobs = [sweep_dir, *(_job_dirs(sweep_dir) if sweep_dir.is_dir() else [])]
    lines = []
    for job in jobs:
        rows = grid_rows(job)
        if not rows:
            continue
        lines.append(f"grid of {job} (validation recall@50, fitted on train):")
        lines.extend(f"{'*' if chosen else ' '} {label:<24}  {score:.4f}" for label, score, chosen in rows)
    return "\n".join(lines)


def write_best(sweep_dir: Path, out: Path | None, seeds: str = DEFAULT_SEEDS) -> int:
    """Print a search's trials and its best trial's overrides; write the best-trial experiment file.

    Args:
        sweep_dir: the search's sweep directory.
        out: the file to write; default ``SWEEP_DIR/best/experiment/<study>_best.yaml`` (then
            ``--config-dir SWEEP_DIR/best experiment=<study>_best`` selects it).
        seeds: the final runs' seeds.

    Returns:
        0 when the file was written (or, for a sweep of baselines, their grids printed), 3 when no
        trial finished with a finite objective.

    Raises:
        SearchReadError: when the directory is neither a search's nor holds a baseline's grid.
    """
    grids = format_grids(sweep_dir)
    try:
        search = load_search(sweep_dir)
    except SearchReadError as exc:
        if out is not None:
            raise SearchReadError(
                f"--out {out}: {sweep_dir} is not a hyperparameter search (no job names an "
                "optimized_metric: run it with hparams_search=...), so it has no best trial to write"
            ) from exc
        if not grids:
            raise
        # a baseline sweep: its in-job grids are its trials, and the chosen value is already config
        print(grids)
        return 0
    print(format_trials(search))
    if grids:
        print(grids)
    best = search.best()
    if best is None:
        print(f"ebr-report: error: no trial of {sweep_dir} finished with a finite {search.metric}")
        return 3
    # the file's name is its experiment's: `experiment=<stem>` selects it, and its runs say so
    name, text = best_experiment(search, best, seeds, None if out is None else out.stem)
    target = out if out is not None else sweep_dir / "best" / "experiment" / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"best trial {best.number}: validation {search.metric} = {best.value!r}")
    print("overrides: " + " ".join(search_overrides(best, search.searched)))
    print(f"wrote {target}")
    config_dir = target.parent.parent
    print(f"final runs: ebr-train -m --config-dir {config_dir} experiment={target.stem}")
    return 0

"""Validate before work: every option and value a job uses, checked when the config is composed.

`validate_config(cfg)` is called by the application shell (ebr.app.run_app, inside the job wrapper
so a refusal is recorded like any failure) before the job reads any data. It collects every problem
and raises one `ConfigValidationError` naming each key, its value and what is allowed.

A value's own rule (a range, an option list) is written once, by its owner, and only applied here:

- the typed schemas of ebr.config declare theirs per field (`ebr.runs.checks`), option lists named
  from the modules that define the options (`train.logq`, `eval.window`, ...);
- a `_target_` function declares its parameters' (the splits, ebr.data.splits);
- the objects a group builds check themselves when built here (`index`, `corpus`,
  `eval.simulation`, `model.conditioning`, the interest keys of `serving`).

What this module adds are the rules that span several keys or the machine:

- the torchrec sharding plans available on this device: on CPU (gloo) `table_wise`,
  `column_wise` and `data_parallel`; `row_wise` and `table_row_wise` need GPUs;
- a GPU trainer needs CUDA; a multi-rank job's batch sizes split into equal per-rank shares;
- `serving.interest_filter=union` serves unconditioned models only;
- every `_target_` (an unknown crossing module, a misspelt class) can be imported;
- every mandatory value (`???`: `data.path` of `data=events_file`, `model.id_embedding.snapshot_dir`)
  is set;
- a data file or folder the data group names (`data.path`) exists, and so does the snapshot
  directory pre-trained ID tables read (with at least one snapshot in it).

The checks read the config only; the data is checked by its loader (ebr.data.loaders).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ebr.config import EbrPretrainSchema, EbrSchema, EvalSchema
from ebr.pretraining.selection import snapshot_dir_problem
from ebr.runs.checks import Check, Integer, IntegerList, declared_checks, problems, statically_defined
from ebr.runs.ranks import world_size
from ebr.runs.wrapper import unwrapped
from ebr.serving.interests import InterestServing
from ebr.training.plans import CPU_SHARDING, SHARDING_PLANS

GPU_SHARDING = SHARDING_PLANS


class ConfigValidationError(ValueError):
    """The composed config holds values the job cannot run with (the message lists every one)."""


def available_sharding(cfg: DictConfig | None = None) -> tuple[str, ...]:
    """The sharding plans a job of `cfg` can use on this machine.

    Row-wise plans need GPUs: only a trainer on a GPU accelerator with CUDA available gets them.

    Args:
        cfg: the job's config (its `trainer.accelerator`); None: this machine's CPU.
    """
    accelerator = (
        str(OmegaConf.select(cfg, "trainer.accelerator", default="cpu")) if cfg is not None else "cpu"
    )
    if accelerator in ("gpu", "cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            return GPU_SHARDING
    return CPU_SHARDING


def validate_config(cfg: DictConfig) -> None:
    """Check the config of an `ebr-train` or `ebr-pretrain` job before any work.

    Args:
        cfg: the composed job config.

    Raises:
        ConfigValidationError: listing every invalid key with its value and what is allowed.
    """
    problems: list[str] = _missing_values(cfg)
    check = _Checker(cfg, problems)
    top = EbrPretrainSchema if OmegaConf.select(cfg, "pretrain", default=None) is not None else EbrSchema
    check.declared(top)
    check.declared(EvalSchema, "eval")
    _devices(cfg, problems)
    # the two-tower retriever's widths (its constructor arguments)
    check.rule("model.embedding_dim", Integer(1))
    check.rule("model.output_dim", Integer(1))
    check.rule("model.dense_hidden", IntegerList(allow_empty=True))
    check.target_arguments("split")
    _conditional(check, cfg, problems)
    check.targets(cfg)
    check.built("index", _instantiate)
    check.built("corpus", _instantiate)
    # the negatives part checks its own settings (ebr.training.negatives): built here, before work
    check.built("model.negatives", _instantiate)
    check.built("eval.simulation", _instantiate)
    check.data_path()
    check.snapshot_dir()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        shown = "\n  ".join(problems)
        raise ConfigValidationError(
            f"invalid config, found before any work: {problems[0]}{more}\n  {shown}"
            if more
            else f"invalid config, found before any work: {problems[0]}"
        )


def _devices(cfg: DictConfig, problems: list[str]) -> None:
    """The sharding plans, accelerator and batch shares this machine and job size allow."""
    plans = available_sharding(cfg)
    device = "cuda" if plans == GPU_SHARDING else "cpu (gloo)"
    ranks = world_size()
    for node in ("train", "pretrain"):
        sharding = OmegaConf.select(cfg, f"{node}.sharding", default=None)
        if sharding is not None and sharding not in plans:
            needs_gpu = " (it needs GPUs)" if sharding in GPU_SHARDING else ""
            problems.append(
                f"{node}.sharding={sharding!r}{needs_gpu}: the plans available on this device ({device}) are"
                f" {', '.join(plans)}"
            )
        batch_size = OmegaConf.select(cfg, f"{node}.batch_size", default=None)
        if ranks > 1 and isinstance(batch_size, int) and batch_size % ranks:
            problems.append(
                f"{node}.batch_size={batch_size}: a {ranks}-rank job trains on equal per-rank shares of"
                f" every batch, so the batch size must be a multiple of {ranks}"
            )
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="cpu"))
    # available_sharding gives the GPU plans exactly when a GPU accelerator finds CUDA
    if accelerator in ("gpu", "cuda") and plans != GPU_SHARDING:
        problems.append(
            f"trainer.accelerator={accelerator!r} (trainer=gpu): CUDA is not available on this"
            " machine (install the CUDA wheels with `bash scripts/setup.sh --cuda`, or use trainer=cpu)"
        )


def _conditional(check: _Checker, cfg: DictConfig, problems: list[str]) -> None:
    """Conditional retrieval's keys: each owner checks its own (ebr.models.conditioning,
    ebr.serving.interests); the one rule across both is here."""
    if OmegaConf.select(cfg, "model.conditioning", default=None) is not None:
        # imported only for a model with the node: it loads torch and torchrec, which a baseline
        # job never needs (experiments/benchmark.md, "Start-up")
        from ebr.models.conditioning import ConditioningConfig

        check.built("model.conditioning", ConditioningConfig.of)
    check.built("serving", InterestServing.of)
    mode = OmegaConf.select(cfg, "model.conditioning.mode", default="none")
    if mode != "none" and OmegaConf.select(cfg, "serving.interest_filter", default="none") == "union":
        problems.append(
            f"serving.interest_filter='union' is one plain query per user, for an unconditioned model;"
            f" model.conditioning.mode={mode!r} serves one query per interest (filter none, post or pre)"
        )


def _instantiate(node: Any) -> None:
    import hydra

    hydra.utils.instantiate(node)


class _Checker:
    """Appends a line to `problems` for every check that fails; a key absent from the config is skipped."""

    def __init__(self, cfg: DictConfig, problems: list[str]) -> None:
        self.cfg = cfg
        self.problems = problems

    def _get(self, key: str) -> tuple[bool, Any]:
        missing = object()
        value = OmegaConf.select(self.cfg, key, default=missing, throw_on_missing=False)
        if value is missing:
            return False, None
        return True, value

    def integer(self, key: str, minimum: int) -> None:
        self.rule(key, Integer(minimum))

    def rule(self, key: str, rule: Check) -> None:
        """Apply one rule to the value at `key` (when present)."""
        present, value = self._get(key)
        if present:
            line = rule.problem(key, _plain(value))
            if line is not None:
                self.problems.append(line)

    def declared(self, schema: type, prefix: str = "") -> None:
        """The checks a typed schema declares on its fields, its nested schemas' too."""
        for name, rule in declared_checks(schema).items():
            self.rule(f"{prefix}.{name}" if prefix else name, rule)
        for setting in dataclasses.fields(schema):
            nested = setting.default_factory
            if nested is not dataclasses.MISSING and dataclasses.is_dataclass(nested):
                self.declared(nested, f"{prefix}.{setting.name}" if prefix else setting.name)

    def target_arguments(self, key: str) -> None:
        """The checks the `_target_` function or class of the node at `key` declares on its settings."""
        present, node = self._get(key)
        if not present or not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
            return
        from hydra._internal.utils import _locate

        try:
            owner = _locate(node["_target_"])
        except Exception:
            return  # named by `targets`
        values = {str(name): _plain(value) for name, value in node.items() if not str(name).startswith("_")}
        self.problems.extend(problems(owner, values, key))

    def targets(self, cfg: DictConfig) -> None:
        """Every `_target_` of the config names something importable."""
        from hydra._internal.utils import _locate

        for key, target in _targets(OmegaConf.to_container(cfg, resolve=False)):
            if not isinstance(target, str) or target.startswith("${"):
                continue
            if statically_defined(target):
                # found in its module's source: importing it would load torch for a job that
                # never uses it (a baseline job's unused `train.*` targets)
                continue
            try:
                _locate(target)
            except Exception as error:  # ImportError, AttributeError: whatever the import raised
                reason = " ".join(str(error).split()) or type(error).__name__
                self.problems.append(f"{key}._target_={target!r}: cannot be imported ({reason})")

    def built(self, key: str, build: Callable[[Any], object]) -> None:
        """Build the node at `key` as the job will, so its owner's own checks run now."""
        present, value = self._get(key)
        if not present or value is None:
            return
        try:
            build(value)
        except Exception as error:
            cause = unwrapped(error)  # Hydra wraps the constructor's own error: show that one
            message = str(cause).strip() or type(cause).__name__
            # the owners name their keys (`serving.n_interests must be ...`): no second prefix
            self.problems.append(message if message.startswith(f"{key}.") else f"{key}: {message}")

    def data_path(self) -> None:
        """A data loader's `path` (a file or folder the user gives) must exist."""
        data = OmegaConf.select(self.cfg, "data", default=None)
        # `"path" in data` is False for a missing (???) value: look at the keys
        keys = list(data.keys()) if isinstance(data, DictConfig) else []
        if "path" in keys and OmegaConf.is_missing(data, "path"):
            return  # named by `_missing_values`
        present, path = self._get("data.path")
        if not present or path is None or not isinstance(path, str):
            return
        if not Path(path).exists():
            self.problems.append(f"data.path={path!r}: no such file or folder")

    def snapshot_dir(self) -> None:
        """Pre-trained ID tables' snapshot directory exists and holds snapshots (which one
        qualifies needs the training window: chosen after the data load, ebr.retrieval.id_embedding)."""
        if OmegaConf.select(self.cfg, "model.id_embedding.mode", default=None) != "pretrained":
            return
        present, directory = self._get("model.id_embedding.snapshot_dir")
        if not present or not isinstance(directory, str) or directory == "???":
            return  # unset: named by `_missing_values`, or by the part's own check
        problem = snapshot_dir_problem(directory)
        if problem is not None:
            self.problems.append(f"model.id_embedding.snapshot_dir={directory!r}: {problem}")


# what a mandatory value (`???` in its group's file) is, for the message that asks for it
MANDATORY_VALUES = {
    "data.path": "the file or folder to read",
    "model.id_embedding.snapshot_dir": "the snapshot directory an ebr-pretrain run wrote (its snapshots/)",
}


def _missing_values(cfg: DictConfig) -> list[str]:
    """A line per mandatory value (`???`) the composed config leaves unset: the key, how to set it."""
    lines = []
    for key in _missing_keys(OmegaConf.to_container(cfg, resolve=False)):
        what = MANDATORY_VALUES.get(key, "a value its config group leaves to the user")
        lines.append(f"{key} is required: {what} (add {key}=... to the command line)")
    return lines


def _missing_keys(node: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose value is Hydra's mandatory marker `???` (OmegaConf.missing_keys fails
    on a value interpolating one)."""
    if isinstance(node, dict):
        items = [(f"{prefix}.{key}" if prefix else str(key), value) for key, value in node.items()]
    elif isinstance(node, list):
        items = [(f"{prefix}[{i}]", value) for i, value in enumerate(node)]
    else:
        return [prefix] if node == "???" else []
    return [key for path, value in items for key in _missing_keys(value, path)]


def _targets(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "_target_":
                found.append((prefix or "<root>", value))
            else:
                found += _targets(value, path)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _targets(value, f"{prefix}[{i}]")
    return found


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if isinstance(value, ListConfig | DictConfig) else value

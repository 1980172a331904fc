"""Validate before work: every option and value a job uses, checked when the config is composed.

`validate_config(cfg)` is called by the application shell (ebr.app.run_app, inside the job wrapper
so a refusal is recorded like any failure) before the job reads any data. It collects every problem
and raises one `ConfigValidationError` naming each key, its value and what is allowed:

- enumerations (`train.logq`, `train.sharding`, `train.sparse_optimizer.kind`, `eval.window`, ...);
- ranges and types (`seed >= 0`, `train.batch_size > 0`, learning rates > 0, `eval.ks` ...);
- resumable checkpoints (`train.checkpoint_every_n_steps > 0`) in one-process jobs only;
- the torchrec sharding plans available on this device: on CPU (gloo) `table_wise`,
  `column_wise` and `data_parallel`; `row_wise` and `table_row_wise` need GPUs;
- the index (`index.*`): the faiss factory string and its parameters (ebr.serving.index_config
  builds an empty index, so a bad string, HNSW M <= 0, IVF nlist <= 0, nprobe <= 0 fail here);
- every `_target_` (an unknown crossing module, a misspelt class) can be imported;
- a data file or folder the data group names (`data.path`) exists.

The checks read the config only; the data is checked by its loader (ebr.data.loaders).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

# torchrec sharding plans by device kind (names of ebr.training.distributed.SHARDING_TYPES)
CPU_SHARDING = ("table_wise", "column_wise", "data_parallel")
GPU_SHARDING = (*CPU_SHARDING, "row_wise", "table_row_wise")
LOGQ_OPTIONS = ("sketch", "exact", "none")
EVAL_WINDOWS = ("test", "val")
SNAPSHOT_ENDS = ("train_start", "train_end")
# conditional retrieval (the same names as ebr.models.conditioning and ebr.serving.interests)
CONDITIONING_MODES = ("none", "early_fusion", "late_fusion")
CONDITIONING_SOURCES = ("item_interest", "source_interest")
INTEREST_FILTERS = ("none", "post", "pre", "union")
INTEREST_BUDGETS = ("equal", "proportional")
INTERESTS_FROM = ("followed", "inferred")
PRE_FILTER_METHODS = ("sub_index", "selector")


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
    problems: list[str] = []
    check = _Checker(cfg, problems)
    check.integer("seed", minimum=0)
    check.integer("num_threads", minimum=1)
    plans = available_sharding(cfg)
    device = "cuda" if plans == GPU_SHARDING else "cpu (gloo)"
    for node in ("train", "pretrain"):
        if OmegaConf.select(cfg, node, default=None) is None:
            continue
        check.integer(f"{node}.batch_size", minimum=1)
        check.positive(f"{node}.dense_lr")
        check.positive(f"{node}.sparse_lr")
        check.choice(f"{node}.logq", LOGQ_OPTIONS)
        sharding = OmegaConf.select(cfg, f"{node}.sharding", default=None)
        if sharding is not None and sharding not in plans:
            needs_gpu = " (it needs GPUs)" if sharding in GPU_SHARDING else ""
            problems.append(
                f"{node}.sharding={sharding!r}{needs_gpu}: the plans available on this device ({device}) are"
                f" {', '.join(plans)}"
            )
        check.positive(f"{node}.loss.temperature")
        check.positive(f"{node}.loss.max_scale")
        check.choice(f"{node}.sparse_optimizer.kind", ("rowwise_adagrad", "adagrad", "sgd", "adam"))
    check.integer("train.prefetch_batches", minimum=0)
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="cpu"))
    # available_sharding gives the GPU plans exactly when a GPU accelerator finds CUDA
    if accelerator in ("gpu", "cuda") and plans != GPU_SHARDING:
        problems.append(
            f"trainer.accelerator={accelerator!r} (trainer=gpu): CUDA is not available on this"
            " machine (install the CUDA wheels with `bash scripts/setup.sh --cuda`, or use trainer=cpu)"
        )
    ranks = int(os.environ.get("WORLD_SIZE", "1") or 1)
    batch_size = OmegaConf.select(cfg, "train.batch_size", default=None)
    if ranks > 1 and isinstance(batch_size, int) and batch_size % ranks:
        problems.append(
            f"train.batch_size={batch_size}: a {ranks}-rank job trains on equal per-rank shares of every"
            f" batch, so the batch size must be a multiple of {ranks}"
        )
    check.integer("train.checkpoint_every_n_steps", minimum=0)
    check.integer("pretrain.embedding_dim", minimum=1)
    check.positive("pretrain.snapshot.every_days")
    check.positive("pretrain.snapshot.window_days")
    check.choice("pretrain.snapshot.end", SNAPSHOT_ENDS)
    check.integer("pretrain.snapshot.max_snapshots", minimum=1, optional=True)
    check.integer("features.history_length", minimum=1)
    check.integer("serving.batch_size", minimum=1)
    check.integer("model.embedding_dim", minimum=1)
    check.integer("model.output_dim", minimum=1)
    check.positive_list("model.dense_hidden", allow_empty=True)
    check.positive_list("eval.ks")
    check.choice("eval.window", EVAL_WINDOWS)
    check.integer("eval.ann_recall_queries", minimum=0)
    check.non_negative("split.val_days")
    check.positive("split.test_days")
    check.positive("split.train_days", optional=True)
    check.positive("split.pretrain_days", optional=True)
    check.integer("split.min_engagements", minimum=1)
    check.fraction("split.test_fraction")
    check.fraction("split.val_fraction", allow_zero=True)
    _conditional(check, cfg, problems)
    check.targets(cfg)
    check.built("index", _instantiate)
    # the negatives part checks its own settings (ebr.training.negatives): built here, before work
    check.built("model.negatives", _instantiate)
    check.built("eval.simulation", _instantiate)
    check.data_path()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        shown = "\n  ".join(problems)
        raise ConfigValidationError(
            f"invalid config, found before any work: {problems[0]}{more}\n  {shown}"
            if more
            else f"invalid config, found before any work: {problems[0]}"
        )


def _conditional(check: _Checker, cfg: DictConfig, problems: list[str]) -> None:
    """Conditional retrieval's keys (ebr.models.conditioning, ebr.serving.interests)."""
    check.choice("model.conditioning.mode", CONDITIONING_MODES)
    check.choice("model.conditioning.source", CONDITIONING_SOURCES)
    check.choice("serving.interest_filter", INTEREST_FILTERS)
    check.choice("serving.interest_budget", INTEREST_BUDGETS)
    check.choice("serving.interests_from", INTERESTS_FROM)
    check.choice("serving.pre_filter_method", PRE_FILTER_METHODS)
    check.integer("serving.n_interests", minimum=1)
    check._number("serving.post_overfetch", lambda v: 1 <= v < float("inf"), "a finite number >= 1", False)
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

    def integer(self, key: str, minimum: int, optional: bool = False) -> None:
        present, value = self._get(key)
        if not present or (optional and value is None):
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problems.append(f"{key}={value!r}: must be an integer >= {minimum}")

    def _number(self, key: str, ok: Callable[[float], bool], what: str, optional: bool) -> None:
        present, value = self._get(key)
        if not present or (optional and value is None):
            return
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not number or value != value or not ok(float(value)):
            self.problems.append(f"{key}={value!r}: must be {what}")

    def positive(self, key: str, optional: bool = False) -> None:
        self._number(key, lambda v: 0 < v < float("inf"), "a finite number > 0", optional)

    def non_negative(self, key: str, optional: bool = False) -> None:
        self._number(key, lambda v: 0 <= v < float("inf"), "a finite number >= 0", optional)

    def fraction(self, key: str, allow_zero: bool = False) -> None:
        low = "0 <=" if allow_zero else "0 <"
        self._number(
            key, lambda v: (v >= 0 if allow_zero else v > 0) and v < 1, f"a number with {low} x < 1", False
        )

    def choice(self, key: str, allowed: tuple[str, ...]) -> None:
        present, value = self._get(key)
        if present and value not in allowed:
            self.problems.append(f"{key}={value!r}: must be one of {', '.join(allowed)}")

    def positive_list(self, key: str, allow_empty: bool = False) -> None:
        present, value = self._get(key)
        if not present or value is None:
            return
        items = list(value) if isinstance(value, ListConfig | list | tuple) else None
        bad = items is None or (not items and not allow_empty)
        bad = bad or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in items or [])
        if bad:
            self.problems.append(
                f"{key}={_shown(value)}: must be a {'' if allow_empty else 'non-empty '}list of integers >= 1"
            )

    def targets(self, cfg: DictConfig) -> None:
        """Every `_target_` of the config names something importable."""
        from hydra._internal.utils import _locate

        for key, target in _targets(OmegaConf.to_container(cfg, resolve=False)):
            if not isinstance(target, str) or target.startswith("${"):
                continue
            try:
                _locate(target)
            except Exception as error:  # ImportError, AttributeError: whatever the import raised
                reason = " ".join(str(error).split()) or type(error).__name__
                self.problems.append(f"{key}._target_={target!r}: cannot be imported ({reason})")

    def built(self, key: str, build: Callable[[Any], None]) -> None:
        present, value = self._get(key)
        if not present or value is None:
            return
        try:
            build(value)
        except Exception as error:
            cause: BaseException = error
            # Hydra's instantiation wraps the constructor's own error: show that one
            while type(cause).__module__.startswith("hydra") and cause.__cause__ is not None:
                cause = cause.__cause__
            self.problems.append(f"{key}: {str(cause).strip() or type(cause).__name__}")

    def data_path(self) -> None:
        """A data loader's `path` (a file or folder the user gives) must exist."""
        data = OmegaConf.select(self.cfg, "data", default=None)
        # `"path" in data` is False for a missing (???) value: look at the keys
        keys = list(data.keys()) if isinstance(data, DictConfig) else []
        if "path" in keys and OmegaConf.is_missing(data, "path"):
            self.problems.append("data.path is required: the file or folder to read (data.path=...)")
            return
        present, path = self._get("data.path")
        if not present or path is None or not isinstance(path, str):
            return
        if not Path(path).exists():
            self.problems.append(f"data.path={path!r}: no such file or folder")


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


def _shown(value: Any) -> str:
    return repr(OmegaConf.to_container(value) if isinstance(value, ListConfig | DictConfig) else value)

"""The typed top of the training config: every default of these keys is written here, once.

Registered with Hydra's ConfigStore as `ebr_schema` and listed first in `conf/train.yaml`'s
defaults, so a mistyped key or a value of the wrong type fails before any work, naming the key.
`python -m ebr.train --cfg job` prints the whole composed config. Config groups that build objects
(`data`, `model`, ...) are checked by their targets' constructors instead; where one owner builds a
group's object (the world, the serving corpus, the simulated funnel, the splits), its dataclass or
function is the group's schema (`schema/<name>`, `owner_schema`), first in every preset of the
group, so the defaults stay written once, in the owner. A field's rule (a range, an option list)
is declared beside its default (`ebr.runs.checks`) and applied by ebr.validation before any work.

`ebr-pretrain`'s top is `EbrPretrainSchema` (first in `conf/pretrain.yaml`), sharing the loss and
optimizer schemas below under `pretrain`.

The `train` node's loss and two optimizers are nested `_target_` nodes (the module receives objects);
the knobs researchers sweep (`train.dense_lr`, `train.logq`, ...) stay one key each.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, get_args, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import II

from ebr.data.splits import global_temporal_split, leave_last_out_split, per_user_temporal_split
from ebr.data.world.config import register_world_schema
from ebr.evaluation.simulation import SimulationConfig
from ebr.evaluation.task import HIT_LEVELS, WINDOWS
from ebr.runs.checks import POSITIVE, Integer, IntegerList, OneOf, checked
from ebr.serving.corpus import CorpusPolicy
from ebr.serving.interests import InterestServing
from ebr.training.plans import DEFAULT_SHARDING

# the owners' option lists, named by path: importing them (torch, torchrec) would slow every command
LOGQ_OPTIONS = "ebr.models.frequency.LOGQ_OPTIONS"
SPARSE_OPTIMIZERS = "ebr.training.distributed.SPARSE_OPTIMIZERS"
SNAPSHOT_ENDS = "ebr.pretraining.selection.SNAPSHOT_ENDS"


# the value types a derived schema node enforces; any other annotation is left to the owner's checks
# (Any). Floats only where asked: a float node turns `7` into `7.0` in every record of the job
# (run.json, messages), so a group whose presets were untyped keeps its numbers as written.
_PLAIN_TYPES = (int, bool, str)


def _schema_type(hint: Any, floats: bool) -> Any:
    plain = (*_PLAIN_TYPES, float) if floats else _PLAIN_TYPES
    if hint in plain:
        return hint
    args = get_args(hint)
    rest = [arg for arg in args if arg is not type(None)]
    if len(rest) == 1 and len(args) == 2 and rest[0] in plain:
        return Optional[rest[0]]  # noqa: UP045  (a runtime type for OmegaConf, not an annotation)
    return Any


def settings_fields(
    owner: Callable[..., Any], skip: Sequence[str] = (), floats: bool = False
) -> list[tuple[str, Any, Any]]:
    """`(name, type, dataclasses.field)` of every setting of `owner` with its default, for a schema.

    The settings are a dataclass's init fields or a function's parameters with defaults; the owner
    stays the one place of their defaults (and of their checks, run when the object is built).

    Args:
        owner: a dataclass or a function.
        skip: settings left out (given by the caller, not by the config).
        floats: type float settings as floats (else they take any value, kept as written).
    """
    hints = get_type_hints(owner)
    found: list[tuple[str, Any, Any]] = []
    if dataclasses.is_dataclass(owner):
        for setting in dataclasses.fields(owner):
            if not setting.init or setting.name in skip:
                continue
            if setting.default is dataclasses.MISSING:
                raise TypeError(f"{owner.__qualname__}.{setting.name}: a schema needs a default")
            kind = _schema_type(hints[setting.name], floats)
            found.append((setting.name, kind, field(default=setting.default)))
        return found
    for name, parameter in inspect.signature(owner).parameters.items():
        if name in skip:
            continue
        if parameter.default is inspect.Parameter.empty:
            raise TypeError(f"{owner.__qualname__}({name}): a schema needs a default")
        found.append((name, _schema_type(hints[name], floats), field(default=parameter.default)))
    return found


def owner_schema(owner: Callable[..., Any], skip: Sequence[str] = (), partial: bool = False) -> type:
    """A structured config of `owner`'s settings and defaults, with `_target_` naming the owner.

    Args:
        owner: the dataclass or function a config group's presets build.
        skip: settings the caller gives (not in the config).
        partial: the presets build a partial (`_partial_: true`), called later with the rest.
    """
    target = f"{owner.__module__}.{owner.__qualname__}"
    extra = [("_partial_", bool, field(default=True))] if partial else []
    fields = [("_target_", str, field(default=target)), *extra, *settings_fields(owner, skip)]
    return dataclasses.make_dataclass(f"{owner.__qualname__}Schema", fields)


@dataclass
class FeaturesSchema:
    """Feature names each tower reads; null means every feature of the table.

    Args:
        history: add the user feature "history": the user's distinct training-window pins (the most
            recent `history_length`) pooled through a pin-id table, less a training example's own pin.
        history_causal: with `history`, a training example at time t reads the bag as it stood at t
            (pins engaged strictly before t, ties excluded): the whole-window bag also holds the
            user's later pins, which serving's never does. Serving and validation read the whole.
    """

    user_sparse: list[str] | None = None
    user_dense: list[str] | None = None
    pin_sparse: list[str] | None = None
    pin_dense: list[str] | None = None
    history: bool = False
    history_length: int = field(default=200, metadata=checked(Integer(1)))
    history_causal: bool = False


@dataclass
class LossSchema:
    """Sampled softmax over in-batch negatives (ebr.models.loss.SampledSoftmaxLoss)."""

    _target_: str = "ebr.models.loss.SampledSoftmaxLoss"
    temperature: float = field(default=0.05, metadata=checked(POSITIVE))
    max_scale: float = field(default=100.0, metadata=checked(POSITIVE))
    learn_temperature: bool = True


@dataclass
class DenseOptimizerSchema:
    """The Lightning optimizer of the towers, crossing and temperature (a partial: params come later)."""

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = II("..dense_lr")
    weight_decay: float = 0.0


@dataclass
class SparseOptimizerSchema:
    """The optimizer fused into the embedding tables' backward (ebr.training.distributed)."""

    _target_: str = "ebr.training.distributed.FusedTableOptimizer"
    kind: str = field(default="rowwise_adagrad", metadata=checked(OneOf(SPARSE_OPTIMIZERS)))
    lr: float = II("..sparse_lr")


@dataclass
class TrainSchema:
    """Optimisation of the two-tower model.

    `logq` is `sketch` (a streaming count-min sketch), `exact` (training-window counts) or `none`;
    `sharding` the torchrec plan of every table (`table_wise`, `column_wise`, `data_parallel` on CPU;
    row-wise plans need GPUs). Random negatives are the `model/negatives` part (ebr.training.negatives).
    `select_epoch`: the epoch model.pt holds, `last` or `best_val_loss` (docs/training_health.md).
    """

    batch_size: int = field(default=1024, metadata=checked(Integer(1)))
    dense_lr: float = field(default=1e-3, metadata=checked(POSITIVE))
    sparse_lr: float = field(default=0.05, metadata=checked(POSITIVE))
    logq: str = field(default="sketch", metadata=checked(OneOf(LOGQ_OPTIONS)))
    sharding: str = DEFAULT_SHARDING
    # after training, the losses on the training and validation windows with and without the ID
    # fields (metrics `id_ablation/*`): how much of the fit rests on the IDs; two forward passes
    id_ablated_loss: bool = False
    # a resumable checkpoint (RUN_DIR/checkpoints/last.ckpt: tables, fused and dense optimizer
    # state, data position, RNG states) after every N-th optimizer step; 0: none (the default,
    # so a plain run writes nothing extra). A run started again with the same command resumes
    # from it; it is deleted once model.pt is saved. Multi-process jobs too (rank 0 writes it).
    checkpoint_every_n_steps: int = field(default=0, metadata=checked(Integer(0)))
    # training batches built ahead in a background thread while the step runs (ebr/data/prefetch.py);
    # the batches are the same either way. 0 (the default) builds each on demand: the thread needs a
    # core the step does not use, which a 2-core machine running parallel sweep jobs does not have
    prefetch_batches: int = field(default=0, metadata=checked(Integer(0)))
    select_epoch: str = field(default="last", metadata=checked(OneOf("ebr.training.plans.SELECTIONS")))
    loss: LossSchema = field(default_factory=LossSchema)
    dense_optimizer: DenseOptimizerSchema = field(default_factory=DenseOptimizerSchema)
    sparse_optimizer: SparseOptimizerSchema = field(default_factory=SparseOptimizerSchema)


@dataclass
class PopularityPriorSchema:
    """Served score + weight * log(1 + training-window engagements of the pin); 0 switches it off."""

    _target_: str = "ebr.serving.score_terms.PopularityPrior"
    weight: float = 0.0


@dataclass
class ScoreTermsSchema:
    """Additive terms of the served score besides the model's inner product."""

    popularity_prior: PopularityPriorSchema = field(default_factory=PopularityPriorSchema)


# How a saved model is served: the index comes from the `index` group, these keys from here.
# `batch_size`: rows embedded per forward pass and queries searched per call (both bound memory);
# the interest keys and their defaults are ebr.serving.interests.InterestServing's (conditional
# retrieval's serving, docs/conditional.md).
ServingSchema = dataclasses.make_dataclass(
    "ServingSchema",
    [
        ("score_terms", ScoreTermsSchema, field(default_factory=ScoreTermsSchema)),
        ("batch_size", int, field(default=4096, metadata=checked(Integer(1)))),
        *settings_fields(InterestServing, floats=True),
    ],
)


@dataclass
class EvalSchema:
    """The `eval` group: offline evaluation over the full corpus and simulated online metrics.

    Registered as `schema/eval`, first in `conf/eval/default.yaml`; the simulated funnel's keys
    under `simulation` are `ebr.evaluation.simulation.SimulationConfig`'s (`schema/simulation`),
    used only when the data set is the synthetic world, whose true engagement model is known.

    Args:
        ks: the cut-offs K of every @K metric.
        window: the window scored: `test` (the reported numbers) or `val` (for tuning
            hyperparameters; never tune on test).
        refit: refit on train+val before scoring test (docs/real_data.md, "Refit"); tuning baselines
            still choose on train -> val. `eval=refit` (`data=movielens`'s default) turns it on;
            ignored, with a warning, when `window` is `val`.
        hit_level: what a hit is: `pin` (the engaged pin) or `signature` (any pin of its coarse
            image signature, counted once per ranking): one label definition for arms whose corpora
            de-duplicate (docs/serving_corpus.md); data without image signatures refuses it.
        exclude_train: drop each user's train-window engaged pins from their retrieval and relevant set.
        ann_recall_queries: users on which the ANN index's recall against exact search is measured.
        simulation: the simulated funnel (ebr.evaluation.simulation.SimulationConfig).
    """

    ks: list[int] = field(default_factory=lambda: [10, 50, 100], metadata=checked(IntegerList()))
    window: str = field(default="test", metadata=checked(OneOf(WINDOWS)))
    refit: bool = False
    hit_level: str = field(default="pin", metadata=checked(OneOf(HIT_LEVELS)))
    exclude_train: bool = True
    ann_recall_queries: int = field(default=10_000, metadata=checked(Integer(0)))
    simulation: Any = None


@dataclass
class PathsSchema:
    cache_dir: str = "${oc.env:EBR_CACHE_DIR,${oc.env:HOME}/.cache/ebr}"


@dataclass
class EbrSchema:
    """The top level of `conf/train.yaml`.

    Args:
        experiment_name: names output folders and the wandb group.
        seed: the training seed (0 is a seed like any other); the world's own seed is
            `data.config.seed`.
        force: re-run a job even when its run directory holds the results of the same config.
        num_threads: torch intra-op threads per job; 1 by default because parallel sweep jobs with
            more threads than cores slow each other down by an order of magnitude (measured: 16 ms
            vs 250 ms per forward).
        optimized_metric: the metric a hyperparameter search optimizes (a `metrics.json` key,
            e.g. `recall@50`), set by the `hparams_search` presets; the job then returns it to
            the sweeper and must score `eval.window=val`. Null: no search.
        eval_only: evaluate the saved two-tower model at `ckpt_path` instead of training
            (docs/serving_corpus.md): e.g. the same model over another `corpus`.
        ckpt_path: the saved model (`<run dir>/model.pt`, or the run directory) that
            `eval_only=true` serves; refused without it.
        model_cache: a directory of trained two-tower models keyed by everything their training
            read (ebr.retrieval.model_cache): a job whose training would repeat a stored one serves
            that model instead. Serving ablations (`experiment=corpus`) set it; null: every job trains.
        notice: a line the job logs when no experiment is chosen and each of its `when` keys
            (dotted key -> value) holds (conf/notice/); null: none.
    """

    experiment_name: str = "default"
    seed: int = field(default=0, metadata=checked(Integer(0)))
    force: bool = False
    verbose: bool = False  # show every warning and log line (default: the harmless ones silenced)
    num_threads: int = field(default=1, metadata=checked(Integer(1)))
    optimized_metric: str | None = None
    eval_only: bool = False
    ckpt_path: str | None = None
    model_cache: str | None = None
    features: FeaturesSchema = field(default_factory=FeaturesSchema)
    train: TrainSchema = field(default_factory=TrainSchema)
    serving: ServingSchema = field(default_factory=ServingSchema)
    paths: PathsSchema = field(default_factory=PathsSchema)
    # experiments fill this in (baseline arm, headline metrics, the paper's reported deltas)
    report: Any = None
    notice: Any = None
    data: Any = None
    split: Any = None
    corpus: Any = None
    model: Any = None
    index: Any = None
    eval: Any = None
    trainer: Any = None
    logger: Any = None


@dataclass
class SnapshotScheduleSchema:
    """Which pre-training snapshots `ebr-pretrain` writes (the rule: docs/pretraining.md).

    Args:
        every_days: cadence: snapshot windows end at train_start, train_start - every_days, ...
        window_days: each snapshot's trailing window length.
        end: `train_start` (every window ends at or before the retrieval training window starts)
            or `train_end` (one more, newest snapshot whose window ends where training ends).
        max_snapshots: keep at most this many, newest first (null: as many as the data allows).
        dir: where the snapshot set goes (null: `snapshots/` in the run directory).
    """

    every_days: float = field(default=7.0, metadata=checked(POSITIVE))
    window_days: float = field(default=14.0, metadata=checked(POSITIVE))
    end: str = field(default="train_start", metadata=checked(OneOf(SNAPSHOT_ENDS)))
    max_snapshots: int | None = field(default=None, metadata=checked(Integer(1, optional=True)))
    dir: str | None = None


@dataclass
class PretrainSchema:
    """Contrastive pre-training of the user and pin ID tables (ebr.pretraining).

    `batch_size` is global, as `train.batch_size` is: N ranks train on equal shares of every batch
    (ebr.pretraining.model.PairBatches). `logq` is `exact` (counts of the snapshot's window),
    `sketch` or `none`; `sharding` the torchrec plan of both tables (`table_wise`, `column_wise`,
    `data_parallel` on CPU).
    """

    embedding_dim: int = field(default=32, metadata=checked(Integer(1)))
    batch_size: int = field(default=512, metadata=checked(Integer(1)))
    dense_lr: float = field(default=1e-2, metadata=checked(POSITIVE))
    sparse_lr: float = field(default=0.1, metadata=checked(POSITIVE))
    logq: str = field(default="exact", metadata=checked(OneOf(LOGQ_OPTIONS)))
    sharding: str = DEFAULT_SHARDING
    loss: LossSchema = field(default_factory=LossSchema)
    dense_optimizer: DenseOptimizerSchema = field(default_factory=DenseOptimizerSchema)
    sparse_optimizer: SparseOptimizerSchema = field(default_factory=SparseOptimizerSchema)
    snapshot: SnapshotScheduleSchema = field(default_factory=SnapshotScheduleSchema)


@dataclass
class EbrPretrainSchema:
    """The top level of `conf/pretrain.yaml` (the keys are those of `EbrSchema` where they are shared)."""

    experiment_name: str = "pretrain"
    seed: int = field(default=0, metadata=checked(Integer(0)))
    force: bool = False
    verbose: bool = False
    num_threads: int = field(default=1, metadata=checked(Integer(1)))
    pretrain: PretrainSchema = field(default_factory=PretrainSchema)
    paths: PathsSchema = field(default_factory=PathsSchema)
    report: Any = None
    data: Any = None
    split: Any = None
    trainer: Any = None
    logger: Any = None


def register_schemas() -> None:
    """Register the schemas every ebr Hydra app composes with (idempotent).

    Besides the two tops, each config group whose options build one owner's object gets that
    owner's settings and defaults as `schema/<name>` (first in the group's presets, so a preset
    lists only what it changes): the world (`schema/world`), the serving corpus (`schema/corpus`),
    the evaluation (`schema/eval`) and its simulated funnel (`schema/simulation`) and the splits
    (`schema/split/<function>`).
    """
    store = ConfigStore.instance()
    store.store(name="ebr_schema", node=EbrSchema)
    store.store(name="ebr_pretrain_schema", node=EbrPretrainSchema)
    register_world_schema()
    store.store(group="schema", name="corpus", node=owner_schema(CorpusPolicy))
    store.store(group="schema", name="eval", node=EvalSchema)
    store.store(group="schema", name="simulation", node=owner_schema(SimulationConfig))
    for split in (global_temporal_split, per_user_temporal_split, leave_last_out_split):
        # the data comes from the job and `refit` from eval.refit (ebr.retrieval.refit)
        node = owner_schema(split, skip=("data", "refit"), partial=True)
        store.store(group="schema/split", name=split.__name__.removesuffix("_split"), node=node)


def with_default_experiment(overrides: Sequence[str], default: str) -> list[str]:
    """`overrides` with `experiment=<default>` in front, unless they already pick an experiment.

    Args:
        overrides: Hydra command-line overrides.
        default: the experiment a diagnostic script runs on when none is given.
    """
    chosen = any(override.startswith("experiment=") for override in overrides)
    return [*([] if chosen else [f"experiment={default}"]), *overrides]

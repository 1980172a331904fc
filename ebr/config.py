"""The typed top of the training config: every default of these keys is written here, once.

Registered with Hydra's ConfigStore as `ebr_schema` and listed first in `conf/train.yaml`'s
defaults, so a mistyped key or a value of the wrong type fails before any work, naming the key.
`conf/train.yaml` lists the config groups and Hydra's settings only; `python -m ebr.train --cfg job`
prints the whole composed config. Config groups that build objects (`data`, `model`, ...) are
checked by their targets' constructors instead.

`ebr-pretrain` has its own top, `EbrPretrainSchema` (`ebr_pretrain_schema`, first in
`conf/pretrain.yaml`), sharing the loss and optimizer schemas below under `pretrain`.

The `train` node holds the two-tower model's optimisation as objects to build: the loss and the
two optimizers are nested `_target_` nodes, so the training module receives objects; the scalar
knobs researchers sweep (`train.dense_lr`, `train.sparse_lr`, `train.logq`, ...) stay one key each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II

from ebr.data.world.config import register_world_schema


@dataclass
class FeaturesSchema:
    """Feature names each tower reads; null means every feature of the table.

    `history: true` adds the user feature "history": the user's distinct training-window pins (the
    most recent `history_length`), pooled through a pin-id table; a training example's own pin is
    left out of its bag, and nothing after the training window is read.
    """

    user_sparse: list[str] | None = None
    user_dense: list[str] | None = None
    pin_sparse: list[str] | None = None
    pin_dense: list[str] | None = None
    history: bool = False
    history_length: int = 200


@dataclass
class LossSchema:
    """Sampled softmax over in-batch negatives (ebr.models.loss.SampledSoftmaxLoss)."""

    _target_: str = "ebr.models.loss.SampledSoftmaxLoss"
    temperature: float = 0.05
    max_scale: float = 100.0
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
    kind: str = "rowwise_adagrad"
    lr: float = II("..sparse_lr")


@dataclass
class TrainSchema:
    """Optimisation of the two-tower model.

    `logq` is `sketch` (a streaming count-min sketch), `exact` (training-window counts) or
    `none`; `sharding` the torchrec plan of every table (`table_wise`, `column_wise`,
    `data_parallel` on CPU; row-wise plans need GPUs). Random negatives are the `model/negatives`
    part (ebr.training.negatives).
    """

    batch_size: int = 1024
    dense_lr: float = 1e-3
    sparse_lr: float = 0.05
    logq: str = "sketch"
    sharding: str = "table_wise"
    # after training, the losses on the training and validation windows with and without the ID
    # fields (metrics `id_ablation/*`): how much of the fit rests on the IDs; two forward passes
    id_ablated_loss: bool = False
    # a resumable checkpoint (RUN_DIR/checkpoints/last.ckpt: tables, fused and dense optimizer
    # state, data position, RNG states) after every N-th optimizer step; 0: none (the default,
    # so a plain run writes nothing extra). A run started again with the same command resumes
    # from it; it is deleted once model.pt is saved. Multi-process jobs too (rank 0 writes it).
    checkpoint_every_n_steps: int = 0
    # training batches built ahead in a background thread while the step runs (ebr/data/prefetch.py);
    # the batches are the same either way. 0 (the default) builds each on demand: the thread needs a
    # core the step does not use, which a 2-core machine running parallel sweep jobs does not have
    prefetch_batches: int = 0
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


@dataclass
class ServingSchema:
    """How a saved model is served: the index comes from the `index` group, these from here."""

    score_terms: ScoreTermsSchema = field(default_factory=ScoreTermsSchema)
    # rows embedded per forward pass and queries searched per call (both bound memory)
    batch_size: int = 4096
    # conditional retrieval's serving (ebr/serving/interests.py, docs/conditional.md): per user its
    # top n_interests (followed or inferred), one query each with an equal or proportional share of
    # K, an interest filter (none, post, pre; union: one plain query over the user's interests' pins)
    interest_filter: str = "none"
    n_interests: int = 3
    interest_budget: str = "equal"
    interests_from: str = "followed"
    post_overfetch: float = 4.0
    pre_filter_method: str = "sub_index"
    # topic_match@K, filtered_hr@100, recall@100 per interest and per user group, sim/* per group
    interest_metrics: bool = False


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
    """

    experiment_name: str = "default"
    seed: int = 0
    force: bool = False
    num_threads: int = 1
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

    every_days: float = 7.0
    window_days: float = 14.0
    end: str = "train_start"
    max_snapshots: int | None = None
    dir: str | None = None


@dataclass
class PretrainSchema:
    """Contrastive pre-training of the user and pin ID tables (ebr.pretraining).

    `logq` is `exact` (counts of the snapshot's window), `sketch` or `none`; `sharding` the torchrec
    plan of both tables (`table_wise`, `column_wise`, `data_parallel` on CPU).
    """

    embedding_dim: int = 32
    batch_size: int = 512
    dense_lr: float = 1e-2
    sparse_lr: float = 0.1
    logq: str = "exact"
    sharding: str = "table_wise"
    loss: LossSchema = field(default_factory=LossSchema)
    dense_optimizer: DenseOptimizerSchema = field(default_factory=DenseOptimizerSchema)
    sparse_optimizer: SparseOptimizerSchema = field(default_factory=SparseOptimizerSchema)
    snapshot: SnapshotScheduleSchema = field(default_factory=SnapshotScheduleSchema)


@dataclass
class EbrPretrainSchema:
    """The top level of `conf/pretrain.yaml` (the keys are those of `EbrSchema` where they are shared)."""

    experiment_name: str = "pretrain"
    seed: int = 0
    force: bool = False
    num_threads: int = 1
    pretrain: PretrainSchema = field(default_factory=PretrainSchema)
    paths: PathsSchema = field(default_factory=PathsSchema)
    report: Any = None
    data: Any = None
    split: Any = None
    trainer: Any = None
    logger: Any = None


def register_schemas() -> None:
    """Register the schemas every ebr Hydra app composes with (idempotent)."""
    ConfigStore.instance().store(name="ebr_schema", node=EbrSchema)
    ConfigStore.instance().store(name="ebr_pretrain_schema", node=EbrPretrainSchema)
    register_world_schema()


def with_default_experiment(overrides: Sequence[str], default: str) -> list[str]:
    """`overrides` with `experiment=<default>` in front, unless they already pick an experiment.

    Args:
        overrides: Hydra command-line overrides.
        default: the experiment a diagnostic script runs on when none is given.
    """
    chosen = any(override.startswith("experiment=") for override in overrides)
    return [*([] if chosen else [f"experiment={default}"]), *overrides]

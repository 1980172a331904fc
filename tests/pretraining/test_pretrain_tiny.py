"""Pre-training on a tiny world learns: its loss falls, and users' nearest pins share their interests.

Both checks are computed here from the trained tables and the world's own interest tags, not from
the training code's figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from ebr.config import PretrainSchema
from ebr.data.schema import CLICK
from ebr.data.splits import global_temporal_split
from ebr.data.world import WorldConfig, generate_world
from ebr.pretraining.job import TrainedTables, train_tables, window_pairs
from ebr.pretraining.selection import snapshot_windows
from ebr.training.distributed import ensure_process_group

EPOCHS = 3
WORLD = WorldConfig(n_users=400, n_pins=200, n_interests=12, n_days=40)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[object, TrainedTables, np.ndarray, np.ndarray]:
    world = generate_world(WORLD)
    split = global_temporal_split(world, train_days=7)
    start, end = snapshot_windows(split.windows["pretrain"][0], *split.windows["train"], 7, 14)[0]
    users, pins = window_pairs(world.engagements(), start, end)
    # independently: the window's clicks and repins, from the raw events
    events = world.events
    mask = (events.timestamp >= start) & (events.timestamp < end) & (events.event >= CLICK)
    assert len(users) == int(mask.sum()) > 500
    assert end <= split.windows["train"][0], "the snapshot window ends before training starts"
    settings = OmegaConf.to_container(OmegaConf.structured(PretrainSchema), resolve=True)
    settings["batch_size"] = 256
    run_dir = tmp_path_factory.mktemp("pretrain")
    created = ensure_process_group(run_dir)
    try:
        result = train_tables(
            users,
            pins,
            settings,
            lambda: pl.Trainer(
                max_epochs=EPOCHS,
                accelerator="cpu",
                devices=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                default_root_dir=str(run_dir),
            ),
            seed=0,
        )
    finally:
        if created:
            dist.destroy_process_group()
    return world, result, users, pins


def _normalized(table: torch.Tensor) -> np.ndarray:
    array = table.numpy().astype(np.float64)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def _in_batch_loss(user: np.ndarray, pin: np.ndarray, scale: float, batch: int = 256) -> float:
    """Mean in-batch softmax cross-entropy of each pair against the other pairs' pins (no logQ)."""
    losses = []
    for b in range(0, len(user) - batch + 1, batch):
        logits = scale * user[b : b + batch] @ pin[b : b + batch].T
        logits -= logits.max(axis=1, keepdims=True)
        log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        losses.append(-np.mean(np.diag(log_softmax)))
    return float(np.mean(losses))


def test_the_contrastive_loss_falls_over_epochs(trained) -> None:
    _, result, users, pins = trained
    assert len(result.epoch_losses) == EPOCHS
    assert result.epoch_losses[-1] < 0.8 * result.epoch_losses[0], result.epoch_losses
    # independently: the trained tables score the window's pairs far better than the same
    # vectors assigned to the wrong ids (rows shuffled) do
    user_rows = np.searchsorted(result.ids["user"], users)
    pin_rows = np.searchsorted(result.ids["pin"], pins)
    assert (result.ids["user"][user_rows] == users).all()
    assert (result.ids["pin"][pin_rows] == pins).all()
    user, pin = _normalized(result.tables["user"]), _normalized(result.tables["pin"])
    order = np.random.default_rng(1).permutation(len(users))
    trained_loss = _in_batch_loss(user[user_rows[order]], pin[pin_rows[order]], result.scale)
    shuffled = np.random.default_rng(2).permutation(len(user))
    random_loss = _in_batch_loss(user[shuffled][user_rows[order]], pin[pin_rows[order]], result.scale)
    assert trained_loss < random_loss - 1.0, (trained_loss, random_loss)


def test_nearest_pins_share_the_users_interests_more_often_than_random_pins(trained) -> None:
    world, result, users, pins = trained
    user_interests, pin_interests = world.users.categorical["interests"], world.pins.categorical["interest"]

    def bag(feature, row: int) -> set[int]:
        return set(feature.values[feature.offsets[row] : feature.offsets[row + 1]].tolist())

    shares = np.array(
        [
            [bool(bag(user_interests, u) & bag(pin_interests, p)) for p in result.ids["pin"]]
            for u in result.ids["user"]
        ]
    )
    scores = _normalized(result.tables["user"]) @ _normalized(result.tables["pin"]).T
    engaged = np.zeros_like(shares)
    engaged[np.searchsorted(result.ids["user"], users), np.searchsorted(result.ids["pin"], pins)] = True
    rows = np.arange(len(scores))[:, None]
    nearest = np.argsort(-scores, axis=1)[:, :10]
    # the chance rate: every pin of the table counts, each equally (a uniformly random pin)
    assert shares[rows, nearest].mean() > shares.mean() + 0.12, (shares[rows, nearest].mean(), shares.mean())
    # and among pins the user never engaged in the window: the tables generalise through co-engagement
    unseen = np.argsort(-np.where(engaged, -np.inf, scores), axis=1)[:, :10]
    assert shares[rows, unseen].mean() > shares[~engaged].mean() + 0.05, (
        shares[rows, unseen].mean(),
        shares[~engaged].mean(),
    )


def test_tables_cover_exactly_the_window_users_and_pins(trained) -> None:
    _, result, users, pins = trained
    assert result.ids["user"].tolist() == sorted(set(users.tolist()))
    assert result.ids["pin"].tolist() == sorted(set(pins.tolist()))
    assert result.tables["user"].shape == (len(result.ids["user"]), 32)
    assert result.tables["pin"].shape == (len(result.ids["pin"]), 32)


def test_a_share_of_the_pairs_per_rank_is_disjoint_and_equal(tmp_path: Path) -> None:
    from ebr.pretraining.model import PairBatches

    users, pins = np.arange(103), np.arange(103) + 1000
    shares = [PairBatches(users, pins, 20, seed=3, rank=r, world_size=2) for r in (0, 1)]
    seen = [np.concatenate([b.users.numpy() for b in s]) for s in shares]
    # pretrain.batch_size is global, as train.batch_size: 5 whole batches of 20, 10 pairs per rank
    assert len(shares[0]) == len(shares[1]) == 5
    assert len(seen[0]) == len(seen[1]) == 50
    assert not set(seen[0]) & set(seen[1])
    # the ranks' shares of a batch are the one-process batch, cut in two
    whole = [b.users.numpy() for b in PairBatches(users, pins, 20, seed=3)]
    halves = [[b.users.numpy() for b in PairBatches(users, pins, 20, 3, r, 2)] for r in (0, 1)]
    assert all(np.array_equal(np.concatenate(h), w) for *h, w in zip(*halves, whole, strict=True))
    with pytest.raises(ValueError, match=r"pretrain\.batch_size=21 does not split into 2"):
        PairBatches(users, pins, 21, seed=3, rank=0, world_size=2)
    # pairs stay aligned in every batch, and the next pass is another order
    batches = list(shares[0])
    assert all((b.pins.numpy() == b.users.numpy() + 1000).all() for b in batches)
    assert not np.array_equal(np.concatenate([b.users.numpy() for b in batches]), seen[0])

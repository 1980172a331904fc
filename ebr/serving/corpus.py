"""The serving corpus: which pins the index holds (the `corpus` config group, docs/serving_corpus.md).

A corpus policy scores every pin by the engagements of the events the job fits on that precede
serving time, keeps the best-scored pin of each image signature (`dedup`) and then a budget of the
best-scored pins (`size`). `scoring=sum` is a (possibly weighted) count over the last `window_days`;
`scoring=time_decay` weighs each engagement by exp(-ln 2 * age / half_life_days). The default preset,
`corpus=train_window`, is a plain sum over the whole fitted window with no budget: every pin engaged
in `split.train`, exactly `training_window_corpus`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ebr.data.schema import (
    CLICK,
    EVENT_NAMES,
    REPIN,
    SECONDS_PER_DAY,
    DataValidationError,
    FeatureTable,
    Split,
    engaged_pairs,
)
from ebr.serving.signatures import best_members, pin_signatures, signature_level

SCORINGS = ("sum", "time_decay")
_ENGAGEMENTS = {EVENT_NAMES[CLICK]: CLICK, EVENT_NAMES[REPIN]: REPIN}


def training_window_corpus(split: Split) -> np.ndarray:
    """Sorted distinct ids of the pins engaged (click or repin) in the train window.

    Args:
        split: the time split; only `split.train` is read.

    Raises:
        DataValidationError: when split.train lacks the user/pin/event columns or has no engagements.
    """
    _, pins = split.train_engaged
    corpus = np.unique(pins)
    if corpus.size == 0:
        raise DataValidationError(
            "split.train: no click/repin events, so the training-window corpus is empty"
        )
    return corpus


@dataclass(frozen=True)
class ServingCorpus:
    """A built corpus and what building it decided.

    Args:
        pins: sorted distinct pin ids the index holds.
        serving_time: the time (seconds) the pins were scored at.
        scores: (n_pins,) float64 engagement score of every pin at serving time.
        signature: (n_pins,) the signature each pin was de-duplicated by (its own id when none).
        duplicates_removed: scored pins dropped because a better-scored pin has their signature.
        representative: with `remap_image_signature=true`, per pin the member of its coarse
            signature that carries its labels (the corpus member when there is one); else None.
        new_pins: corpus pins taken for the `new_pins` share (no engagement before serving time).
    """

    pins: np.ndarray
    serving_time: int
    scores: np.ndarray
    signature: np.ndarray
    duplicates_removed: int
    representative: np.ndarray | None = None
    new_pins: int = 0

    def metrics(self) -> dict[str, float]:
        """`corpus/size`, `corpus/duplicates_removed` and `corpus/new_pins`."""
        return {
            "corpus/size": float(len(self.pins)),
            "corpus/duplicates_removed": float(self.duplicates_removed),
            "corpus/new_pins": float(self.new_pins),
        }


@dataclass(frozen=True)
class CorpusPolicy:
    """How the serving corpus is chosen (built from `conf/corpus/*.yaml`; checked on construction).

    Args:
        scoring: "sum" (weighted count) or "time_decay" (each engagement weighted by
            exp(-ln 2 * age_days / half_life_days)).
        window_days: only engagements this many days before serving time count (None: the whole
            fitted window).
        half_life_days: the decay's half-life (required by time_decay, positive).
        weights: weight per engagement type ("click", "repin"); None: 1 each.
        size: the budget: a count of pins (int >= 1) or a fraction of all pins (float in (0, 1]);
            None: every scored pin.
        dedup: keep one pin per image signature, the best-scored one (coarse signatures with
            `remap_image_signature=true`, fine ones otherwise; a no-op for data without signatures).
        remap_image_signature: true: the coarse signature everywhere (corpus, the pins'
            `image_signature` feature, labels moved to their signature's representative); false:
            the fine signature (the old system); None: the data as loaded (today's default).
        new_pins: share of the budget (in [0, 1)) kept for pins too new to have any engagement
            before serving time: the most recently created of the pins that exist at serving time
            and have no score, one per signature, which only the model ranks; the engagement-scored
            pins fill the rest. 0 (the default): none. Needs a budget and the pins' `created_at`;
            not combined with `remap_image_signature=true` (an unengaged pin carries no labels to
            remap).
    """

    scoring: str = "sum"
    window_days: float | None = None
    half_life_days: float | None = None
    weights: Mapping[str, float] | None = None
    size: int | float | None = None
    dedup: bool = False
    remap_image_signature: bool | None = None
    new_pins: float = 0.0
    _weights: dict[int, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise ValueError(f"corpus.scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        if self.half_life_days is not None and not self.half_life_days > 0:
            raise ValueError(f"corpus.half_life_days must be positive, got {self.half_life_days}")
        if self.scoring == "time_decay" and self.half_life_days is None:
            raise ValueError("corpus.scoring=time_decay needs corpus.half_life_days")
        if self.window_days is not None and not self.window_days > 0:
            raise ValueError(f"corpus.window_days must be positive or null, got {self.window_days}")
        _check_size(self.size)
        if self.remap_image_signature and not self.dedup:
            raise ValueError(
                "corpus.remap_image_signature=true needs corpus.dedup=true (one pin per signature)"
            )
        if isinstance(self.new_pins, bool) or not 0 <= self.new_pins < 1:
            raise ValueError(
                f"corpus.new_pins must be a share of the budget in [0, 1), got {self.new_pins!r}"
            )
        if self.new_pins and self.size is None:
            raise ValueError("corpus.new_pins needs a budget (corpus.size)")
        if self.new_pins and self.remap_image_signature:
            raise ValueError("corpus.new_pins is not combined with corpus.remap_image_signature=true")
        weights = {"click": 1.0, "repin": 1.0} if self.weights is None else dict(self.weights)
        unknown = sorted(set(weights) - set(_ENGAGEMENTS))
        if unknown:
            raise ValueError(f"corpus.weights: unknown engagement type(s) {unknown} (known: click, repin)")
        values = [float(weights.get(name, 0.0)) for name in _ENGAGEMENTS]
        if any(not np.isfinite(v) or v < 0 for v in values) or not any(v > 0 for v in values):
            raise ValueError(f"corpus.weights must be non-negative with one positive, got {weights}")
        object.__setattr__(
            self, "_weights", {code: float(weights.get(n, 0.0)) for n, code in _ENGAGEMENTS.items()}
        )

    def budget(self, n_pins: int) -> int | None:
        """The budget in pins for a data set of `n_pins` pins (None: no budget).

        Args:
            n_pins: pins in the data set.

        Raises:
            ValueError: a count larger than the data's pins.
        """
        if self.size is None:
            return None
        if isinstance(self.size, int):
            if self.size > n_pins:
                raise ValueError(f"corpus.size={self.size} exceeds the data's {n_pins} pins")
            return self.size
        return max(1, round(self.size * n_pins))

    def scores(self, events: pd.DataFrame, serving_time: int, n_pins: int) -> np.ndarray:
        """(n_pins,) float64 engagement score of each pin at `serving_time`.

        Args:
            events: the fitted events (events schema); only engagements before `serving_time` count.
            serving_time: seconds.
            n_pins: pins in the data set.
        """
        _, pins = engaged_pairs(events, "corpus events")
        engaged = events["event"].to_numpy() >= CLICK
        times = events["timestamp"].to_numpy()[engaged].astype(np.int64)
        kinds = events["event"].to_numpy()[engaged]
        # never an event at or after serving time, even if a split handed one in
        keep = times < serving_time
        if self.window_days is not None:
            keep &= times >= serving_time - self.window_days * SECONDS_PER_DAY
        weight = np.zeros(len(pins))
        for code, value in self._weights.items():
            weight[kinds == code] = value
        if self.scoring == "time_decay":
            age_days = (serving_time - times) / SECONDS_PER_DAY
            weight = weight * decay_weights(age_days, float(self.half_life_days))
        return np.bincount(pins[keep], weights=weight[keep], minlength=n_pins).astype(np.float64)

    def build(self, pins: FeatureTable, events: pd.DataFrame, serving_time: int) -> ServingCorpus:
        """The corpus at `serving_time` from the fitted `events`.

        Args:
            pins: the pin table (its signatures, when `dedup`).
            events: the events the job fits on (`split.train`).
            serving_time: seconds; the start of the evaluated window.

        Raises:
            DataValidationError: no pin has a positive score.
        """
        budget = self.budget(pins.n_rows)
        scores = self.scores(events, serving_time, pins.n_rows)
        scored = np.flatnonzero(scores > 0)
        if scored.size == 0:
            raise DataValidationError(
                f"corpus: no engagement before serving time {serving_time} scores a pin"
                f" (corpus.window_days={self.window_days})"
            )
        level = signature_level(self.remap_image_signature)
        signature = pin_signatures(pins, level) if self.dedup else np.arange(pins.n_rows, dtype=np.int64)
        best = best_members(signature, scores)
        kept = scored[best[signature[scored]] == scored]
        fresh = self._new_pins(pins, scores, signature, serving_time, budget)
        engaged_budget = None if budget is None else budget - len(fresh)
        if engaged_budget is not None and engaged_budget < len(kept):
            # best score first, ties: lowest pin id
            kept = kept[np.lexsort((kept, -scores[kept]))[:engaged_budget]]
        kept = np.concatenate([kept, fresh])
        representative = best[signature] if self.remap_image_signature else None
        return ServingCorpus(
            np.sort(kept).astype(np.int64),
            int(serving_time),
            scores,
            signature,
            int(scored.size - np.sum(best[signature[scored]] == scored)),
            representative,
            len(fresh),
        )

    def _new_pins(
        self,
        pins: FeatureTable,
        scores: np.ndarray,
        signature: np.ndarray,
        serving_time: int,
        budget: int | None,
    ) -> np.ndarray:
        """The `new_pins` share of the budget: unscored pins created before serving time, newest
        first (ties: lowest id), one per signature and none of a scored pin's signature."""
        if not self.new_pins or budget is None:
            return np.zeros(0, dtype=np.int64)
        if "created_at" not in pins.meta:
            raise DataValidationError(
                "corpus.new_pins needs the pins' creation times (pins.meta['created_at'])"
            )
        created = np.asarray(pins.meta["created_at"], dtype=np.int64)
        taken = np.zeros(int(signature.max()) + 1, dtype=bool)
        taken[signature[scores > 0]] = True
        candidates = np.flatnonzero((scores <= 0) & (created < serving_time) & ~taken[signature])
        candidates = candidates[np.lexsort((candidates, -created[candidates]))]
        # one per signature: the newest member
        _, first = np.unique(signature[candidates], return_index=True)
        candidates = candidates[np.sort(first)]
        return candidates[: round(self.new_pins * budget)].astype(np.int64)


def decay_weights(age_days: np.ndarray, half_life_days: float) -> np.ndarray:
    """exp(-ln 2 * age / half-life): 1 at age 0, 1/2 after one half-life.

    Args:
        age_days: ages in days (non-negative).
        half_life_days: positive half-life.
    """
    if not half_life_days > 0:
        raise ValueError(f"corpus.half_life_days must be positive, got {half_life_days}")
    return np.exp(-np.log(2.0) * np.asarray(age_days, dtype=np.float64) / half_life_days)


def corpus_serving_time(split: Split, window: str) -> int:
    """When the corpus is built for scoring `window`: the window's start.

    Test: `split.reference_time`; val: the first validation timestamp. A split without global
    windows (the per-user split of real data) has no common start: its reference time is the
    earliest test event of any user (MovieLens: 1996, before almost every training rating), so
    the corpus is scored when the fitted window ends, one second after its last event.

    Args:
        split: the fitted split.
        window: "test" or "val" (`eval.window`).
    """
    if not split.windows:
        return int(split.train["timestamp"].max()) + 1
    if window == "val":
        if split.val.empty:
            raise DataValidationError("split.val: no events, so there is no validation serving time")
        return int(split.val["timestamp"].min())
    return int(split.reference_time)


def _check_size(size: object) -> None:
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int | float):
        raise ValueError(f"corpus.size must be a count, a fraction in (0, 1] or null, got {size!r}")
    if isinstance(size, int) and size < 1:
        raise ValueError(f"corpus.size must be at least 1 pin, got {size}")
    if isinstance(size, float) and not 0 < size <= 1:
        raise ValueError(f"corpus.size as a fraction of pins must be in (0, 1], got {size}")

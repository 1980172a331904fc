"""The headroom study's rows, measured over world seeds, and its printed tables.

For each technique's phenomenon (a `WorldConfig` knob) an ideal ranker is measured with the
phenomenon known and with it unknown, in the world with the knob on and in its control world with
the knob off (same seed). A gain is known minus unknown; its 95% interval is the t interval of the
seed-paired gains. `scripts/headroom.py` documents the rows and is their command line.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig
from scipy import stats

from ebr.data.loaders.synthetic import load_world
from ebr.data.schema import SECONDS_PER_DAY, InteractionData, Split, engaged_pairs
from ebr.data.world.config import WorldConfig
from ebr.diagnostics.headroom.conditional import conditional_variants, source_variants
from ebr.diagnostics.headroom.corpus import CORPUS_SHARE, corpus_variants
from ebr.diagnostics.headroom.rankers import CEILING, Variants, World, score_variants
from ebr.diagnostics.headroom.sequence import RECENT_K, sequence_variants
from ebr.evaluation.task import build_eval_task, build_simulation_task
from ebr.serving.corpus import training_window_corpus

# the sequence rows' knob-on world (the default world has no interest drift)
DRIFT_ON = 1.0
METRICS = ("recall@100", "ndcg@100", "sim/engaged_sessions", "sim/clicks", "sim/repins")


@dataclasses.dataclass(frozen=True)
class Row:
    """One phenomenon: its knob, the value of its control world, and the two variants compared.

    Args:
        knob: the `WorldConfig` field of the phenomenon.
        off: the knob's value in the control world.
        known: the variant that knows the phenomenon.
        unknown: the variant that does not.
        variants: world -> every variant's metrics.
        on: the knob's value in the knob-on world when the base world has it off (a phenomenon
            the default world leaves off); None: the base world's value.
    """

    knob: str
    off: float
    known: str
    unknown: str
    variants: Callable[[World], Variants]
    on: float | None = None

    def on_value(self, base: WorldConfig) -> float:
        """The knob's value in the knob-on world.

        Args:
            base: the base world.
        """
        value = getattr(base, self.knob)
        return self.on if self.on is not None and value == self.off else value


def study_rows(corpus_share: float = CORPUS_SHARE) -> dict[str, Row]:
    """Every row of the study, by name.

    Args:
        corpus_share: the time-decay row's corpus budget, a share of all pins.
    """
    return {
        "crossing": Row(
            "feature_interaction", 0.0, "true score", "interaction removed", score_variants("crossing")
        ),
        "own_taste": Row("idiosyncrasy", 0.0, "true score", "features only", score_variants("own_taste")),
        "user_id": Row(
            "policy_personalization", 0.0, "true score", "user own taste removed", score_variants("user_id")
        ),
        "conditional": Row(
            "interest_taste", 0.0, "per-interest", "filtered plain", conditional_variants(degraded=False)
        ),
        "conditional_degraded": Row(
            "interest_taste", 0.0, "per-interest", "filtered plain", conditional_variants(degraded=True)
        ),
        "source_interest": Row("source_taste", 0.0, "session taste", "top-tag taste", source_variants),
        "source_tags": Row("second_interest_prob", 0.0, "session taste", "top-tag taste", source_variants),
        "remapping": Row("near_duplicates", 0.0, "freshest", "no remapping", corpus_variants("remapping")),
        "representative": Row(
            "duplicate_delay_days", 0.0, "freshest", "canonical", corpus_variants("remapping")
        ),
        "time_decay": Row(
            "trend_strength", 0.0, "half-life 2 d", "plain sum", corpus_variants("time_decay", corpus_share)
        ),
        "sequence": Row(
            "interest_drift", 0.0, f"recent {RECENT_K}", f"random {RECENT_K}", sequence_variants(), DRIFT_ON
        ),
        "sequence_bag": Row(
            "interest_drift", 0.0, f"recent {RECENT_K}", "bag", sequence_variants(), DRIFT_ON
        ),
    }


ROWS = study_rows()


def prepare(
    config: WorldConfig, cfg: DictConfig, cache_dir: str | None, sessions: int | None = None
) -> World:
    """Generate (or load) a world and build its evaluation task and simulated population.

    Args:
        config: the world.
        cfg: the composed job config (split and simulation settings).
        cache_dir: the world cache (None: generate every time).
        sessions: sessions per simulated user (None: the config's).
    """
    data = load_world(config, cache_dir)
    split = hydra.utils.instantiate(cfg.split)(data)
    simulation = hydra.utils.instantiate(cfg.eval.simulation)
    if sessions is not None:
        simulation = dataclasses.replace(simulation, sessions_per_user=sessions)
    corpus = training_window_corpus(split)
    task = build_eval_task(split, corpus)
    population = build_simulation_task(split, corpus, simulation.users, simulation.seed)
    return World(config, data, split, corpus, task, population, simulation)


def interval(gains: list[float]) -> tuple[float, float, float]:
    """(mean, lower, upper) of the 95% t interval of paired gains (a single gain: no interval).

    Args:
        gains: one gain per world seed.
    """
    values = np.asarray(gains, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def measure(
    rows: list[str],
    seeds: list[int],
    base: WorldConfig,
    cfg: DictConfig,
    cache_dir: str | None,
    sessions: int | None = None,
    corpus_share: float = CORPUS_SHARE,
) -> dict[str, Any]:
    """Every row's variant metrics per (knob state, seed): results[row][state][seed][variant][metric].

    Worlds are generated once and shared by the rows that use them (the knob-on world by all).

    Args:
        rows: names of `ROWS`.
        seeds: world seeds.
        base: the knob-on world (its seed replaced by each of `seeds`).
        cfg: the composed job config (split and simulation settings).
        cache_dir: the world cache (None: generate every time).
        sessions: sessions per simulated user (None: the config's).
        corpus_share: the time-decay row's corpus budget, a share of all pins.
    """
    table = study_rows(corpus_share)
    jobs: dict[WorldConfig, list[tuple[str, str]]] = {}
    for name in rows:
        row = table[name]
        for state, value in (("on", row.on_value(base)), ("off", row.off)):
            for seed in seeds:
                config = dataclasses.replace(base, seed=seed, **{row.knob: value})
                jobs.setdefault(config, []).append((name, state))
    results: dict[str, Any] = {name: {"on": {}, "off": {}} for name in rows}
    for config, users in jobs.items():
        started = time.perf_counter()
        world = prepare(config, cfg, cache_dir, sessions)
        for name, state in users:
            results[name][state][config.seed] = table[name].variants(world)
        print(
            f"# world seed {config.seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True
        )
    return results


def _cell(gains: list[float], scale: float) -> str:
    mean, low, high = interval([g * scale for g in gains])
    if np.isnan(low):
        return f"{mean:+.3f}"
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def print_tables(results: dict[str, Any], base: WorldConfig, seeds: list[int]) -> None:
    """The summary table (gains per row and metric, knob on and off) and every variant's mean.

    Args:
        results: `measure`'s results.
        base: the knob-on world.
        seeds: the world seeds measured.
    """
    print(f"world: {base.n_users} users, {base.n_pins} pins, {base.n_days} days; world seeds {seeds}")
    print("recall and NDCG in units of 0.01; simulated metrics per 1,000 sessions\n")
    header = ["row", "knob (on → off)", "metric", "known", "unknown", "gain, knob on [95% CI]"]
    print("| " + " | ".join([*header, "gain, knob off [95% CI]"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for name, by_state in results.items():
        row = ROWS[name]
        for metric in METRICS:
            scale = 100.0 if metric.startswith(("recall", "ndcg")) else 1.0
            on = by_state["on"]
            known = np.mean([on[s][row.known][metric] for s in seeds]) * scale
            unknown = np.mean([on[s][row.unknown][metric] for s in seeds]) * scale
            gains = {
                state: [v[row.known][metric] - v[row.unknown][metric] for v in by_state[state].values()]
                for state in ("on", "off")
            }
            knob = f"`{row.knob}` {row.on_value(base):g} → {row.off:g}"
            print(
                f"| {name} | {knob} | {metric} | {known:.2f} | {unknown:.2f} | {_cell(gains['on'], scale)}"
                f" | {_cell(gains['off'], scale)} |"
            )
    columns = [*METRICS, CEILING]
    print("\nEvery variant (knob on, mean over seeds; corpus_ceiling: corpus rows only):\n")
    print("| row | variant | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for name, by_state in results.items():
        on = by_state["on"]
        for variant in next(iter(on.values())):
            cells = [np.mean([on[s][variant].get(m, np.nan) for s in seeds]) for m in columns]
            shown = ["" if np.isnan(c) else f"{c:.4f}" for c in cells]
            print(f"| {name} | {variant} | " + " | ".join(shown) + " |")


def pretraining_statistics(data: InteractionData, split: Split, window_days: float = 14.0) -> str:
    """Median engagements per user (over all users) in each whole `window_days` window before train.

    Args:
        data: the world.
        split: its split (its pre-training window is read).
        window_days: the windows' length.
    """
    pretrain = split.pretrain
    if pretrain.empty:
        return "no pre-training window"
    end = int(split.train["timestamp"].min())
    start = int(pretrain["timestamp"].min())
    cells = []
    n_windows = int((end - start) // (window_days * SECONDS_PER_DAY))
    for w in range(n_windows):
        stop = end - w * window_days * SECONDS_PER_DAY
        frame = pretrain[
            (pretrain["timestamp"] >= stop - window_days * SECONDS_PER_DAY) & (pretrain["timestamp"] < stop)
        ]
        users, _ = engaged_pairs(frame, "split.pretrain")
        counts = np.bincount(users, minlength=data.users.n_rows)
        cells.append(f"window -{w + 1}: median {np.median(counts):g}, mean {counts.mean():.1f}")
    days = (end - start) / SECONDS_PER_DAY
    return (
        f"pre-training window {days:.0f} days, {n_windows} whole {window_days:g}-day windows; "
        + "; ".join(cells)
    )

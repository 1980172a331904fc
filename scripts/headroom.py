"""How much each world phenomenon leaves an ideal ranker to gain: the world's readiness per ablation.

A diagnostic, not a test. For each technique's phenomenon (a `WorldConfig` knob) it measures an
ideal ranker, the world's true score, with the phenomenon known and with it unknown, in the world
with the knob on and in its control world with the knob off (same seed), over several world seeds:

- crossing (`feature_interaction`): the true score vs the taste tables of the knob-off world;
- own_taste (`idiosyncrasy`): vs features only (users' and pins' own taste and pin quality removed);
- user_id (`policy_personalization`): vs the users' own taste removed (what user-ID memorisation adds);
- conditional (`interest_taste`): per-interest retrieval (each interest's own taste, an interest filter
  and an equal budget per interest of the user) vs filtered plain retrieval (the same with one vector
  per user); conditional_degraded: the same with every taste vector perturbed (an imperfect ranker);
- remapping (`near_duplicates`): the corpus remapped to each signature's freshest pin vs no remapping;
- representative (`duplicate_delay_days`): remapped to the freshest pin vs to the canonical (earliest);
- time_decay (`trend_strength`): a corpus of the top 10% of pins (`--corpus-share`) by a 2-day
  half-life decayed sum of training-window engagements vs by their plain sum (also shown: a 7-day
  plain sum and half-lives of 1, 3 and 7 days).

Metrics: recall@100 and NDCG@100 of the test window's logged engagements (signature-level for the
remapping rows; for the corpus rows against every training-window corpus pin, so a smaller corpus
shows its ceiling) and the simulated online metrics on the fixed population; the corpus rows also
print `corpus_ceiling`, the share of relevant test (user, pin) pairs whose pin (remapping rows: whose
signature) the policy's corpus holds. A gain is known minus unknown; its 95% interval is the t
interval of the seed-paired gains.

Usage:
    python scripts/headroom.py                                 # data=synthetic_small, 5 world seeds
    python scripts/headroom.py --rows crossing --seeds 0 experiment=crossing_isolated
    python scripts/headroom.py --pretraining data=synthetic_long   # the ID presets' window statistics
    python scripts/headroom.py --rows time_decay --corpus-share 0.25 data=synthetic
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hydra
import numpy as np
from headroom_rankers import (
    CEILING,
    CORPUS_SHARE,
    World,
    conditional_variants,
    corpus_variants,
    pretraining_statistics,
    score_variants,
)
from hydra import compose, initialize_config_dir
from scipy import stats

from ebr.config import register_schemas
from ebr.data.loaders.synthetic import load_world
from ebr.data.world.config import WorldConfig
from ebr.evaluation.task import build_eval_task, build_simulation_task
from ebr.serving.corpus import training_window_corpus

CONF = Path(__file__).resolve().parents[1] / "conf"
METRICS = ("recall@100", "ndcg@100", "sim/engaged_sessions", "sim/clicks", "sim/repins")


@dataclasses.dataclass(frozen=True)
class Row:
    """One phenomenon: its knob, the value of its control world, and the two variants compared."""

    knob: str
    off: float
    known: str
    unknown: str
    variants: Callable[[World], dict[str, dict[str, float]]]


ROWS: dict[str, Row] = {
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
    "remapping": Row("near_duplicates", 0.0, "freshest", "no remapping", corpus_variants("remapping")),
    "representative": Row("duplicate_delay_days", 0.0, "freshest", "canonical", corpus_variants("remapping")),
    "time_decay": Row("trend_strength", 0.0, "half-life 2 d", "plain sum", corpus_variants("time_decay")),
}


def prepare(config: WorldConfig, cfg, cache_dir: str | None, sessions: int | None = None) -> World:
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
    cfg,
    cache_dir: str | None,
    sessions: int | None = None,
) -> dict:
    """Every row's variant metrics per (knob state, seed): results[row][state][seed][variant][metric].

    Worlds are generated once and shared by the rows that use them (the knob-on world by all).
    """
    jobs: dict[WorldConfig, list[tuple[str, str]]] = {}
    for name in rows:
        row = ROWS[name]
        for state, value in (("on", getattr(base, row.knob)), ("off", row.off)):
            for seed in seeds:
                config = dataclasses.replace(base, seed=seed, **{row.knob: value})
                jobs.setdefault(config, []).append((name, state))
    results: dict = {name: {"on": {}, "off": {}} for name in rows}
    for config, users in jobs.items():
        started = time.perf_counter()
        world = prepare(config, cfg, cache_dir, sessions)
        for name, state in users:
            results[name][state][config.seed] = ROWS[name].variants(world)
        print(
            f"# world seed {config.seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True
        )
    return results


def _cell(gains: list[float], scale: float) -> str:
    mean, low, high = interval([g * scale for g in gains])
    if np.isnan(low):
        return f"{mean:+.3f}"
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def print_tables(results: dict, base: WorldConfig, seeds: list[int]) -> None:
    """The summary table (gains per row and metric, knob on and off) and every variant's mean."""
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
            knob = f"`{row.knob}` {getattr(base, row.knob):g} → {row.off:g}"
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows of {list(ROWS)}")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated world seeds")
    parser.add_argument(
        "--sessions", type=int, default=16, help="sessions per simulated user (more: less Monte Carlo noise)"
    )
    parser.add_argument(
        "--corpus-share", type=float, default=CORPUS_SHARE, help="the time-decay row's budget (share of pins)"
    )
    parser.add_argument("--pretraining", action="store_true", help="print the pre-training window statistics")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (default data=synthetic_small)")
    args = parser.parse_args(argv)
    if not 0 < args.corpus_share <= 1:
        parser.error(f"--corpus-share must be in (0, 1], got {args.corpus_share}")
    ROWS["time_decay"] = dataclasses.replace(
        ROWS["time_decay"], variants=corpus_variants("time_decay", args.corpus_share)
    )
    register_schemas()
    overrides = args.overrides
    if not any(o.startswith(("data=", "experiment=")) for o in overrides):
        overrides = ["data=synthetic_small", *overrides]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=overrides)
    base: WorldConfig = hydra.utils.instantiate(cfg.data.config)
    seeds = [int(s) for s in args.seeds.split(",")]
    cache_dir = os.environ.get("EBR_CACHE_DIR")
    if args.pretraining:
        for seed in seeds:
            data = load_world(dataclasses.replace(base, seed=seed), cache_dir)
            print(
                f"world seed {seed}: "
                + pretraining_statistics(data, hydra.utils.instantiate(cfg.split)(data))
            )
        return
    rows = args.rows.split(",")
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {list(ROWS)}")
    print_tables(measure(rows, seeds, base, cfg, cache_dir, args.sessions), base, seeds)


if __name__ == "__main__":
    main()

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
  plain sum and half-lives of 1, 3 and 7 days);
- sequence (`interest_drift`, on at 1 unless the world sets it): the true score with each user's
  current interest weights estimated from their last 5 engaged training-window pins vs from 5 drawn
  at random (the order-free control with equal evidence); sequence_bag: the same recent ranker vs
  the order-free bag of all their engaged pins (also shown: the true score, which knows the current
  weights, and the long-run profile mix).

Metrics: recall@100 and NDCG@100 of the test window's logged engagements (signature-level for the
remapping rows; for the corpus rows against every training-window corpus pin, so a smaller corpus
shows its ceiling) and the simulated online metrics on the fixed population; the corpus rows also
print `corpus_ceiling`, the share of relevant test (user, pin) pairs whose pin (remapping rows: whose
signature) the policy's corpus holds. A gain is known minus unknown; its 95% interval is the t
interval of the seed-paired gains.

The study is `ebr.diagnostics.headroom` (its ranker `ebr.retrieval.oracle`, the `model=oracle`
retriever's ranking); this script is its command line.

Usage:
    python scripts/headroom.py                                 # data=synthetic_small, 5 world seeds
    python scripts/headroom.py --rows crossing --seeds 0 experiment=crossing_isolated
    python scripts/headroom.py --pretraining data=synthetic_long   # the ID presets' window statistics
    python scripts/headroom.py --rows time_decay --corpus-share 0.25 data=synthetic
    python scripts/headroom.py --rows sequence,sequence_bag --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir

from ebr.config import register_schemas
from ebr.data.loaders.synthetic import load_world
from ebr.data.world.config import WorldConfig
from ebr.diagnostics.headroom.corpus import CORPUS_SHARE
from ebr.diagnostics.headroom.study import ROWS, measure, pretraining_statistics, print_tables

CONF = Path(__file__).resolve().parents[1] / "conf"


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
    print_tables(measure(rows, seeds, base, cfg, cache_dir, args.sessions, args.corpus_share), base, seeds)


if __name__ == "__main__":
    main()

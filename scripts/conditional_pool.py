"""Pool a conditional-retrieval sweep over worlds by hand (until ebr-report has a world axis).

Each world is its own sweep folder, <dir>/w<world>/ (ebr-train -m ... data.config.seed=<world>).
An arm is a job's overrides less the replication keys (seed, data.config.seed) and bookkeeping.
Within each (world, training seed) the arm is paired with the baseline arm; the relative delta is
100 * (arm - baseline) / baseline. Per world: the mean over seeds and its 95% t interval (paired,
as ebr-report computes it). Pooled: the mean over worlds of the per-world means, with the 95% t
interval over those world means (df = worlds - 1: worlds are the replication unit, seeds within a
world only sharpen each world's mean). "agree" counts the worlds whose mean has the pooled sign,
"excl." those whose interval excludes 0 on that side.

Usage:
    python scripts/conditional_pool.py multirun/c28/source \
        --baseline model.conditioning.source=item_interest --metrics filtered_hr@100,recall@100
    python scripts/conditional_pool.py multirun/c28/cost --baseline model/conditioning=none \
        --baseline serving.interest_filter=pre --curve cost.png --x serving/candidates_per_request \
        --y recall@100/multi_interest
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

IGNORED = ("seed", "data.config.seed", "experiment", "logger", "model_cache")


def load(root: Path) -> dict[tuple[str, ...], dict[tuple[int, int], dict[str, float]]]:
    """arm -> (world, seed) -> metrics of every finished job under root/w*/."""
    runs: dict[tuple[str, ...], dict[tuple[int, int], dict[str, float]]] = defaultdict(dict)
    for world_dir in sorted(root.glob("w*")):
        world = int(world_dir.name[1:])
        for metrics_file in world_dir.glob("*/metrics.json"):
            overrides = yaml.safe_load((metrics_file.parent / ".hydra" / "overrides.yaml").read_text())
            config = yaml.safe_load((metrics_file.parent / ".hydra" / "config.yaml").read_text())
            arm = tuple(sorted(o for o in overrides if o.split("=")[0] not in IGNORED))
            runs[arm][(world, int(config["seed"]))] = json.loads(metrics_file.read_text())
    return runs


def interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% t interval; no interval for one value."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def pooled(arm_runs: dict, base_runs: dict, metric: str) -> dict:
    """Per-world and pooled relative deltas of one arm against the baseline on `metric`."""
    by_world: dict[int, list[float]] = defaultdict(list)
    for key, metrics in sorted(arm_runs.items()):
        if key in base_runs and metric in metrics and metric in base_runs[key]:
            base = base_runs[key][metric]
            by_world[key[0]].append(100.0 * (metrics[metric] - base) / base)
    worlds = {w: interval(v) for w, v in sorted(by_world.items())}
    mean, low, high = interval([m for m, _, _ in worlds.values()])
    sign = np.sign(mean)
    agree = sum(np.sign(m) == sign for m, _, _ in worlds.values())
    excl = sum((lo > 0) if sign > 0 else (hi < 0) for _, lo, hi in worlds.values())
    pairs = sum(len(v) for v in by_world.values())
    return {"pooled": (mean, low, high), "worlds": worlds, "agree": agree, "excl": excl, "pairs": pairs}


def fmt(cell: tuple[float, float, float]) -> str:
    mean, low, high = cell
    return f"{mean:+.2f}%" if np.isnan(low) else f"{mean:+.2f}% [{low:+.2f}, {high:+.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument(
        "--baseline", action="append", required=True, help="key=value naming the baseline arm"
    )
    parser.add_argument(
        "--metrics", default="recall@100,recall@100/multi_interest,filtered_hr@100,sim/repins"
    )
    parser.add_argument("--curve", type=Path, help="write a PNG of --y against --x, one point per arm")
    parser.add_argument("--x", default="serving/candidates_per_request")
    parser.add_argument("--y", default="recall@100/multi_interest")
    args = parser.parse_args()
    runs = load(args.root)
    wanted = set(args.baseline)
    bases = [
        arm
        for arm in runs
        if wanted <= set(arm) and len(arm) == min(len(a) for a in runs if wanted <= set(a))
    ]
    if len(bases) != 1:
        raise SystemExit(f"--baseline {sorted(wanted)} matches {len(bases)} arms of {sorted(runs)}")
    base = bases[0]
    metrics = args.metrics.split(",")
    print(f"{args.root}: baseline {' '.join(base)}; {len(runs)} arms")
    for arm in sorted(runs, key=lambda a: (a != base, a)):
        jobs = runs[arm]
        means = "; ".join(
            f"{m} {np.mean([v[m] for v in jobs.values() if m in v]):.4f}"
            for m in [*metrics, args.x]
            if any(m in v for v in jobs.values())
        )
        print(f"\n{' '.join(sorted(set(arm) - set(base))) or 'BASELINE'} ({len(jobs)} jobs): {means}")
        if arm == base:
            continue
        for metric in metrics:
            result = pooled(jobs, runs[base], metric)
            if not result["worlds"]:
                continue
            per_world = "; ".join(f"w{w} {fmt(c)}" for w, c in result["worlds"].items())
            n = len(result["worlds"])
            print(
                f"  {metric}: pooled {fmt(result['pooled'])}, same sign {result['agree']}/{n},"
                f" interval excl. 0 {result['excl']}/{n} ({result['pairs']} pairs) | {per_world}"
            )
    if args.curve:
        curve(runs, args.x, args.y, args.curve)


def short_label(arm: tuple[str, ...]) -> str:
    """A readable name of an arm: model, filter, fetch, over-fetch."""
    values = dict(item.split("=", 1) for item in arm)
    model = "conditional" if values.get("model/conditioning", "none") != "none" else "plain"
    parts = [model, values.get("serving.interest_filter", "")]
    if "serving.post_overfetch" in values and values.get("serving.interest_filter") == "post":
        parts.append(f"x{values['serving.post_overfetch']}")
    if values.get("serving.interest_filter") in ("pre", "none"):
        # conditional_cost sets serving.query_fetch=budget in its file, not as an override
        parts.append(f"fetch {values.get('serving.query_fetch', 'budget')}")
    return " ".join(p for p in parts if p)


def curve(runs: dict, x: str, y: str, path: Path) -> None:
    """Mean of y against mean of x per arm (over worlds and seeds); each job as a faint dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("tab10")
    post: list[tuple[float, float]] = []
    for number, (arm, jobs) in enumerate(sorted(runs.items(), key=lambda item: short_label(item[0]))):
        points = [(v[x], v[y]) for v in jobs.values() if x in v and y in v]
        if not points:
            continue
        xs, ys = np.array(points).T
        label = short_label(arm)
        marker = "s" if label.startswith("conditional") else "o"
        ax.scatter(xs, ys, s=10, alpha=0.35, color=colors(number), marker=marker)
        ax.scatter([xs.mean()], [ys.mean()], s=70, color=colors(number), marker=marker, label=label)
        if label.startswith("plain post"):
            post.append((xs.mean(), ys.mean()))
    if post:
        ax.plot(*np.array(sorted(post)).T, color="grey", lw=1, ls="--", zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel(f"{x} (log scale; mean over users)")
    ax.set_ylabel(y)
    ax.set_title("Equal budgets over each user's top 3 interests; mean of 3 worlds x 2 seeds", fontsize=9)
    ax.legend(fontsize=7, loc="upper right", framealpha=0.9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

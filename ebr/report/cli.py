"""``ebr-report SWEEP_DIR``: a sweep in, a table of paired deltas with intervals out.

Arms are the jobs' ``hydra.job.override_dirname`` (their overrides less the exclude keys of
``conf/train.yaml``, the wandb job type), paired by seed.

``ebr-report --best SEARCH_DIR [--out FILE]`` instead prints a hyperparameter search's trials and
writes its best trial as an experiment file (ebr.report.best): exit 0, 2 (not a search) or 3 (no
trial finished).

The expected runs are the sweep's own record (``multirun.yaml``: the sweeper's params and the
command line's ``-m`` sweeps, ebr.report.grid): an expected job without a folder is missing, named
by its overrides. A sweep with a failed or missing run is *incomplete*: ``report.md``'s first line
says so, and the exit code is 4 unless ``--allow-incomplete`` is given.

Exit codes:

- 0: the report was written and every expected run finished (with ``--allow-incomplete``: at least
  one finished, even if others failed or are missing);
- 1: a requested wandb step (``--wandb``, ``--wandb-workspace``, ``--wandb-sync``) failed after the
  report was written; or ``--wandb-sync`` finds no API key, before any work;
- 2: bad input (not a sweep directory, no job directory, malformed run files, an unknown
  ``--metrics`` name, a ``--baseline`` naming no arm, a ``--wandb-workspace`` that is not
  ENTITY/PROJECT); nothing is written;
- 3: no run finished: the report (listing the failed and missing runs) was written, but it holds no
  number; wandb logging, if requested, is skipped;
- 4: the sweep is incomplete (a run failed or is missing) and ``--allow-incomplete`` was not given:
  the report was written (its first line says INCOMPLETE) and the wandb steps, if requested, ran.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ebr.report.best import DEFAULT_SEEDS, SearchReadError, write_best
from ebr.report.build import build_report
from ebr.report.curves import write_curves
from ebr.report.document import Report
from ebr.report.render import write_report
from ebr.report.stats import DEFAULT_BOOTSTRAP, summarize_sweep
from ebr.report.sweep import Sweep, SweepError, load_sweep, parse_override
from ebr.runs import METRICS_FILE

EXIT_OK, EXIT_WANDB_FAILED, EXIT_BAD_INPUT, EXIT_NO_FINISHED_RUN, EXIT_INCOMPLETE = 0, 1, 2, 3, 4

# used only when neither --metrics nor the experiment's report.metrics names the headline metrics
DEFAULT_HEADLINE = ("recall@100", "ndcg@100", "sim/engaged_sessions", "sim/repins")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``ebr-report``."""
    parser = argparse.ArgumentParser(
        prog="ebr-report",
        description="Summarise a Hydra multirun sweep: per-arm means, seed-paired relative deltas against "
        "the baseline with 95% intervals and p-values; writes report.md, report.json and deltas.png into "
        "the sweep directory.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (hydra.sweep.dir)")
    parser.add_argument(
        "--baseline",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="override naming the baseline arm (repeat for several keys); default: the runs' report.baseline",
    )
    parser.add_argument(
        "--metrics", default=None, help="comma-separated headline metrics; default: the runs' report.metrics"
    )
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="exit 0 when some runs failed or are missing (the report says so in its first line either "
        "way); without it such a sweep exits 4",
    )
    parser.add_argument(
        "--wandb", action="store_true", help="log the table and plot into a wandb summary run"
    )
    parser.add_argument(
        "--wandb-workspace",
        default=None,
        metavar="ENTITY/PROJECT",
        help="build the sweep's wandb workspace (runs of its group, grouped by arm: loss curves, a bar panel "
        "per headline metric, the report table); online (WANDB_MODE=online) save it and print its URL, "
        "always write it to SWEEP_DIR/wandb_workspace.json",
    )
    parser.add_argument(
        "--wandb-sync",
        action="store_true",
        help="upload every job's newest offline wandb run and the newest report run (wandb sync; needs "
        "WANDB_API_KEY or wandb login); into ENTITY/PROJECT when --wandb-workspace names one",
    )
    parser.add_argument(
        "--bootstrap",
        type=_non_negative_int,
        default=DEFAULT_BOOTSTRAP,
        metavar="N",
        help=f"paired bootstrap resamples (0 disables; default {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="bootstrap random seed (default 0)")
    parser.add_argument(
        "--best",
        action="store_true",
        help="SWEEP_DIR is a hyperparameter search (hparams_search=...): print its trials and the best "
        "trial's overrides, write them as an experiment file (--out) and print the final runs' command",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="with --best: the experiment file (default SWEEP_DIR/best/experiment/<study>_best.yaml)",
    )
    parser.add_argument(
        "--seeds", default=DEFAULT_SEEDS, help=f"with --best: the final runs' seeds (default {DEFAULT_SEEDS})"
    )
    return parser


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def values_match(override_value: str, wanted: Any) -> bool:
    """Whether an override's text names the same value as `wanted` (a YAML scalar or text).

    ``0.0`` matches ``0``, ``true`` matches True; everything else compares as text.

    Args:
        override_value: the value part of a job's override, as Hydra wrote it.
        wanted: the value from ``report.baseline`` (a YAML scalar) or ``--baseline`` (text).
    """
    if str(wanted) == override_value:
        return True
    try:
        parsed = yaml.safe_load(override_value)
    except yaml.YAMLError:
        return False
    if isinstance(wanted, str):
        try:
            wanted = yaml.safe_load(wanted)
        except yaml.YAMLError:
            return False
    if isinstance(parsed, bool) or isinstance(wanted, bool):
        return parsed is wanted
    if isinstance(parsed, int | float) and isinstance(wanted, int | float):
        return float(parsed) == float(wanted)
    return parsed == wanted


def parse_baseline_args(items: list[str]) -> dict[str, str]:
    """``--baseline KEY=VALUE`` arguments (repeatable) as a dict.

    Args:
        items: the raw argument values.
    """
    out: dict[str, str] = {}
    for item in items:
        key, value = parse_override(item, "--baseline")
        out[key] = value
    return out


def find_baseline(sweep: Sweep, baseline: dict[str, Any]) -> str | None:
    """The arm whose values hold every `baseline` pair (override key -> value), or None if none does.

    The named pairs must single out one arm.

    Args:
        sweep: the loaded sweep.
        baseline: override key -> value.

    Raises:
        SweepError: the pairs name several arms.
    """
    matches = []
    for arm in sweep.arms:
        values = sweep.arm_values[arm]
        if all(key in values and values_match(values[key], wanted) for key, wanted in baseline.items()):
            matches.append(arm)
    if len(matches) > 1:
        raise SweepError(
            f"baseline {baseline} matches several arms ({'; '.join(matches)}); name every key that "
            f"differs between arms ({', '.join(sweep.arm_keys)})"
        )
    return matches[0] if matches else None


def choose_metrics(sweep: Sweep, requested: str | None, notes: list[str]) -> tuple[list[str], list[str]]:
    """(headline metrics, every metric to tabulate), headline first.

    Args:
        sweep: the loaded sweep.
        requested: the ``--metrics`` value or None.
        notes: receives what the report must say about the choice.

    Raises:
        SweepError: a requested metric is reported by no run.
    """
    available = sweep.metric_names()
    if requested is not None:
        headline = [name.strip() for name in requested.split(",") if name.strip()]
        if not headline:
            raise SweepError("--metrics is empty")
        unknown = [name for name in headline if name not in available]
        if unknown:
            known = ", ".join(available) or "none"
            raise SweepError(f"--metrics: {', '.join(unknown)} reported by no run (available: {known})")
    elif sweep.meta.metrics:
        headline = list(sweep.meta.metrics)
    else:
        headline = [name for name in DEFAULT_HEADLINE if name in available] or available[:4]
        if headline:
            notes.append(
                f"No headline metrics named by the experiment or --metrics; showing {', '.join(headline)}."
            )
    rest = sorted(name for name in available if name not in headline)
    return headline, [*headline, *rest]


def choose_baseline(
    sweep: Sweep, cli_baseline: list[str] | None, notes: list[str]
) -> tuple[str | None, str | None]:
    """(baseline arm label or None, where it came from).

    Args:
        sweep: the loaded sweep.
        cli_baseline: ``--baseline`` values or None.
        notes: receives why there is no baseline, when there is none.

    Raises:
        SweepError: ``--baseline`` names no arm, or a baseline names several arms.
    """
    if cli_baseline:
        wanted = parse_baseline_args(cli_baseline)
        arm = find_baseline(sweep, wanted)
        if arm is None:
            raise SweepError(
                f"--baseline {' '.join(cli_baseline)} names no arm of {sweep.path} "
                f"(arms: {'; '.join(sweep.arms)})"
            )
        return arm, "--baseline"
    if sweep.meta.baseline:
        arm = find_baseline(sweep, sweep.meta.baseline)
        if arm is None:
            notes.append(
                f"The experiment's baseline {sweep.meta.baseline} is not an arm of this sweep "
                f"(arms: {'; '.join(sweep.arms)}); per-arm means only, no deltas."
            )
            return None, None
        return arm, "experiment config report.baseline"
    notes.append(
        "No baseline named (report.baseline is null and no --baseline): per-arm means only, no deltas."
    )
    return None, None


def make_report(args: argparse.Namespace) -> tuple[Sweep, Report]:
    """(the loaded sweep, its report) for parsed arguments; nothing is written.

    Args:
        args: parsed `build_parser` arguments.

    Raises:
        SweepError: bad input.
    """
    sweep = load_sweep(args.sweep_dir)
    notes: list[str] = []
    headline, metrics = choose_metrics(sweep, args.metrics, notes)
    baseline, source = choose_baseline(sweep, args.baseline, notes)
    summaries = summarize_sweep(sweep, baseline, metrics, n_boot=args.bootstrap, seed=args.seed)
    report = build_report(
        sweep,
        summaries,
        baseline=baseline,
        baseline_source=source,
        headline=headline,
        n_boot=args.bootstrap,
        seed=args.seed,
        notes=notes,
    )
    return sweep, report


def run(args: argparse.Namespace) -> int:
    """Produce the report for parsed arguments; returns the exit code (see the module docstring).

    Args:
        args: parsed `build_parser` arguments.

    Raises:
        SweepError: bad input.
    """
    if args.wandb_sync:
        from ebr.report.wandb_sync import SyncError, require_credentials

        try:
            require_credentials()  # before any work: a sync without a key can only fail
        except SyncError as exc:
            print(f"ebr-report: error: --wandb-sync: {exc}", file=sys.stderr)
            return EXIT_WANDB_FAILED
    if args.wandb_workspace is not None:
        from ebr.report.wandb_workspace import parse_target

        try:
            parse_target(args.wandb_workspace)
        except ValueError as exc:
            raise SweepError(str(exc)) from exc
    sweep, report = make_report(args)
    paths = write_report(report, sweep.path)
    try:
        curves = write_curves(sweep, f"{report.title()}: loss per epoch (data: {report.data_label()})")
    except ValueError as exc:
        raise SweepError(str(exc)) from exc
    if curves is not None:
        paths["curves"] = curves
    print(
        f"ebr-report: wrote {', '.join(p.name for p in paths.values())} to {sweep.path} "
        f"({report.n_runs} runs: {report.n_finished} finished, {report.n_failed} failed, "
        f"{report.n_missing} missing)"
    )
    if report.n_finished == 0:
        print(
            f"ebr-report: error: no run of {sweep.path} finished (no {METRICS_FILE}): "
            f"{report.n_failed} failed, {report.n_missing} missing; see {paths['md'].name}",
            file=sys.stderr,
        )
        return EXIT_NO_FINISHED_RUN
    try:
        wandb_steps(args, sweep, report, paths["png"])
    except Exception as exc:
        print(f"ebr-report: error: wandb step failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_WANDB_FAILED
    if report.incomplete and not args.allow_incomplete:
        print(
            f"ebr-report: error: {sweep.path} is incomplete: {report.n_failed} failed, "
            f"{report.n_missing} missing of {report.expected_runs} expected runs (listed in "
            f"{paths['md'].name}); --allow-incomplete accepts it",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return EXIT_OK


def wandb_steps(args: argparse.Namespace, sweep: Sweep, report: Report, png: Path) -> None:
    """``--wandb`` (the report run), ``--wandb-workspace`` and ``--wandb-sync``, in that order.

    Args:
        args: parsed `build_parser` arguments.
        sweep: the loaded sweep.
        report: its report.
        png: the deltas figure written for it.
    """
    target = None
    if args.wandb_workspace is not None:
        from ebr.report.wandb_workspace import parse_target

        target = parse_target(args.wandb_workspace)
    if args.wandb:
        from ebr.report.wandb_summary import log_report

        print(f"ebr-report: wandb summary run in {log_report(report, sweep.path, png)}")
    if args.wandb_sync:
        from ebr.report.wandb_sync import sync_sweep

        entity, project = target if target is not None else (None, None)
        uploaded = sync_sweep(sweep.path, [job.path for job in sweep.jobs], entity, project)
        print(f"ebr-report: uploaded {len(uploaded)} wandb runs")
    if target is not None:
        from ebr.report import wandb_workspace

        keys = next((list(job.config) for job in sweep.jobs if job.config is not None), [])
        workspace = wandb_workspace.build_workspace(report, *target, top_level_keys=[str(k) for k in keys])
        path = wandb_workspace.write_workspace(workspace, sweep.path)
        print(f"ebr-report: wandb workspace definition in {path}")
        if wandb_workspace.online():
            print(f"ebr-report: wandb workspace saved: {wandb_workspace.save_workspace(workspace)}")
        else:
            print(f"ebr-report: offline; save it later with: python -m ebr.report.wandb_workspace {path}")


def main(argv: list[str] | None = None) -> int:
    """Console script ``ebr-report``.

    Args:
        argv: arguments without the program name; defaults to ``sys.argv[1:]``.
    """
    args = build_parser().parse_args(argv)
    if args.best:
        try:
            return write_best(args.sweep_dir, args.out, args.seeds)
        except (SearchReadError, ValueError) as exc:
            print(f"ebr-report: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    try:
        return run(args)
    except SweepError as exc:
        print(f"ebr-report: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())

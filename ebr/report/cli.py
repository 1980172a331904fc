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
  ENTITY/PROJECT; finished jobs that ran different code, each listed with its job count, unless
  ``--allow-mixed-code``: ebr.report.code); nothing is written;
- 3: no run finished: the report (listing the failed and missing runs) was written, but it holds no
  number; wandb logging, if requested, is skipped;
- 4: the sweep is incomplete (a run failed or is missing) and ``--allow-incomplete`` was not given:
  the report was written (its first line says INCOMPLETE) and the wandb steps, if requested, ran.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ebr.report.best import DEFAULT_SEEDS, SearchReadError, write_best
from ebr.report.build import build_report
from ebr.report.choose import choose_baseline, choose_metrics
from ebr.report.claims import claim_results
from ebr.report.code import check_one_code, code_used
from ebr.report.curves import write_curves
from ebr.report.document import Report
from ebr.report.render import write_report
from ebr.report.stats import DEFAULT_BOOTSTRAP, summarize_sweep
from ebr.report.sweep import Sweep, SweepError, load_sweep
from ebr.runs import METRICS_FILE

EXIT_OK, EXIT_WANDB_FAILED, EXIT_BAD_INPUT, EXIT_NO_FINISHED_RUN, EXIT_INCOMPLETE = 0, 1, 2, 3, 4


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
        "--allow-mixed-code",
        action="store_true",
        help="report a sweep whose finished jobs ran different code (commit, uncommitted changes or "
        "library versions, from their run.json); the report lists them. Without it such a sweep exits 2",
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


def make_report(args: argparse.Namespace) -> tuple[Sweep, Report]:
    """(the loaded sweep, its report) for parsed arguments; nothing is written.

    Args:
        args: parsed `build_parser` arguments.

    Raises:
        SweepError: bad input.
    """
    sweep = load_sweep(args.sweep_dir)
    try:
        code = code_used((job.name, job.path) for job in sweep.jobs if job.status == "finished")
        if not args.allow_mixed_code:
            check_one_code(code, sweep.path)
    except ValueError as exc:  # a malformed run.json, or mixed code
        raise SweepError(str(exc)) from exc
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
        code=code,
        claims=claim_results(sweep, n_boot=args.bootstrap, seed=args.seed),
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

"""Turning a Hydra multirun sweep into a table of paired deltas with intervals, plots and summaries.

The report reads run directories only (``metrics.json``, ``error.txt`` and ``.hydra/*.yaml`` of each
job); it never imports the model, training or data code, so it can summarise sweeps produced by any
version of ebr.

Modules:
    runs: read a sweep directory, group jobs into arms and seeds, list failed and missing runs.
    stats: per-arm means and paired relative deltas with t / bootstrap intervals and p-values.
    render: ``report.json``, ``report.md`` and ``deltas.png``, each written atomically.
    wandb_summary: log the table and the plot into a wandb summary run of the sweep's group.
    cli: the ``ebr-report`` console script.
    suite: ``experiments/README.md`` from the reports of several sweeps (ablations and controls).
"""

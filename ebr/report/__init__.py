"""Turning a Hydra multirun sweep into a table of paired deltas with intervals, plots and summaries.

The report reads run directories only (``metrics.json``, ``error.txt``, ``run.json`` and
``.hydra/*.yaml`` of each job) through `ebr.runs`, the one module of ebr it imports: it never
imports the model, training or data code, so it can summarise sweeps produced by any version of ebr.

Modules:
    sweep: read a sweep directory, group jobs into arms (their override_dirname) and seeds, list
        failed and missing runs.
    meta: the experiment's ``report`` metadata and the data set the jobs read.
    worlds: the world (``data.config.seed``) as a block of a sweep, never an arm.
    gaps: failed, unfinished and expected-but-absent jobs.
    stats: per-arm means and paired relative deltas with t / bootstrap intervals and p-values.
    hierarchy: deltas pooled over worlds with a hierarchical bootstrap; per-world deltas.
    pooled: the records of pooled deltas and paper claims (no computation).
    claim_schema, claims: an experiment's paper claims (``report.claims``) and what a sweep measured.
    verdict: the verdict rule (reproduced / partly / not reproduced; control holds / fails).
    render_worlds: the report.md sections of worlds and claims.
    document: `Report`, the typed report every writer reads; ``report.json`` is its `to_json`.
    json_reader: ``report.json`` back into a `Report`, checked key by key.
    build: the `Report` of a loaded sweep and its statistics.
    render: ``report.json``, ``report.md`` and ``deltas.png``, each written atomically.
    plots: the ``deltas.png`` figure, and one headline metric's bars with error bars.
    wandb_summary: log the table and the plots into a wandb summary run of the sweep's group.
    wandb_workspace: the sweep's saved wandb workspace (``--wandb-workspace``), built without
        network; offline written to ``wandb_workspace.json`` and saved later from it.
    wandb_offline: where a sweep's offline wandb runs are, and what one recorded (its ``.wandb`` log).
    wandb_sync: ``--wandb-sync``: ``wandb sync`` of each job's newest offline run and the report run.
    cli: the ``ebr-report`` console script.
    suite: ``experiments/README.md`` from the reports of several sweeps (ablations and controls).
"""

"""The human-readable text report of a benchmark run's results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.index import SEARCH_K

# printed columns: (header, result key, format)
CROSSING_COLUMNS = (
    ("params", "params_total", "{:,}"),
    ("dense params", "params_dense", "{:,}"),
    ("train ex/s", "train_examples_per_second", "{:,.0f}"),
    ("x mlp", "train_vs_mlp", "{:.2f}"),
    ("eval users/s", "eval_users_per_second", "{:,.0f}"),
    ("x mlp", "eval_vs_mlp", "{:.2f}"),
    ("eval s", "eval_seconds", "{:.2f}"),
    ("GFLOP/step", "step_gflops", "{:.3f}"),
    ("x gemm", "flops_fraction_of_gemm", "{:.3f}"),
)
INDEX_COLUMNS = (
    ("build s", "build_seconds", "{:.3f}"),
    ("search users/s", "search_users_per_second", "{:,.0f}"),
    ("x flat", "speedup_vs_flat", "{:.2f}"),
    (f"ann_recall@{SEARCH_K}", f"ann_recall@{SEARCH_K}", "{:.4f}"),
)
ANN_COLUMNS = (
    ("factory", "factory", "{}"),
    ("search params", "search_params", "{}"),
    ("build s", "build_seconds", "{:.1f}"),
    ("queries/s", "queries_per_second", "{:,.0f}"),
    ("x flat", "qps_ratio", "{:.2f}"),
    (f"ann_recall@{SEARCH_K}", f"ann_recall@{SEARCH_K}", "{:.4f}"),
)


SCALE_COLUMNS = (
    ("events", "events", "{:,.0f}"),
    ("generation s", "generation_seconds", "{:.1f}"),
    ("generation peak MB", "generation_peak_rss_mb", "{:,.0f}"),
    ("train examples/s", "train_examples_per_second", "{:,.0f}"),
    ("eval users", "eval_users", "{:,.0f}"),
    ("corpus", "eval_corpus", "{:,.0f}"),
    ("eval users/s", "eval_users_per_second", "{:,.0f}"),
    ("epoch run peak MB", "run_peak_rss_mb", "{:,.0f}"),
)
SERVING_COLUMNS = (
    ("corpus", "corpus", "{:,.0f}"),
    ("build s", "build_seconds", "{:.1f}"),
    ("search s", "search_seconds", "{:.1f}"),
    ("search users/s", "search_users_per_second", "{:,.0f}"),
    ("x flat", "search_vs_flat", "{:.2f}"),
    ("ann_recall@100", "ann_recall@100", "{:.4f}"),
    ("recall@100", "recall@100", "{:.4f}"),
    ("eval s", "eval_seconds", "{:.1f}"),
    ("peak MB", "peak_rss_mb", "{:,.0f}"),
)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _table(first: str, rows: dict[str, dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> list[str]:
    """Right-aligned text table: one line per row, columns as (header, key, format); "-" when absent."""
    cells = [[first, *(header for header, _, _ in columns)]]
    cells += [
        [name, *(fmt.format(row[key]) if key in row else "-" for _, key, fmt in columns)]
        for name, row in rows.items()
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _machine(machine: dict[str, Any]) -> str:
    versions = ", ".join(
        f"{name} {machine[name]}" for name in ("torch", "torchrec", "pytorch_lightning", "faiss")
    )
    return (
        f"machine: {machine['cpu_count']} cpus ({machine['cpus_available']} available), torch threads "
        f"{machine['torch_threads']}, faiss threads {machine['faiss_threads']}, OMP_NUM_THREADS="
        f"{machine['omp_num_threads_env']}; python {machine['python']}, {versions}, numpy {machine['numpy']}"
    )


def _model_sections(results: dict[str, Any]) -> list[str]:
    """World, crossing and model-index tables (the sections that train on the world)."""
    settings, lines = results["settings"], []
    if "world" in results:
        world = results["world"]
        lines += [
            "",
            f"world generation (data={settings['data']}, generate_world without cache, median of "
            f"{settings['repeats']}): {_number(world['events'])} events, {_number(world['engagements'])} "
            f"engagements in {world['seconds_median']:.2f} s -> {_number(world['events_per_second'])} "
            f"events/s, {_number(world['engagements_per_second'])} engagements/s",
        ]
    if results.get("crossings"):
        lines += [
            "",
            f"two-tower model per crossing (mlp = the default run): training batch {settings['batch_size']}, "
            f"{settings['warmup']} warm-up + {settings['train_batches']} timed batches; evaluation = "
            f"evaluate_artifact with the flat index, {_number(settings['eval_users'])} users, corpus "
            f"{_number(settings['corpus'])}; x gemm = achieved FLOP/s of towers + logits over a "
            f"{results.get('gemm', {}).get('n', '-')}^2 fp32 matmul's "
            f"{results.get('gemm', {}).get('gflops_per_second', float('nan')):.1f} GFLOP/s",
        ]
        lines += _table("crossing", results["crossings"], CROSSING_COLUMNS)
    if "index" in results:
        index = results["index"]
        lines += [
            "",
            f"index search alone ({index['model']} embeddings, top {SEARCH_K} for "
            f"{_number(settings['eval_users'])} users, median of {settings['repeats']}):",
        ]
        lines += _table("index", index["kinds"], INDEX_COLUMNS)
    return lines


def format_report(results: dict[str, Any]) -> str:
    """The human-readable tables of a benchmark's results.

    Args:
        results: what `run_benchmark` returns (sections not run are absent and not printed).
    """
    lines = [_machine(results["machine"]), *_model_sections(results)]
    if "pipeline" in results:
        pipe = results["pipeline"]
        lines += [
            "",
            f"data pipeline (default model, {pipe['rounds']} back-to-back pairs): best "
            f"{pipe['real_steps_per_second']:.2f} steps/s with the DataModule, "
            f"{pipe['prebuilt_steps_per_second']:.2f} on pre-built batches; pair ratios "
            + ", ".join(f"{ratio:.3f}" for ratio in pipe["round_ratios"])
            + f" -> pipeline_efficiency (their median) {pipe['efficiency']:.3f}",
        ]
    if "embedding_step" in results:
        emb = results["embedding_step"]
        lines += [
            "",
            f"embedding-heavy step ({emb['tables']} tables of {emb['rows']:,} x {emb['dim']}, bags of "
            f"{emb['bag']}, batch {emb['batch']}, median of {emb['steps']}): torchrec fused "
            f"{emb['fused_optimizer']} {emb['torchrec_seconds_per_step'] * 1e3:.1f} ms, nn.EmbeddingBag"
            f"(sparse) + Adagrad {emb['plain_seconds_per_step'] * 1e3:.1f} ms -> {emb['speedup']:.2f}x",
        ]
    if "ann_scale" in results:
        ann = results["ann_scale"]
        lines += [
            "",
            f"index at scale ({ann['corpus']:,} x {ann['dim']} unit vectors from a mixture of "
            f"{ann['clusters']} Gaussians, spread {ann['spread']}; {ann['queries']:,} queries, "
            f"top {ann['k']}):",
        ]
        lines += _table("index", ann["kinds"], ANN_COLUMNS)
    if "memory" in results:
        memory = results["memory"]
        lines += [
            "",
            f"default run `{memory['default_run']['command']}`: {memory['default_run']['seconds']:.1f} s, "
            f"peak RSS {memory['default_run']['peak_rss_mb']:,.0f} MB; this benchmark's peak RSS "
            f"{memory['benchmark_peak_rss_mb']:,.0f} MB",
        ]
    if "scale" in results:
        lines += ["", "world sizes (one epoch of the default model each; growth = slope over log events):"]
        lines += _table("world", {row["label"]: row for row in results["scale"]["sizes"]}, SCALE_COLUMNS)
        growth = results["scale"]["growth"]
        lines.append("growth exponents: " + ", ".join(f"{key} {value:.2f}" for key, value in growth.items()))
        serving = results["scale"].get("serving")
        if serving:
            lines += [
                "",
                "the largest world's model served over every pin at serving time"
                f" ({' '.join(serving['overrides'])}), one evaluation-only job per index:",
            ]
            lines += _table("index", serving["indexes"], SERVING_COLUMNS)
    headline = results["headline"]
    lines += ["", "headline: " + ", ".join(f"{key} {value:.4g}" for key, value in headline.items())]
    return "\n".join(lines)

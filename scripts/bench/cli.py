"""The command line of `scripts/benchmark.py`: its sections, the full and quick sizes, and the parser
that validates every option before a section runs."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.training import CONF
from ebr.diagnostics.bench.index_recall import DIAGNOSIS_CANDIDATES
from ebr.diagnostics.bench.serving_scale import PRESETS as SERVING_PRESETS
from ebr.diagnostics.bench.serving_scale import QUICK_PRESETS as QUICK_SERVING_PRESETS
from ebr.diagnostics.bench.serving_scale import QUICK_SECTION_PRESETS, SECTION_PRESETS

# mlp (the default) first: the other rows are compared with it
CROSSINGS = tuple(
    sorted((p.stem for p in (CONF / "model" / "crossing").glob("*.yaml")), key=lambda c: (c != "mlp", c))
)
DATA_OPTIONS = ("synthetic", "synthetic_tiny", "synthetic_small")
SECTIONS = (
    *("world", "crossings", "index", "pipeline", "embedding", "ann", "memory"),
    *("scale", "serving_scale", "serving_diagnosis", "sequence"),
)
# scale trains the 1M-user world (about half an hour here), serving_scale builds every large index
# over ~540k pins, serving_diagnosis needs a trained model, sequence runs Transformers at N = 200:
# only when asked for
DEFAULT_SECTIONS = SECTIONS[:7]
# the index presets compared with flat at scale: (result name, conf/index preset)
ANN_PRESETS = (("hnsw", "hnsw_large"), ("ivfpq", "ivfpq_large"))
FULL = {
    "data": "synthetic",
    "repeats": 3,
    "train_batches": 200,
    "embedding_rows": 5_000_000,
    "embedding_batch": 4096,
    "ann_corpus": 1_000_000,
    "ann_queries": 5_000,
    "scale_indexes": ",".join(SERVING_PRESETS),
    "serving_data": "data=synthetic_xl",
    "serving_indexes": ",".join(SECTION_PRESETS),
}
QUICK = {
    "data": "synthetic_tiny",
    "repeats": 1,
    "train_batches": 20,
    "embedding_rows": 500_000,
    "embedding_batch": 4096,
    "ann_corpus": 100_000,
    "ann_queries": 2_000,
    "scale_indexes": ",".join(QUICK_SERVING_PRESETS),
    "serving_data": "data=synthetic_tiny data.config.n_users=6000 data.config.n_pins=3200",
    "serving_indexes": ",".join(QUICK_SECTION_PRESETS),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line; `--quick` fills in the small defaults.

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=DATA_OPTIONS, default=None, help="world (default synthetic)")
    parser.add_argument("--crossings", default=",".join(CROSSINGS), help="comma-separated (default all)")
    parser.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated of {SECTIONS} (default all but scale)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="world generations, searches (default 3)")
    parser.add_argument("--train-batches", type=int, default=None, help="timed batches (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first batches (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch and faiss threads (default 1)")
    parser.add_argument("--embedding-rows", type=int, default=None, help="rows per table (default 5M)")
    parser.add_argument("--embedding-tables", type=int, default=4, help="tables (default 4)")
    parser.add_argument("--embedding-batch", type=int, default=None, help="batch (default 4096)")
    parser.add_argument("--embedding-steps", type=int, default=10, help="timed steps per path (default 10)")
    parser.add_argument("--ann-corpus", type=int, default=None, help="vectors (default 1,000,000)")
    parser.add_argument("--ann-queries", type=int, default=None, help="queries (default 5,000)")
    parser.add_argument(
        "--ann-sweep",
        default=None,
        help="extra search settings on the same builds, e.g. 'hnsw:efSearch=64,256;ivfpq:nprobe=8,32'",
    )
    parser.add_argument("--pipeline-rounds", type=int, default=2, help="(real, pre-built) pairs (default 2)")
    parser.add_argument("--sequence-batches", type=int, default=5, help="timed batches per sequence arm")
    parser.add_argument(
        "--scale-indexes",
        default=None,
        help="conf/index presets serving the scale section's largest model, flat first, '' for none"
        " (default flat,ivfpq_large,hnsw_large; quick: flat,ivfpq,hnsw)",
    )
    parser.add_argument(
        "--serving-data",
        default=None,
        help="serving_scale's world overrides, space-separated (data=synthetic_xl)",
    )
    parser.add_argument(
        "--serving-indexes",
        default=None,
        help="serving_scale's conf/index presets, comma-separated, flat first; a preset may carry"
        " space-separated overrides (default flat,ivfpq_large,hnsw_large,auto)",
    )
    parser.add_argument(
        "--serving-model", type=Path, default=None, help="a trained model.pt of --serving-data"
    )
    parser.add_argument(
        "--diagnosis-candidates",
        default=None,
        help="serving_diagnosis: positions in DIAGNOSIS_CANDIDATES measured, comma-separated (default all)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny world, 20 batches, small sizes")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.crossings = [c.strip() for c in args.crossings.split(",") if c.strip()]
    unknown = [c for c in args.crossings if c not in CROSSINGS]
    if unknown or not args.crossings:
        parser.error(f"--crossings: unknown or empty {unknown}; the options are {list(CROSSINGS)}")
    args.scale_indexes = [i.strip() for i in args.scale_indexes.split(",") if i.strip()]
    if args.scale_indexes and args.scale_indexes[0] != "flat":
        parser.error(f"--scale-indexes must start with flat (the reference), got {args.scale_indexes}")
    args.serving_indexes = [i.strip() for i in args.serving_indexes.split(",") if i.strip()]
    if not args.serving_indexes or args.serving_indexes[0].split()[0] != "flat":
        parser.error(f"--serving-indexes must start with flat (the reference), got {args.serving_indexes}")
    args.serving_data = args.serving_data.split()
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown or not args.sections:
        parser.error(f"--sections: unknown or empty {unknown}; the options are {list(SECTIONS)}")
    if "serving_diagnosis" in args.sections and args.serving_model is None:
        parser.error("--sections serving_diagnosis needs --serving-model (a model.pt of --serving-data)")
    args.diagnosis_candidates = _diagnosis_candidates(parser, args.diagnosis_candidates)
    args.ann_sweep = _parse_sweep(parser, args.ann_sweep)
    counts = (
        "repeats",
        "train_batches",
        "warmup",
        "threads",
        "embedding_rows",
        "embedding_tables",
        "embedding_batch",
        "embedding_steps",
        "ann_corpus",
        "ann_queries",
        "pipeline_rounds",
        "sequence_batches",
    )
    for name in counts:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def _parse_sweep(parser: argparse.ArgumentParser, text: str | None) -> dict[str, list[dict[str, float]]]:
    """'hnsw:efSearch=64,256;ivfpq:nprobe=8' -> {"hnsw": [{"efSearch": 64.0}, {"efSearch": 256.0}], ...}."""
    sweeps: dict[str, list[dict[str, float]]] = {}
    names = {name for name, _ in ANN_PRESETS}
    for part in filter(None, (text or "").split(";")):
        name, _, setting = part.partition(":")
        key, _, values = setting.partition("=")
        try:
            numbers = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            numbers = []
        if name.strip() not in names or not key.strip() or not numbers:
            parser.error(f"--ann-sweep: {part!r} is not INDEX:PARAM=V1,V2,... (INDEX in {sorted(names)})")
        sweeps.setdefault(name.strip(), []).extend({key.strip(): number} for number in numbers)
    return sweeps


def _diagnosis_candidates(parser: argparse.ArgumentParser, text: str | None) -> tuple[Any, ...]:
    """'10,11' -> those entries of DIAGNOSIS_CANDIDATES (None: all of them)."""
    if text is None:
        return DIAGNOSIS_CANDIDATES
    try:
        positions = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        positions = []
    if not positions or not all(0 <= p < len(DIAGNOSIS_CANDIDATES) for p in positions):
        parser.error(f"--diagnosis-candidates: {text!r} is not positions 0-{len(DIAGNOSIS_CANDIDATES) - 1}")
    return tuple(DIAGNOSIS_CANDIDATES[p] for p in positions)

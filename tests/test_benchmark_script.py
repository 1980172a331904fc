"""scripts/benchmark.py in its quickest mode on the tiny world: it runs and reports sane figures."""

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from script_loader import load_script

from ebr.data.world import WorldConfig, generate_world

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "benchmark.py"
CROSSINGS = ("mlp", "dcnv2")


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _expected_mlp_parameters(data, model_cfg) -> tuple[int, int]:
    """(embedding, dense) parameter counts of the default two-tower model, by hand from its architecture."""
    width, hidden = model_cfg.embedding_dim, list(model_cfg.crossing.hidden)
    embedding = dense = 0
    for table in (data.users, data.pins):
        cardinalities = [feature.cardinality for feature in table.categorical.values()]
        dense_width = table.dense_matrix().shape[1]
        embedding += width * sum(max(c, 1) for c in cardinalities)
        fields = len(cardinalities) + (1 if dense_width else 0)
        if dense_width:
            widths = [dense_width, *model_cfg.dense_hidden, width]
            dense += sum(_linear(a, b) for a, b in pairwise(widths))
        dense += 2 * fields * width  # per-field LayerNorm weight and bias
        widths = [fields * width, *hidden, model_cfg.output_dim]
        dense += sum(_linear(a, b) for a, b in pairwise(widths))
    return embedding, dense


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, str(SCRIPT), "--quick", "--crossings", ",".join(CROSSINGS), "--json", str(out)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout, json.loads(out.read_text())


def test_quick_benchmark_reports_every_figure(quick_run):
    stdout, results = quick_run
    for text in (
        "machine:",
        "torch threads 1",
        "world generation",
        "train ex/s",
        "eval users/s",
        "ann_recall@100",
    ):
        assert text in stdout
    assert results["settings"]["data"] == "synthetic_tiny"
    assert results["settings"]["train_batches"] == 20
    assert results["machine"]["torch_threads"] == 1

    # the world figures describe the tiny world: same counts as generating it here
    tiny = generate_world(WorldConfig(n_users=1500, n_pins=800, n_interests=12, n_days=30))
    world = results["world"]
    assert world["events"] == len(tiny.events)
    assert world["engagements"] == len(tiny.engagements())
    assert world["events_per_second"] == pytest.approx(world["events"] / world["seconds_median"])
    assert 0 < world["engagements_per_second"] < world["events_per_second"]

    assert list(results["crossings"]) == list(CROSSINGS)
    for name, row in results["crossings"].items():
        assert row["train_batches"] == 20
        for key in ("train_examples_per_second", "eval_users_per_second", "eval_seconds", "params_dense"):
            assert row[key] > 0, (name, key)
        assert row["params_total"] == row["params_embedding"] + row["params_dense"]
        assert name in stdout
    assert results["crossings"]["mlp"]["train_vs_mlp"] == pytest.approx(1.0)
    assert results["crossings"]["dcnv2"]["params_dense"] > results["crossings"]["mlp"]["params_dense"]

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        model_cfg = compose("train", overrides=["data=synthetic_tiny"]).model
    GlobalHydra.instance().clear()
    embedding, dense = _expected_mlp_parameters(tiny, model_cfg)
    assert results["crossings"]["mlp"]["params_embedding"] == embedding
    assert results["crossings"]["mlp"]["params_dense"] == dense

    kinds = results["index"]["kinds"]
    assert results["index"]["model"] == "mlp"
    assert kinds["flat"]["ann_recall@100"] == 1.0  # flat search is its own exact reference
    assert 0.5 < kinds["hnsw"]["ann_recall@100"] <= 1.0
    for row in kinds.values():
        assert row["search_users_per_second"] > 0
        assert row["search_users_per_second"] == pytest.approx(
            results["settings"]["eval_users"] / row["search_seconds"]
        )


def test_bad_arguments_name_the_option(capsys):
    module = load_script("benchmark.py")
    assert module.parse_args(["--quick"]).crossings[0] == "mlp"
    for argv, option in (
        (["--crossings", "mlp,nope"], "--crossings"),
        (["--train-batches", "0"], "--train-batches"),
    ):
        with pytest.raises(SystemExit):
            module.parse_args(argv)
        assert option in capsys.readouterr().err

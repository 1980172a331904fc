"""scripts/benchmark.py in its quickest mode on the tiny world: it runs and reports sane figures (its
stand-alone pieces from ebr.diagnostics.bench)."""

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ebr.data.world import WorldConfig, generate_world
from ebr.diagnostics.bench.growth import GROWN, growth_exponents
from ebr.diagnostics.bench.serving_scale import WHOLE_CORPUS, bench_serving_scale
from ebr.diagnostics.bench.vectors import gaussian_mixture

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "benchmark.py"
CROSSINGS = ("mlp", "dcnv2")
ANN_CORPUS = 5000


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
    # the quick path's sections at tiny sizes (the memory section's extra ebr-train run is left out)
    command += ["--sections", "world,crossings,index,pipeline,embedding,ann", "--pipeline-rounds", "1"]
    command += ["--embedding-rows", "20000", "--embedding-batch", "512", "--embedding-steps", "2"]
    command += ["--ann-corpus", str(ANN_CORPUS), "--ann-queries", "300"]
    command += ["--ann-sweep", "hnsw:efSearch=16,200"]
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


def test_bad_arguments_name_the_option():
    for argv, option in (
        (["--crossings", "mlp,nope"], "--crossings"),
        (["--train-batches", "0"], "--train-batches"),
        (["--diagnosis-candidates", "0,99"], "--diagnosis-candidates"),
    ):
        result = subprocess.run(
            [sys.executable, str(SCRIPT), *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2
        assert option in result.stderr
        if option == "--crossings":
            # the default, every crossing, starts with the plain MLP (the ratios' reference)
            assert "the options are ['mlp'," in result.stderr


def test_quick_benchmark_writes_the_goal_keys(quick_run):
    _, results = quick_run
    for key in ("embedding_step_speedup", "flops_fraction_of_gemm", "pipeline_efficiency"):
        assert results[key] > 0, key
    for kind in ("hnsw", "ivfpq"):
        assert 0.0 <= results[f"{kind}_ann_recall@100"] <= 1.0
        assert results[f"{kind}_qps_ratio"] > 0
    assert results["world_events_per_second"] == results["world"]["events_per_second"]

    # each headline figure is the ratio of the two measurements it names
    ann = results["ann_scale"]
    assert ann["corpus"] == ANN_CORPUS
    assert ann["queries"] == 300
    assert ann["kinds"]["flat"]["ann_recall@100"] == 1.0
    assert results["hnsw_qps_ratio"] == pytest.approx(
        ann["kinds"]["hnsw"]["queries_per_second"] / ann["kinds"]["flat"]["queries_per_second"]
    )
    # a sweep row reuses its preset's build; a longer candidate list never loses recall
    hnsw, fast, slow = (ann["kinds"][name] for name in ("hnsw", "hnsw efSearch=16", "hnsw efSearch=200"))
    assert fast["build_seconds"] == hnsw["build_seconds"]
    assert fast["search_params"]["efSearch"] == 16
    assert fast["ann_recall@100"] <= slow["ann_recall@100"]
    # the presets' factory strings, sized to the small corpus
    assert ann["kinds"]["hnsw"]["factory"].startswith("HNSW")
    assert "PQ" in ann["kinds"]["ivfpq"]["factory"]
    embedding = results["embedding_step"]
    assert embedding["rows"] == 20000
    assert embedding["batch"] == 512
    assert results["embedding_step_speedup"] == pytest.approx(
        embedding["plain_seconds_per_step"] / embedding["torchrec_seconds_per_step"]
    )
    pipeline = results["pipeline"]
    pairs = [real / built for real, built in zip(pipeline["real_rounds"], pipeline["prebuilt_rounds"])]
    assert len(pairs) == pipeline["rounds"]
    assert results["pipeline_efficiency"] == pytest.approx(float(np.median(pairs)))
    assert pipeline["real_steps_per_second"] == max(pipeline["real_rounds"])
    gemm = results["gemm"]["gflops_per_second"]
    for name, row in results["crossings"].items():
        assert row["flops_fraction_of_gemm"] == pytest.approx(
            row["step_gflops"] * row["train_steps_per_second"] / gemm
        ), name
    # a step's FLOPs include at least the in-batch logits' three (B x d) @ (d x B) products
    batch, dim = results["settings"]["batch_size"], 64
    assert results["crossings"]["mlp"]["step_gflops"] * 1e9 >= 3 * 2 * batch * batch * dim
    assert results["crossings"]["dcnv2"]["step_gflops"] > results["crossings"]["mlp"]["step_gflops"]
    assert results["settings"]["sizes"]["quick_mode_sizes_differ_from_full"] is True


def test_gaussian_mixture_is_unit_norm_and_seeded():
    first = gaussian_mixture(500, 16, clusters=4, spread=0.5, seed=3)
    assert first.shape == (500, 16)
    assert first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, gaussian_mixture(500, 16, clusters=4, spread=0.5, seed=3))
    # a small spread keeps points near their 4 centres: about 1/4 of the pairs share a centre and
    # have cosine ~0.8, the rest ~0 (uniform directions in 16 dimensions: almost none above 0.6)
    cosines = first @ first.T
    assert 0.2 < np.mean(cosines > 0.6) < 0.35
    with pytest.raises(ValueError, match="spread"):
        gaussian_mixture(10, 4, clusters=2, spread=-1.0, seed=0)


def test_growth_exponents_are_the_log_log_slopes_over_the_logs_size():
    def row(events: float, linear: float, flat: float) -> dict:
        figures = dict.fromkeys(GROWN, flat)
        figures.update(events=events, generation_seconds=linear, eval_seconds=linear * linear)
        return figures

    rows = [row(1e6, 2.0, 5.0), row(4e6, 8.0, 5.0), row(16e6, 32.0, 5.0)]
    exponents = growth_exponents(rows)
    assert exponents["generation_seconds"] == pytest.approx(1.0)  # 16x events, 16x seconds
    assert exponents["eval_seconds"] == pytest.approx(2.0)  # quadratic
    assert exponents["train_examples_per_second"] == pytest.approx(0.0)


def test_serving_at_scale_runs_one_evaluation_only_job_per_index_over_the_whole_corpus(tmp_path):
    """ebr.diagnostics.bench.serving_scale with a stand-in for the child runner: the commands it builds,
    and the ratios against flat from the metrics the jobs write."""
    speeds = {"flat": 100.0, "ivfpq_large": 900.0, "hnsw_large": 1500.0}
    commands = []

    def child(command, env, logs):
        commands.append(command)
        index = next(arg.split("=", 1)[1] for arg in command if arg.startswith("index="))
        run_dir = Path(next(arg.split("=", 1)[1] for arg in command if arg.startswith("hydra.run.dir=")))
        run_dir.mkdir(parents=True)
        metrics = {
            "corpus/size": 900.0,
            "eval/users": 50.0,
            "serving/index_build_seconds": 2.0,
            "serving/search_seconds": 50.0 / speeds[index],
            "serving/search_users_per_second": speeds[index],
            "ann_recall@100": 1.0 if index == "flat" else 0.9,
            "recall@100": 0.3,
            "eval/seconds": 10.0,
            "eval/users_per_second": speeds[index] / 10,
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        return "", 1.0, 123.0

    model = tmp_path / "run" / "model.pt"
    result = bench_serving_scale(model, ["data=synthetic_large"], {}, tmp_path, 2, list(speeds), child)
    assert len(commands) == 3
    for command in commands:
        assert {"eval_only=true", f"ckpt_path={model}", *WHOLE_CORPUS, "data=synthetic_large"} <= set(command)
    rows = result["indexes"]
    assert rows["hnsw_large"]["search_vs_flat"] == pytest.approx(15.0)
    assert rows["ivfpq_large"]["eval_vs_flat"] == pytest.approx(9.0)
    assert rows["flat"]["search_vs_flat"] == 1.0
    assert rows["hnsw_large"]["peak_rss_mb"] == 123.0
    with pytest.raises(ValueError, match="must start with flat"):
        bench_serving_scale(model, [], {}, tmp_path, 1, ["hnsw"], child)


def test_the_serving_section_trains_once_and_serves_each_preset_with_its_overrides(tmp_path):
    """bench_serving_section with a stand-in child: one training command, then one evaluation-only
    job per preset (overrides passed through), and index=auto's choice read from its run.json."""
    from ebr.diagnostics.bench.serving_scale import bench_serving_section, format_serving_section

    commands = []

    def child(command, env, logs):
        commands.append(command)
        run_dir = Path(next(arg.split("=", 1)[1] for arg in command if arg.startswith("hydra.run.dir=")))
        run_dir.mkdir(parents=True)
        index = next((arg.split("=", 1)[1] for arg in command if arg.startswith("index=")), None)
        speed = {None: 1.0, "flat": 100.0, "hnsw_large": 800.0, "auto": 1200.0}[index]
        metrics = {
            "corpus/size": 900.0,
            "eval/users": 50.0,
            "serving/index_build_seconds": 2.0,
            "serving/search_seconds": 50.0 / speed,
            "serving/search_users_per_second": speed,
            "ann_recall@100": 1.0 if index in (None, "flat") else 0.96,
            "recall@100": 0.3,
            "eval/seconds": 10.0,
            "eval/users_per_second": speed / 10,
            "train/examples": 1000.0,
        }
        if index == "auto":
            metrics["serving/side_by_side_queries_per_second"] = 1500.0
            metrics["serving/side_by_side_flat_queries_per_second"] = 125.0
            metrics["serving/side_by_side_vs_flat"] = 12.0
            metrics["serving/side_by_side_vs_flat_min"] = 9.5
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        if index == "auto":
            point = {"sized_factory": "IVF2048,Flat", "search_params": {"nprobe": 16.0}}
            choice = {"chosen": 1, "sample_queries": 300, "operating_points": [{}, point]}
            (run_dir / "run.json").write_text(json.dumps({"info": {"index_choice": choice}}))
        return "", 1.0, 50.0

    presets = ["flat", "hnsw_large index.search_params.efSearch=400", "auto"]
    result = bench_serving_section(tmp_path, 2, ["data=synthetic_xl"], presets, child)
    assert len(commands) == 4
    assert "ebr.train" in commands[0]
    assert "trainer.max_epochs=1" in commands[0]
    assert "index.search_params.efSearch=400" in commands[2]
    assert result["training"]["recall@100"] == 0.3
    rows = result["indexes"]
    assert rows["hnsw_large index.search_params.efSearch=400"]["search_vs_flat"] == pytest.approx(8.0)
    assert rows["auto"]["chosen"] == "IVF2048,Flat {'nprobe': 16.0}"
    assert rows["auto"]["search_vs_flat"] == pytest.approx(12.0)
    text = "\n".join(format_serving_section(result))
    assert "chose IVF2048,Flat {'nprobe': 16.0} on 300 validation users" in text
    assert rows["auto"]["side_by_side_vs_flat_min"] == 9.5
    assert "side_by_side_vs_flat" not in rows["flat"]
    assert "1,500 against flat's 125 queries/s, 12.00x (lowest chunk 9.50x)" in text

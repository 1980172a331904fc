"""Bad input through `ebr-train` (its console script's `main`, in process): each gets a clear error
naming the cause, a non-zero exit, and no output presented as complete (no metrics.json).

Items of the issue's list that need the `corpus` config group (more corpus pins than exist) belong
to that group's branch; "more seeds than exist" is not a meaningful input (any seed is a seed).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from jobs import train_in_process

QUICK = ["trainer.enable_progress_bar=false", "logger=none", "trainer.max_epochs=1"]
TINY = ["data=synthetic_tiny", *QUICK]
# a fitted baseline needs no training: the fastest whole job on the tiny world
NO_TRAINING = [*TINY, "model=popularity", "eval.simulation.users=200"]
DAY = 86_400
T0 = 1_704_067_200  # 2024-01-01


def _train(monkeypatch, capsys, run_dir: Path, args: list[str]) -> tuple[int, str]:
    """Run ebr-train in process into `run_dir`; returns (exit code, everything it printed)."""
    return train_in_process(monkeypatch, capsys, [*args, f"hydra.run.dir={run_dir}"])


def _assert_refused(code: int, output: str, run_dir: Path, *causes: str) -> str:
    assert code != 0, output[-3000:]
    for cause in causes:
        assert cause in output, f"{cause!r} not in:\n{output[-3000:]}"
    assert not (run_dir / "metrics.json").exists()
    if (run_dir / "error.txt").is_file():
        for cause in causes:
            assert cause in (run_dir / "error.txt").read_text()
    return output


def _events(n_users: int = 30, n_items: int = 40, days: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = n_users * 12
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, n_users, n)],
            "item_id": [f"i{i}" for i in rng.integers(0, n_items, n)],
            "timestamp": np.sort(T0 + rng.integers(0, days * DAY, n)),
        }
    )


def _events_args(path: Path, *extra: str) -> list[str]:
    return ["data=events_file", f"data.path={path}", *QUICK, "model=popularity", *extra]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


# -- the events file ---------------------------------------------------------------------------


def test_empty_events_file(tmp_path, run_dir, monkeypatch, capsys) -> None:
    path = tmp_path / "log.csv"
    path.write_text("")
    code, out = _train(monkeypatch, capsys, run_dir, _events_args(path))
    _assert_refused(code, out, run_dir, "log.csv: the file is empty")
    path.write_text("user_id,item_id,timestamp\n")
    code, out = _train(monkeypatch, capsys, run_dir, [*_events_args(path), "force=true"])
    _assert_refused(code, out, run_dir, "log.csv: holds no events")


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        ("", "column 'timestamp' row 5: value missing (empty or NaN) is not a number"),
        ("-5", "column 'timestamp' row 5: value -5 outside"),
        ("99999999999", "column 'timestamp' row 5: timestamp 99999999999 (5138-"),
    ],
    ids=["nan", "negative", "far-future"],
)
def test_bad_timestamps_name_file_and_row(tmp_path, run_dir, monkeypatch, capsys, value, cause) -> None:
    frame = _events().astype({"timestamp": object})
    frame.loc[5, "timestamp"] = value
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    code, out = _train(monkeypatch, capsys, run_dir, _events_args(path))
    _assert_refused(code, out, run_dir, f"log.csv: {cause}")


def test_file_cut_mid_row_and_mid_field(tmp_path, run_dir, monkeypatch, capsys) -> None:
    path = tmp_path / "log.csv"
    _events().to_csv(path, index=False)
    text = path.read_text()
    # cut inside the last row's timestamp (mid-field) and after its first field (mid-row)
    for cut, name in ((len(text) - 4, "mid-field"), (text.rindex("\n", 0, len(text) - 1) + 4, "mid-row")):
        path.write_text(text[:cut])
        code, out = _train(monkeypatch, capsys, run_dir / name, _events_args(path))
        _assert_refused(code, out, run_dir / name, "log.csv: does not end in a newline", "row 359")


def test_user_ids_missing_from_the_user_table(tmp_path, run_dir, monkeypatch, capsys) -> None:
    path = tmp_path / "log.csv"
    _events().to_csv(path, index=False)
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(29)], "country": ["fr"] * 29})  # no u29
    users.to_csv(tmp_path / "users.csv", index=False)
    code, out = _train(
        monkeypatch, capsys, run_dir, _events_args(path, f"data.user_features={tmp_path / 'users.csv'}")
    )
    _assert_refused(code, out, run_dir, "users.csv: 1 key(s) of the events are missing", "'u29'")


def test_duplicate_pin_ids_in_the_pin_table(tmp_path, run_dir, monkeypatch, capsys) -> None:
    path = tmp_path / "log.csv"
    _events().to_csv(path, index=False)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(40)] + ["i7"], "kind": ["a"] * 41})
    items.to_csv(tmp_path / "items.csv", index=False)
    code, out = _train(
        monkeypatch, capsys, run_dir, _events_args(path, f"data.item_features={tmp_path / 'items.csv'}")
    )
    _assert_refused(code, out, run_dir, "items.csv: column 'item_id' row 40: duplicate key 'i7'")


def test_a_split_whose_test_window_is_empty(tmp_path, run_dir, monkeypatch, capsys) -> None:
    frame = _events().assign(event="click")
    frame.loc[frame["timestamp"] >= T0 + 23 * DAY, "event"] = "impression"  # the last 7 days: no engagement
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    code, out = _train(monkeypatch, capsys, run_dir, _events_args(path, "+data.columns.event=event"))
    _assert_refused(code, out, run_dir, "the test window (7 days) holds no engagements")


def test_movielens_ratings_cut_inside_the_last_field(tmp_path, run_dir, monkeypatch, capsys) -> None:
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "movies.csv").write_text("movieId,title,genres\n1,A (1990),Drama\n2,B (1991),Comedy\n")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,5.0,96")
    code, out = _train(monkeypatch, capsys, run_dir, ["data=movielens", f"data.path={folder}", *QUICK])
    _assert_refused(code, out, run_dir, "ratings.csv: does not end in a newline", "row 1")
    # the same cut row with a newline after it: a 1970 timestamp, refused by its date
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,5.0,96\n")
    from ebr.data.loaders.movielens import load_movielens
    from ebr.data.schema import DataValidationError

    with pytest.raises(
        DataValidationError, match=r"ratings\.csv: column 'timestamp' row 1: timestamp 96 \(1970"
    ):
        load_movielens(folder)


# -- the config ----------------------------------------------------------------------------------


def test_an_unknown_crossing_module(tmp_path, run_dir, monkeypatch, capsys) -> None:
    code, out = _train(monkeypatch, capsys, run_dir, [*TINY, "model/crossing=nope"])
    _assert_refused(code, out, run_dir, "model/crossing", "nope")
    assert not (run_dir / "model.pt").exists()
    code, out = _train(
        monkeypatch, capsys, run_dir, [*TINY, "model.crossing._target_=ebr.models.crossing.nope.Nope"]
    )
    _assert_refused(code, out, run_dir, "model.crossing._target_='ebr.models.crossing.nope.Nope'")
    assert "found before any work" in out


def test_settings_are_checked_before_the_data_loads(tmp_path, run_dir, monkeypatch, capsys) -> None:
    import ebr.pipeline  # imported before the patch, so the patch is undone to the real function

    def never(*_args, **_kwargs):
        raise AssertionError("the data must not load for an invalid config")

    monkeypatch.setattr(ebr.pipeline, "seeded_data_and_split", never)
    bad = [
        "train.sharding=row_wise",
        "train.logq=exactly",
        "seed=-1",
        "train.batch_size=0",
        "index=hnsw",
        "index.search_params.efSearch=0",
    ]
    code, out = _train(monkeypatch, capsys, run_dir, [*TINY, *bad])
    _assert_refused(
        code,
        out,
        run_dir,
        "train.sharding='row_wise' (it needs GPUs): the plans available on this device",
        "table_wise, column_wise, data_parallel",
        "train.logq='exactly': must be one of sketch, exact, none",
        "seed=-1: must be an integer >= 0",
        "train.batch_size=0: must be an integer >= 1",
        "index.search_params.efSearch=0: must be >= 1",
    )
    assert json.loads((run_dir / ".outcome.json").read_text())["status"] == "failed"
    for factory, cause in (
        ("HNSW0,Flat", "HNSW M (graph degree) must be >= 1"),
        ("IVF9,Nope", "faiss cannot"),
    ):
        code, out = _train(monkeypatch, capsys, run_dir, [*TINY, f"index.factory='{factory}'"])
        _assert_refused(code, out, run_dir, cause)
    code, out = _train(monkeypatch, capsys, run_dir, [*TINY, "index=ivfpq", "index.search_params.nprobe=0"])
    _assert_refused(code, out, run_dir, "index.search_params.nprobe=0: must be >= 1")


# -- pre-trained ID snapshots --------------------------------------------------------------------


def _pretrained(snapshot_dir: Path) -> list[str]:
    return [
        *TINY,
        "model/id_embedding=pretrained",
        "model.id_embedding.snapshot_policy=latest",
        f"model.id_embedding.snapshot_dir={snapshot_dir}",
    ]


def test_an_empty_snapshot_directory(tmp_path, run_dir, monkeypatch, capsys) -> None:
    empty = tmp_path / "snapshots"
    empty.mkdir()
    code, out = _train(monkeypatch, capsys, run_dir, _pretrained(empty))
    _assert_refused(code, out, run_dir, str(empty))
    assert "no snapshot" in out.lower()
    assert not (run_dir / "model.pt").exists()


def test_a_snapshot_with_a_truncated_tensor_file(tmp_path, run_dir, monkeypatch, capsys) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from ebr.app import CONFIG_DIR
    from ebr.pretraining.snapshots import save_snapshot

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        data = instantiate(compose("train", overrides=["data=synthetic_tiny"]).data)
    ids = {"user": np.arange(data.users.n_rows), "pin": np.arange(data.pins.n_rows)}
    tables = {side: torch.randn(len(ids[side]), 32) for side in ids}
    window = {"start": 0, "end": int(data.events["timestamp"].min())}
    directory = save_snapshot(
        tmp_path / "snapshots", tables, ids, {"window": window, "data_source": data.source}
    )
    tables_file = directory / "tables.pt"
    tables_file.write_bytes(tables_file.read_bytes()[:1000])
    code, out = _train(monkeypatch, capsys, run_dir, _pretrained(tmp_path / "snapshots"))
    # the manifest's hash of the file refuses it before it is read
    _assert_refused(code, out, run_dir, f"{tables_file} does not match the sha256 its manifest recorded")
    assert not (run_dir / "model.pt").exists()
    # a manifest without hashes (written before them): the load names the file
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest["hashes"]
    (directory / "manifest.json").write_text(json.dumps(manifest))
    unhashed = tmp_path / "unhashed"
    code, out = _train(monkeypatch, capsys, unhashed, _pretrained(tmp_path / "snapshots"))
    _assert_refused(code, out, unhashed, f"{tables_file}: cannot be read as an ID snapshot tensor file")


# -- model artifact and index --------------------------------------------------------------------


def test_a_damaged_or_foreign_model_file_is_named(tmp_path) -> None:
    from ebr.models.artifact import ARTIFACT_FORMAT, ArtifactError, load_artifact

    cut = tmp_path / "model.pt"
    torch.save({"format": ARTIFACT_FORMAT, "state_dict": {"w": torch.zeros(1000)}}, cut)
    cut.write_bytes(cut.read_bytes()[:300])
    with pytest.raises(ArtifactError, match=r"model\.pt: cannot be read as an ebr model artifact"):
        load_artifact(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": ARTIFACT_FORMAT, "obj": Path("x")}, foreign)  # a pickled object: refused
    with pytest.raises(ArtifactError, match=r"foreign\.pt: cannot be read"):
        load_artifact(foreign)
    old = tmp_path / "old.pt"
    torch.save({"format": "ebr-two-tower/1", "state_dict": {}}, old)
    with pytest.raises(
        ArtifactError, match=r"old\.pt: ebr model artifact format 'ebr-two-tower/1'.*unweighted means"
    ):
        load_artifact(old)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "ebr-two-tower/9", "state_dict": {}}, newer)
    with pytest.raises(ArtifactError, match=r"newer\.pt: .*'ebr-two-tower/9'.*written by a newer ebr"):
        load_artifact(newer)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(ArtifactError, match=r"other\.pt: not an ebr model artifact"):
        load_artifact(other)


def test_an_index_built_with_another_dimension(tmp_path) -> None:
    from ebr.serving.index import IndexConfig, ItemIndex

    rng = np.random.default_rng(0)
    index = ItemIndex(rng.normal(size=(50, 8)).astype(np.float32), np.arange(50), IndexConfig())
    index.save(tmp_path / "index")
    loaded = ItemIndex.load(tmp_path / "index")
    with pytest.raises(ValueError, match=r"queries have dimension 16, the index has 8"):
        loaded.search(rng.normal(size=(3, 16)).astype(np.float32), 5)
    np.save(tmp_path / "index" / "vectors.npy", rng.normal(size=(50, 16)).astype(np.float32))
    with pytest.raises(ValueError, match=r"holds 50 vectors of dimension 8"):
        ItemIndex.load(tmp_path / "index")


# -- the output directory ------------------------------------------------------------------------


def test_an_unwritable_output_directory(tmp_path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the run directory should go")
    run_dir = blocker / "run"
    code, out = _train(monkeypatch, capsys, run_dir, NO_TRAINING)
    assert code != 0
    assert "not-a-directory" in out
    assert not run_dir.exists()


def test_a_read_only_output_directory(tmp_path, run_dir, monkeypatch, capsys) -> None:
    # the tests may run as root, which ignores permission bits: the file system's answer is simulated
    real = Path.write_bytes

    def read_only(self: Path, data: bytes) -> int:
        if run_dir in self.parents:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)
    code, out = _train(monkeypatch, capsys, run_dir, NO_TRAINING)
    _assert_refused(code, out, run_dir, "Read-only file system")


def test_a_full_disk_fails_the_job_and_leaves_no_metrics(tmp_path, run_dir, monkeypatch, capsys) -> None:
    real = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if ".metrics.json" in str(self):  # the temporary of metrics.json (ebr.runs.write_atomic)
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    code, out = _train(monkeypatch, capsys, run_dir, NO_TRAINING)
    _assert_refused(code, out, run_dir, "No space left on device")
    assert out.count("No space left on device") == 1, "the error is printed once"
    assert json.loads((run_dir / ".outcome.json").read_text())["status"] == "failed"
    assert not list(run_dir.glob(".metrics.json*")), "no temporary file is left behind"


def test_duplicate_event_rows_are_refused_by_default_and_counted_when_dropped(
    tmp_path, run_dir, monkeypatch, capsys
) -> None:
    """Issue 32 case 5: `data.duplicates` (error by default for real logs) and `data/duplicate_rows`."""
    frame = _events()
    path = tmp_path / "log.csv"
    pd.concat([frame, frame.iloc[:3]], ignore_index=True).to_csv(path, index=False)
    code, out = _train(monkeypatch, capsys, run_dir, _events_args(path))
    _assert_refused(code, out, run_dir, "log.csv: 3 exact duplicate event rows", "data.duplicates=drop")
    dropping = [*_events_args(path), "data.duplicates=drop", "force=true"]
    code, out = _train(monkeypatch, capsys, run_dir, dropping)
    assert code == 0, out[-3000:]
    dropped = json.loads((run_dir / "metrics.json").read_text())
    assert dropped["data/duplicate_rows"] == 3.0
    # the engagement counts are those of the log written once
    single = tmp_path / "single.csv"
    frame.to_csv(single, index=False)
    once = tmp_path / "once"
    code, out = _train(monkeypatch, capsys, once, _events_args(single))
    assert code == 0, out[-3000:]
    metrics = json.loads((once / "metrics.json").read_text())
    assert metrics["data/duplicate_rows"] == 0.0
    for key in ("data/train_engagements", "data/test_engagements", "recall@100"):
        assert dropped[key] == metrics[key], key


def test_a_corpus_smaller_than_k_and_a_capped_n_interests_are_warned_and_recorded(
    tmp_path, run_dir, monkeypatch, capsys
) -> None:
    """Issue 32 case 7: `corpus.size=1` served a 1-pin corpus and `serving.n_interests=1000` was capped,
    without a word."""
    args = [*NO_TRAINING, "corpus.size=1", "serving.n_interests=1000"]
    code, out = _train(monkeypatch, capsys, run_dir, args)
    assert code == 0, out[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["corpus/size"] == 1.0
    assert metrics["warnings/corpus_smaller_than_k"] == 1.0
    assert metrics["warnings/n_interests_capped"] == 1.0
    assert "fewer than the largest K=100" in out
    assert "serving.n_interests=1000 is capped to the data's 12 interests" in out
    # an ordinary job records no warning
    plain = tmp_path / "plain"
    code, out = _train(monkeypatch, capsys, plain, NO_TRAINING)
    assert code == 0, out[-3000:]
    recorded = json.loads((plain / "metrics.json").read_text())
    assert not [key for key in recorded if key.startswith("warnings/")]

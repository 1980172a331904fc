"""A config value's rule is written once, by its owner, and applied before any work.

The schemas of ebr.config declare their fields' checks, a `_target_` function its parameters'
(`Annotated`), and the objects a group builds check themselves; ebr.validation applies them all and
adds only the rules that span several keys or the machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ebr import validation
from ebr.config import register_schemas
from ebr.runs.checks import POSITIVE, Integer, IntegerList, Number, OneOf, declared_checks

CONF = Path(__file__).resolve().parent.parent / "conf"


@pytest.fixture
def composed():
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield lambda name, overrides: compose(name, overrides=overrides)
    GlobalHydra.instance().clear()


def _refusal(cfg) -> str:
    with pytest.raises(validation.ConfigValidationError) as refused:
        validation.validate_config(cfg)
    return str(refused.value)


def test_the_rules_name_the_key_the_value_and_what_is_allowed() -> None:
    assert Integer(1).problem("a", 0) == "a=0: must be an integer >= 1"
    assert Integer(1).problem("a", True) == "a=True: must be an integer >= 1"
    assert Integer(1, optional=True).problem("a", None) is None
    assert POSITIVE.problem("b", float("nan")) == "b=nan: must be a finite number > 0"
    assert POSITIVE.problem("b", float("inf")) == "b=inf: must be a finite number > 0"
    assert Number(low_inclusive=True, high=1.0).problem("c", 1.0) == "c=1.0: must be a number with 0 <= x < 1"
    assert OneOf(("x", "y")).problem("d", "z") == "d='z': must be one of x, y"
    assert OneOf("ebr.evaluation.task.HIT_LEVELS").problem("e", "z") == "e='z': must be one of pin, signature"
    assert IntegerList().problem("f", []) == "f=[]: must be a non-empty list of integers >= 1"
    assert IntegerList(allow_empty=True).problem("f", []) is None


def test_a_split_function_declares_its_rules_and_applies_them_itself() -> None:
    from ebr.data.splits import global_temporal_split, per_user_temporal_split

    assert set(declared_checks(global_temporal_split)) == {
        "test_days",
        "val_days",
        "train_days",
        "pretrain_days",
    }
    with pytest.raises(ValueError, match=r"split\.min_engagements=1: must be an integer >= 2"):
        per_user_temporal_split(None, min_engagements=1)  # refused before the data is read


def test_the_split_and_corpus_owners_refuse_before_any_data(composed) -> None:
    out = _refusal(
        composed("train", ["split=per_user_temporal", "split.min_engagements=1", "split.val_fraction=1"])
    )
    assert "split.min_engagements=1: must be an integer >= 2" in out
    assert "split.val_fraction=1: must be a number with 0 <= x < 1" in out
    out = _refusal(composed("train", ["split.test_days=0", "corpus.scoring=sums"]))
    assert "split.test_days=0: must be a finite number > 0" in out
    assert "corpus.scoring must be one of sum, time_decay, got 'sums'" in out


def test_the_schema_rules_of_pretrain_and_eval(composed) -> None:
    out = _refusal(composed("pretrain", ["pretrain.logq=exactly", "pretrain.snapshot.end=now"]))
    assert "pretrain.logq='exactly': must be one of sketch, exact, none" in out
    assert "pretrain.snapshot.end='now': must be one of train_start, train_end" in out
    out = _refusal(composed("train", ["eval.window=train", "eval.hit_level=image", "eval.ks=[0]"]))
    assert "eval.window='train': must be one of test, val" in out
    assert "eval.hit_level='image': must be one of pin, signature" in out
    assert "eval.ks=[0]: must be a non-empty list of integers >= 1" in out
    validation.validate_config(composed("pretrain", []))
    validation.validate_config(composed("train", ["data=synthetic_tiny"]))


def test_a_multi_rank_pretraining_batch_splits_into_equal_shares(composed, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = _refusal(composed("pretrain", ["pretrain.batch_size=129"]))
    assert "pretrain.batch_size=129: a 2-rank job trains on equal per-rank shares" in out
    assert "must be a multiple of 2" in out
    validation.validate_config(composed("pretrain", ["pretrain.batch_size=128"]))

"""The package dependencies point one way, so a wrong import fails CI.

data <- models <- training, serving <- evaluation <- retrieval <- pipeline <- train (the entry point);
data <- models <- training <- pretraining <- pretrain (the pre-training entry point);
pretraining <- retrieval (the towers read pre-trained ID snapshots);
ebr.runs and ebr.report import nothing of ebr but ebr.runs; every package may import ebr.runs;
retrieval <- diagnostics (the diagnostic scripts' code), which nothing of ebr imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EBR = Path(__file__).resolve().parent.parent / "ebr"

# package (or top-level module) -> the ebr packages it may import besides itself
ALLOWED: dict[str, set[str]] = {
    "runs": set(),
    "override_check": set(),
    # registers the structured schemas of the groups' owners (the world, the splits, the serving
    # corpus, interest serving, the simulated funnel), which live with them, and reads the default
    # sharding plan from its owner (the torch-free ebr.training.plans)
    "config": {"data", "serving", "evaluation", "training"},
    "data": set(),
    "models": {"data"},
    # a multi-task cluster job's rendezvous is named where the job starts (ebr.runs.cluster)
    "training": {"data", "models", "runs"},
    "serving": {"data", "models"},
    "evaluation": {"data"},
    # the two-tower retriever chooses and reads ID snapshots (ebr.retrieval.id_embedding)
    "retrieval": {"data", "models", "training", "serving", "evaluation", "runs", "pretraining"},
    "pipeline": {"data", "models", "training", "serving", "evaluation", "retrieval", "runs"},
    "search": set(),
    # the checks before work read the config only (the index and other targets through Hydra); each
    # value's rule is its owner's: the schemas' declarations (config), and the objects that check
    # themselves when built (conditioning, interest serving) or define the options (sharding plans);
    # the job's process count comes from the one reader of the launcher's environment (ebr.runs.ranks);
    # the snapshot directory pre-trained ID tables read is checked by the snapshots' owner (pretraining)
    "validation": {"config", "models", "serving", "training", "runs", "pretraining"},
    "app": {"config", "override_check", "runs", "search", "validation"},
    "train": {"app", "runs", "pipeline"},
    "pretraining": {"data", "models", "training", "runs"},
    "pretrain": {"app", "runs", "pretraining"},
    "report": {"runs"},
    # the diagnostic scripts' package code (scripts/ only parse and print): the headroom study ranks
    # with the oracle retriever and scores with the evaluation; the benchmarks time serving's index
    "diagnostics": {"data", "models", "serving", "evaluation", "retrieval"},
}


# ebr.runs imports nothing of ebr, so importing it can close no cycle: it is the one place of the
# run-file names (model.pt, ...), the atomic file and directory writers, the rank readers and the
# Hydra-exception unwrapper, which every layer uses
EVERYONE_MAY_IMPORT = {"runs"}


def _unit(path: Path) -> str:
    parts = path.relative_to(EBR).with_suffix("").parts
    return parts[0]


def _ebr_imports(path: Path) -> set[str]:
    """The ebr packages a source file imports (top-level and inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ebr" and len(parts) > 1:
                found.add(parts[1])
    return found


SOURCES = sorted(p for p in EBR.rglob("*.py") if p.name != "__init__.py" or p.parent != EBR)


def test_every_package_has_a_rule() -> None:
    units = {_unit(p) for p in SOURCES}
    assert units <= set(ALLOWED), f"add a dependency rule for {sorted(units - set(ALLOWED))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(EBR).as_posix())
def test_imports_point_one_way(path: Path) -> None:
    unit = _unit(path)
    wrong = _ebr_imports(path) - ALLOWED[unit] - {unit} - EVERYONE_MAY_IMPORT
    assert not wrong, (
        f"ebr/{path.relative_to(EBR)} ({unit}) imports {sorted(wrong)}; allowed: {sorted(ALLOWED[unit])}"
    )


def test_the_rule_itself_has_no_cycle() -> None:
    seen: dict[str, int] = {}

    def depth(unit: str, stack: tuple[str, ...] = ()) -> int:
        assert unit not in stack, f"dependency cycle {' -> '.join((*stack, unit))}"
        if unit not in seen:
            seen[unit] = 1 + max((depth(d, (*stack, unit)) for d in ALLOWED[unit]), default=0)
        return seen[unit]

    for unit in ALLOWED:
        depth(unit)
    assert seen["data"] < seen["models"] < seen["training"] < seen["retrieval"] < seen["pipeline"]

"""ebr.report reads run directories through ebr.runs only: no other module of ebr is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import ebr.report

ALLOWED = ("ebr.runs", "ebr.report")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module of the ebr.report package."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # relative: level 1 is ebr.report itself, 2 would be ebr
                base = ".".join(["ebr", "report"][: 3 - node.level])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            out += [(node.lineno, module)] if node.module or node.level else []
    return out


def test_report_modules_import_nothing_of_ebr_but_runs() -> None:
    files = sorted(Path(ebr.report.__file__).parent.rglob("*.py"))
    assert len(files) >= 10  # the package's modules were found
    bad = []
    for path in files:
        for line, module in _imports(path):
            of_ebr = module == "ebr" or module.startswith("ebr.")
            allowed = any(module == name or module.startswith(f"{name}.") for name in ALLOWED)
            if of_ebr and not allowed:
                bad.append(f"{path.name}:{line}: {module}")
    assert not bad, bad


def test_the_check_sees_forbidden_imports(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import ebr\nfrom ebr.models import towers\nfrom ebr.runs import read_arm\nfrom .. import data\n"
    )
    assert [module for _, module in _imports(sample)] == ["ebr", "ebr.models", "ebr.runs", "ebr"]

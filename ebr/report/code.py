"""The code a sweep's numbers came from: its finished jobs' code identities (``run.json``), grouped.

A report states the commit of the code that ran the jobs, not of the code that wrote the report;
a sweep whose finished jobs ran different code mixes numbers of different programs, so
``ebr-report`` refuses it unless ``--allow-mixed-code`` is given (then the report lists them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebr.runs import RECORD_FILE, read_record
from ebr.runs.code import CODE_KEY, COMPARED_KEYS, describe_commit


class MixedCodeError(ValueError):
    """The finished jobs of a sweep ran different code (the message lists each and its job count)."""


@dataclass(frozen=True)
class CodeUsed:
    """One code identity and the finished jobs that ran it.

    Args:
        label: the short commit, "with uncommitted changes" when the diff hash is present, or
            "recorded without code identity" for jobs of older ebr.
        git_commit: the full commit, None when unknown.
        git_diff_sha256: sha256 of the uncommitted diff of tracked files outside
            experiments/, None when clean or unknown.
        ebr_version: ebr's version.
        packages: torch, torchrec, faiss, lightning, hydra -> version (None: not installed).
        jobs: the job directories (names in the sweep) that ran it.
    """

    label: str
    git_commit: str | None
    git_diff_sha256: str | None
    ebr_version: str | None
    packages: dict[str, str | None] = field(default_factory=dict)
    jobs: tuple[str, ...] = ()

    def describe(self) -> str:
        """The label and the job count, e.g. ``abc1234: 6 job(s)``."""
        return f"{self.label}: {len(self.jobs)} job(s)"

    def to_json(self) -> dict[str, Any]:
        """As ``report.json`` holds it."""
        return {
            "label": self.label,
            "git_commit": self.git_commit,
            "git_diff_sha256": self.git_diff_sha256,
            "ebr_version": self.ebr_version,
            "packages": dict(self.packages),
            "jobs": list(self.jobs),
        }


def _key(identity: Mapping[str, Any] | None) -> str:
    if identity is None:
        return "none"
    return repr([identity.get(key) for key in COMPARED_KEYS])


def code_used(jobs: Iterable[tuple[str, Path]]) -> list[CodeUsed]:
    """The code identities of finished jobs, one entry per identity, most jobs first.

    Args:
        jobs: (job name, job directory) of the finished jobs.

    Raises:
        ValueError: a ``run.json`` that does not parse, or whose code identity is not a mapping.
    """
    groups: dict[str, tuple[Mapping[str, Any] | None, list[str]]] = {}
    for name, path in jobs:
        record = read_record(path)
        identity = None if record is None else record.get(CODE_KEY)
        if identity is not None and not isinstance(identity, Mapping):
            raise ValueError(f"{name}/{RECORD_FILE}: {CODE_KEY!r} must be a mapping, got {identity!r}")
        groups.setdefault(_key(identity), (identity, []))[1].append(name)
    out = []
    for identity, names in groups.values():
        known = identity or {}
        out.append(
            CodeUsed(
                label=describe_commit(identity),
                git_commit=known.get("git_commit"),
                git_diff_sha256=known.get("git_diff_sha256"),
                ebr_version=known.get("ebr_version"),
                packages=dict(known.get("packages") or {}),
                jobs=tuple(names),
            )
        )
    return sorted(out, key=lambda used: -len(used.jobs))


def check_one_code(used: list[CodeUsed], sweep_dir: Path) -> None:
    """Refuse a sweep whose finished jobs ran different code.

    Args:
        used: `code_used` of the sweep's finished jobs.
        sweep_dir: the sweep, for the message.

    Raises:
        MixedCodeError: more than one code identity (the message lists each and its job count).
    """
    if len(used) <= 1:
        return
    lines = "\n  ".join(f"{entry.describe()} ({', '.join(entry.jobs)})" for entry in used)
    raise MixedCodeError(
        f"{sweep_dir}: its finished jobs ran {len(used)} different code identities:\n  {lines}\n"
        "Their numbers do not come from one program: re-run the sweep's jobs with one code "
        "(force=true), or pass --allow-mixed-code to report them anyway (the report lists them)."
    )


def code_label(used: tuple[CodeUsed, ...] | list[CodeUsed]) -> str:
    """One line for a report's header or a README cell: each identity, with job counts when mixed.

    Args:
        used: the report's code identities.
    """
    if not used:
        return "unknown (no finished job)"
    if len(used) == 1:
        return used[0].label
    return "mixed: " + "; ".join(entry.describe() for entry in used)

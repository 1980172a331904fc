"""The code a job ran: the ebr checkout's git commit, a hash of its uncommitted diff, and versions.

Recorded in ``run.json`` beside the config (`code_identity`), so a finished job is reused only by
the same code and a report can say which commit made its numbers. Versions are read from the
installed distributions' metadata, never by importing them: this package must not import torch.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

# the repository root of a source checkout (ebr/runs/code.py -> the folder holding ebr/)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# label -> the distributions that provide it, in order (faiss ships under several names)
PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "torchrec": ("torchrec",),
    "faiss": ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss"),
    "lightning": ("pytorch-lightning", "lightning"),
    "hydra": ("hydra-core",),
}
GIT_TIMEOUT_S = 10
# the key of run.json that holds it
CODE_KEY = "code"
# Tracked folders of results, not code: scripts/reproduce.sh rewrites experiments/README.md between
# its sweeps, and a page edited mid-run must not make the run's later jobs "other code" (a resume
# would then refuse its own finished jobs).
RESULT_PATHS = ("experiments",)
# what decides whether two runs' numbers came from the same code (the note only explains a None)
COMPARED_KEYS = ("git_commit", "git_diff_sha256", "ebr_version", "packages")


def distribution_version(names: tuple[str, ...]) -> str | None:
    """The version of the first of `names` that is installed, None when none is.

    Args:
        names: distribution names to try, in order.
    """
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _git(root: Path, *args: str) -> bytes | None:
    """Stdout of ``git -C root ARGS``; None when git is absent, fails or times out."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_identity(root: Path) -> dict[str, str | None]:
    """{git_commit, git_diff_sha256, git_note} of the checkout at `root`.

    The diff hash is the sha256 of ``git diff HEAD`` (tracked files only, `RESULT_PATHS` left out),
    None when clean. A
    `root` without its own ``.git`` (ebr installed from a wheel, perhaps inside another repository)
    records no commit, and the note says why.

    Args:
        root: the repository root of the ebr checkout.
    """
    unknown: dict[str, str | None] = {"git_commit": None, "git_diff_sha256": None}
    if not (root / ".git").exists():  # a worktree's .git is a file
        return {**unknown, "git_note": f"ebr is not in a git checkout ({root} has no .git)"}
    head = _git(root, "rev-parse", "--verify", "HEAD")
    if head is None:
        return {**unknown, "git_note": "git rev-parse HEAD failed (git absent, no commit, or timed out)"}
    excluded = [f":(exclude){path}" for path in RESULT_PATHS]
    diff = _git(root, "diff", "HEAD", "--no-ext-diff", "--binary", "--", ".", *excluded)
    if diff is None:
        return {**unknown, "git_commit": head.decode().strip(), "git_note": "git diff HEAD failed"}
    digest = hashlib.sha256(diff).hexdigest() if diff else None
    return {"git_commit": head.decode().strip(), "git_diff_sha256": digest, "git_note": None}


def compute_code_identity(root: Path = PACKAGE_ROOT) -> dict[str, Any]:
    """The code identity of the ebr at `root`, computed now (`code_identity` caches it).

    Args:
        root: the repository root of the ebr checkout.
    """
    packages = {label: distribution_version(names) for label, names in PACKAGES.items()}
    return {**git_identity(root), "ebr_version": distribution_version(("ebr",)), "packages": packages}


@functools.cache
def code_identity() -> dict[str, Any]:
    """This process's code identity (computed once: two git calls); shared, so callers that keep or
    change it take `current_code_identity`."""
    return compute_code_identity()


def current_code_identity() -> dict[str, Any]:
    """A copy of `code_identity`, safe to store and change."""
    identity = code_identity()
    return {**identity, "packages": dict(identity["packages"])}


def same_code(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether two code identities name the same code (commit, diff hash, versions).

    Args:
        recorded: a code identity from ``run.json``.
        current: another.
    """
    return all(recorded.get(key) == current.get(key) for key in COMPARED_KEYS)


def describe_commit(identity: Mapping[str, Any] | None) -> str:
    """A short label: ``abc1234``, ``abc1234 with uncommitted changes``, or why there is none.

    Args:
        identity: a code identity, or None for a run recorded without one.
    """
    if identity is None:
        return "recorded without code identity"
    commit = identity.get("git_commit")
    text = "no git commit" if not commit else str(commit)[:12]
    if identity.get("git_diff_sha256"):
        text += f" with uncommitted changes (diff {str(identity['git_diff_sha256'])[:8]})"
    return text


def code_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` lines for the compared keys that differ (packages one by one).

    Args:
        recorded: a code identity from ``run.json``.
        current: the code identity of this process.
    """
    lines = []
    for key in COMPARED_KEYS:
        if key == "packages":
            old, new = recorded.get(key) or {}, current.get(key) or {}
            for name in sorted(set(old) | set(new)):
                if old.get(name) != new.get(name):
                    lines.append(f"{name}: {old.get(name)} -> {new.get(name)}")
        elif recorded.get(key) != current.get(key):
            lines.append(f"{key}: {recorded.get(key)} -> {current.get(key)}")
    return lines


def code_refusal(run_dir: Path, recorded: object) -> str | None:
    """Why finished results of the requested config cannot be reused: other code made them (the
    message names both commits and what differs); None when this process's code made them.

    Args:
        run_dir: the job's directory, for the message.
        recorded: the code identity its ``run.json`` holds (None: recorded by an older ebr).
    """
    current = current_code_identity()
    if isinstance(recorded, Mapping) and same_code(recorded, current):
        return None
    if not isinstance(recorded, Mapping):
        what = f"were recorded without code identity (older ebr); this is {describe_commit(current)}"
        changes = ""
    else:
        what = f"came from commit {describe_commit(recorded)}; this is {describe_commit(current)}"
        changes = "".join(f"\n  {line}" for line in code_differences(recorded, current))
    return (
        f"{run_dir} holds results of this config, but they {what}:{changes}\n"
        "They are not reused. Re-run with force=true to replace them, or choose another "
        "hydra.sweep.dir / hydra.run.dir."
    )

"""The world as a replication axis of a sweep: ``data.config.seed`` is a block, never an arm.

A job's world is its ``data.config.seed`` override (else its config's value). The world key is
left out of every arm label, so the runs of one setting in different worlds form one arm. When
the sweep's jobs ran in more than one world, the key that pairs arm and baseline becomes the
replicate ``WORLD/SEED`` (`replicate_key`): a pair is formed within a world and training seed;
`ebr.report.hierarchy` pools the worlds. A one-world sweep keeps its plain seeds, so its report is
what it was before worlds were an axis.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ebr.runs import Arm, arm_from_overrides, parse_override

if TYPE_CHECKING:
    from ebr.report.sweep import Job

SEED_KEY = "seed"
WORLD_KEY = "data.config.seed"
REPLICATE_SEPARATOR = "/"


def sort_key(text: str | None) -> tuple[int, float, str]:
    """Numbers in numeric order, then text, then None.

    Args:
        text: a seed, world or job name.
    """
    if text is None:
        return (2, 0.0, "")
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def replicate_key(world: str | None, seed: str | None) -> str:
    """The pairing key of a run in a multi-world sweep: ``WORLD/SEED``.

    Args:
        world: the world's seed as text ("?" when unknown).
        seed: the training seed as text ("?" when unknown).
    """
    return f"{world if world is not None else '?'}{REPLICATE_SEPARATOR}{seed if seed is not None else '?'}"


def without_world(arm: Arm, overrides: tuple[str, ...]) -> Arm:
    """The arm with the world key left out of its label and values.

    Args:
        arm: the job's arm (its override_dirname).
        overrides: the job's override strings, as Hydra wrote them.
    """
    if WORLD_KEY not in arm.values:
        return arm
    kept = [text for text in overrides if _key(text) in arm.values and _key(text) != WORLD_KEY]
    return arm_from_overrides(kept, [])


def _key(text: str) -> str:
    try:
        return parse_override(text)[0]
    except ValueError:
        return text


def job_world(overrides: dict[str, str], config_world: object) -> str | None:
    """The world of a job: its ``data.config.seed`` override, else its config's, else None.

    Args:
        overrides: the job's override key -> value.
        config_world: ``data.config.seed`` of the job's config (None when absent).
    """
    if WORLD_KEY in overrides:
        return overrides[WORLD_KEY]
    return None if config_world is None else str(config_world)


def split_worlds(jobs: list[Job]) -> tuple[list[Job], list[str], dict[str, str]]:
    """(jobs with world-free arms and, over several worlds, replicate keys as seeds; the worlds;
    replicate key -> world).

    With one world (or none stated) the jobs keep their seeds and the worlds list is empty.

    Args:
        jobs: the sweep's jobs as read.
    """
    stated = {job.world for job in jobs if job.world is not None}
    worlds = sorted(stated, key=sort_key) if len(stated) > 1 else []
    out, world_of = [], {}
    for job in jobs:
        arm = without_world(job.arm, job.override_list)
        if not worlds:
            out.append(replace(job, arm=arm))
            continue
        key = replicate_key(job.world, job.seed)
        if job.world is not None:
            world_of[key] = job.world
        out.append(replace(job, arm=arm, seed=key))
    return out, worlds, world_of


def replicate_sort_key(text: str | None) -> tuple:
    """Sort key of a seed or a ``WORLD/SEED`` replicate: by world, then seed, numerically.

    Args:
        text: the seed or replicate key.
    """
    if text is None or REPLICATE_SEPARATOR not in text:
        return (sort_key(text),)
    world, _, seed = text.partition(REPLICATE_SEPARATOR)
    return (sort_key(world), sort_key(seed))

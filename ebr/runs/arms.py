"""What a sweep compares: a job's arm, Hydra's ``override_dirname`` less the excluded keys."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ebr.runs.files import HYDRA_FILE, OVERRIDES_FILE, SINGLE_ARM, dig, read_yaml


def parse_override(text: str) -> tuple[str, str]:
    """One Hydra override string as (key, value): ``+a.b=1`` -> ("a.b", "1"); ``~a`` -> ("~a", "<deleted>").

    Raises:
        ValueError: when the text is not of the form key=value.
    """
    if text.startswith("~"):
        return text, "<deleted>"
    key, sep, value = text.partition("=")
    if not sep or not key.lstrip("+"):
        raise ValueError(f"override {text!r} is not of the form key=value")
    return key.lstrip("+"), value


@dataclass(frozen=True)
class Arm:
    """What a job of a sweep varies: its overrides less the keys that name no compared setting.

    The definition is Hydra's ``override_dirname`` with ``hydra.job.config.override_dirname.
    exclude_keys`` (set in ``conf/train.yaml``): the wandb job type is the same string.

    Args:
        label: ``key=value`` pairs sorted by key and joined by commas; "single" when empty.
        values: key -> value of those overrides.
    """

    label: str
    values: dict[str, str]


def arm_from_overrides(overrides: list[str], exclude_keys: list[str] | tuple[str, ...]) -> Arm:
    """The arm of a job from its override strings, built exactly as Hydra builds ``override_dirname``:
    the override lines as written (a ``+`` kept) whose key is not excluded, sorted as text, joined by
    commas.

    Args:
        overrides: the job's task overrides (``.hydra/overrides.yaml``).
        exclude_keys: keys left out (``hydra.job.config.override_dirname.exclude_keys``).
    """
    excluded = set(exclude_keys)
    kept = sorted(text for text in overrides if _override_key(text) not in excluded)
    values = dict(parse_override(text) for text in kept)
    return Arm(",".join(kept) or SINGLE_ARM, values)


def _override_key(text: str) -> str:
    """The key or group an override sets (Hydra's `key_or_group`): no ``+``, ``++`` or ``~`` prefix."""
    return text.lstrip("+~").partition("=")[0]


def read_arm(run_dir: str | os.PathLike[str]) -> Arm:
    """The arm of a finished or unfinished job directory, from its ``.hydra/`` files.

    The exclusions are the ones the job ran with (``.hydra/hydra.yaml``), and always the seed:
    the seed pairs runs, it never names an arm (sweeps from before the exclusions were configured
    have none in their ``hydra.yaml``).

    Raises:
        ValueError: naming the file, when ``.hydra/overrides.yaml`` or ``hydra.yaml`` is malformed.
    """
    directory = Path(run_dir)
    overrides = read_yaml(directory / OVERRIDES_FILE, default=[])
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise ValueError(f"{directory / OVERRIDES_FILE}: expected a YAML list of override strings")
    exclude: list[str] = ["seed"]
    hydra_path = directory / HYDRA_FILE
    if hydra_path.is_file():
        node = read_yaml(hydra_path, default={})
        found = dig(node, ("hydra", "job", "config", "override_dirname", "exclude_keys"))
        if found is not None:
            if not isinstance(found, list):
                raise ValueError(f"{hydra_path}: job.config.override_dirname.exclude_keys is not a list")
            exclude = ["seed", *(str(key) for key in found)]
    try:
        return arm_from_overrides(overrides, exclude)
    except ValueError as exc:
        raise ValueError(f"{directory / OVERRIDES_FILE}: {exc}") from exc

"""What a dashboard slices a job's run by: its arm as config columns and tags, and its data's hash.

The arm is the one ``ebr-report`` groups by (`read_arm`: the overrides less the excluded keys).
Each of its overrides becomes a top-level config column, named by `column_name`:

- ``model/crossing=masknet`` -> ``crossing: masknet``, and, for a group, each scalar key of the
  chosen option's node as ``<column>_<key>`` (``model/id_embedding=frozen_p05`` ->
  ``id_embedding: frozen_p05``, ``id_embedding_dropout: 0.5``, ``id_embedding_freeze: true``;
  ``corpus=time_decay`` -> ``corpus_choice: time_decay``, ``corpus_scoring: time_decay``, ...);
- ``corpus.remap_image_signature=true`` -> ``corpus_remap_image_signature: true`` (the resolved
  config's value, so numbers and booleans stay typed).

A name that is already a top-level config key (``corpus``, ``data``, ``model``) gets ``_choice``
appended: the nested config of that key stays as it is. Besides: ``arm`` (the arm's label, the
runs' wandb job type), ``data_config_hash`` (the data config, known before the data loads) and,
when the job has loaded its data, ``data_fingerprint`` (the events' hash, `ebr.data.fingerprint`).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ebr.runs.arms import Arm, read_arm
from ebr.runs.files import HYDRA_FILE, OVERRIDES_FILE, SINGLE_ARM, dig, read_yaml
from ebr.runs.identity import config_hash, flatten_config

ARM_COLUMN = "arm"
DATA_CONFIG_HASH_COLUMN = "data_config_hash"
# the JobResult.info keys that become columns once the job has read its data
INFO_COLUMNS = ("data_fingerprint", "data_name", "data_source")
EXPERIMENT_TAG, ARM_TAG = "experiment:", "arm:"
CLASH_SUFFIX = "_choice"
_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class RunLabels:
    """What a job's run is labelled with for a dashboard.

    Args:
        columns: top-level config columns (name -> scalar).
        tags: run tags.
    """

    columns: dict[str, Any]
    tags: tuple[str, ...] = field(default_factory=tuple)


def column_name(key: str, taken: Container[str]) -> str:
    """The config column of an override key: the last group segment, dots as underscores.

    Args:
        key: the override's key (``model/crossing``, ``corpus.size``; a ``+`` or ``~`` prefix is
            dropped).
        taken: the top-level config keys: a name among them gets ``_choice`` appended.
    """
    name = key.lstrip("+~").rsplit("/", 1)[-1].replace(".", "_")
    return f"{name}{CLASH_SUFFIX}" if name in taken else name


def arm_columns(arm: Arm, config: Mapping[str, Any], choices: Mapping[str, Any]) -> dict[str, Any]:
    """The config columns of an arm (see the module docstring), ``arm`` first.

    Args:
        arm: the job's arm.
        config: the job's resolved config as plain Python (top-level keys are never overwritten).
        choices: Hydra's group choices (``hydra.runtime.choices``): which override keys are groups.
    """
    columns: dict[str, Any] = {ARM_COLUMN: arm.label}
    for key, text in arm.values.items():
        bare = key.lstrip("+~")
        base = column_name(bare, ())
        if bare in choices:
            columns[column_name(bare, config)] = str(choices[bare])
            node = dig(dict(config), tuple(bare.replace("/", ".").split(".")))
            if isinstance(node, Mapping):
                for leaf, value in node.items():
                    if not str(leaf).startswith("_") and (value is None or isinstance(value, _SCALARS)):
                        columns.setdefault(column_name(f"{base}_{leaf}", config), value)
            continue
        resolved = dig(dict(config), tuple(bare.split(".")))
        if isinstance(resolved, _SCALARS):
            value: Any = resolved
        elif key.startswith("~"):
            value = text  # a deleted key: "<deleted>"
        else:
            value = _scalar(text)
        columns[column_name(bare, config)] = value
    return columns


def _scalar(text: str) -> Any:
    """An override's value text as the YAML scalar it names (the text when it is not one)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if value is None or isinstance(value, _SCALARS) else text


def run_tags(experiment: str | None, arm_label: str) -> tuple[str, ...]:
    """``experiment:<name>`` (when there is one) and ``arm:<label>``."""
    tags = [f"{EXPERIMENT_TAG}{experiment}"] if experiment else []
    return (*tags, f"{ARM_TAG}{arm_label}")


def run_labels(run_dir: Path, config: Mapping[str, Any]) -> RunLabels:
    """The labels of a job about to run, from its ``.hydra/`` files and resolved config.

    Args:
        run_dir: the job's directory (a run without ``.hydra/overrides.yaml`` is the single arm).
        config: the job's resolved config as plain Python.

    Raises:
        ValueError: naming the file, when the ``.hydra/`` files are malformed.
    """
    directory = Path(run_dir)
    arm = read_arm(directory) if (directory / OVERRIDES_FILE).is_file() else Arm(SINGLE_ARM, {})
    choices = dig(read_yaml(directory / HYDRA_FILE, default={}), ("hydra", "runtime", "choices"))
    columns = arm_columns(arm, config, choices if isinstance(choices, Mapping) else {})
    data = config.get("data")
    if isinstance(data, Mapping):
        columns[DATA_CONFIG_HASH_COLUMN] = config_hash(flatten_config(data))
    experiment = config.get("experiment_name")
    return RunLabels(columns, run_tags(None if experiment is None else str(experiment), arm.label))


def info_columns(info: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a finished job adds from its `JobResult.info` (the data's fingerprint, name, source)."""
    return {key: info[key] for key in INFO_COLUMNS if isinstance(info.get(key), _SCALARS)}

"""Which saved model an evaluation-only run serves (`eval_only=true ckpt_path=...`), and the checks
that it is one and was trained on the job's own data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ebr.models.artifact import ArtifactError, artifact_info

# RECORD_FILE (run.json) is written beside model.pt by ebr-train; its info.data_source is the
# fallback of artifacts saved before they recorded the data
from ebr.runs.files import MODEL_FILE, RECORD_FILE


def resolve_checkpoint(ckpt_path: str | None) -> Path:
    """The model file `ckpt_path` names: a model artifact under any file name, or `model.pt` inside a
    run directory; checked before any data work.

    A copy renamed `best.pt` serves like the `model.pt` it came from: what decides is the content
    (an ebr model artifact), read here so that a wrong file fails before the data load.

    Args:
        ckpt_path: the `ckpt_path` key.

    Raises:
        ValueError: naming `ckpt_path`, when it is unset, does not exist, or is not an ebr model
            artifact (the message says which file ebr-train writes).
    """
    if not ckpt_path:
        raise ValueError("eval_only=true needs ckpt_path=<run dir>/model.pt (the saved model to evaluate)")
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.exists():
        raise ValueError(f"ckpt_path={ckpt_path}: {path} does not exist")
    try:
        artifact_info(path)
    except (ArtifactError, FileNotFoundError) as error:
        # a file of another name is most likely another file of the run (run.json, a Lightning .ckpt)
        named = (
            ""
            if path.name == MODEL_FILE
            else f"expected a {MODEL_FILE} file written by ebr-train (or a copy of one under another name): "
        )
        raise ValueError(f"ckpt_path={ckpt_path}: {named}{error}") from error
    return path


def check_same_data(path: Path, source: str, fingerprint: str) -> dict[str, Any]:
    """Refuse a model trained on other data; return the artifact's info.

    The artifact's `data_fingerprint` is compared when it has one; an older artifact falls back on
    the `data_source` of the `run.json` beside it. With neither, the model cannot be checked and is
    refused.

    Args:
        path: the model file.
        source: the job's `data.source`.
        fingerprint: the job's `data_fingerprint(data)`.

    Raises:
        ValueError: naming `ckpt_path`, when the data differ or cannot be checked.
    """
    info = artifact_info(path)
    recorded = info.get("data_fingerprint")
    if recorded is not None:
        if recorded != fingerprint:
            raise ValueError(
                f"ckpt_path={path}: the model was trained on other data (fingerprint {recorded},"
                f" source {info.get('data_source')}), this job's data is {source}"
                f" (fingerprint {fingerprint});"
                " evaluate it with the data (and data.config) it was trained on"
            )
        return info
    record = path.parent / RECORD_FILE
    trained_on = None
    if record.is_file():
        trained_on = (json.loads(record.read_text()).get("info") or {}).get("data_source")
    if trained_on is None:
        raise ValueError(
            f"ckpt_path={path}: the model records no data fingerprint and no {RECORD_FILE} beside it"
            " names its data, so it cannot be checked against this job's data"
        )
    if trained_on != source:
        raise ValueError(
            f"ckpt_path={path}: the model was trained on {trained_on}, this job's data is {source}"
        )
    return info

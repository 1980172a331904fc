"""Offline embedding of pins and request-time embedding of users from a saved model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ebr.data.batching import FeatureGatherer, TowerInput


@torch.no_grad()
def embed_rows(
    encode: Callable[[TowerInput], torch.Tensor],
    gatherer: FeatureGatherer,
    rows: np.ndarray,
    batch_size: int = 4096,
    desc: str | None = None,
) -> np.ndarray:
    """Embed table rows in batches.

    Args:
        encode: maps a TowerInput to (batch, d) embeddings (e.g. a tower in eval mode).
        gatherer: builds TowerInput for rows of the user or pin table.
        rows: the row ids to embed.
        batch_size: rows per forward pass.
        desc: progress-bar label (None hides the bar).

    Returns:
        float32 array (len(rows), d), aligned with `rows`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    chunks = []
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc=desc, disable=desc is None, leave=False):
        chunk = gatherer(rows[start : start + batch_size])
        chunks.append(encode(chunk).float().cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


def tower_encoder(tower: torch.nn.Module) -> Callable[[TowerInput], torch.Tensor]:
    """Adapt a Tower (sparse, dense) -> embeddings to a TowerInput -> embeddings function."""
    return lambda inputs: tower(inputs.sparse, inputs.dense)

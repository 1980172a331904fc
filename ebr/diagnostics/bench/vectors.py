"""A large synthetic corpus for the ANN benchmark: unit vectors from a Gaussian mixture.

Learned embeddings are clustered (interests, near-duplicates), and uniform vectors on a
64-dimensional sphere are the hardest case for any ANN index (every point is almost equidistant
from every other), so a mixture is the more realistic stand-in.
"""

from __future__ import annotations

import numpy as np

# rows generated at a time: bounds the float64 noise buffer at 1M x 64
_CHUNK = 131_072


def gaussian_mixture(
    n: int, dim: int, clusters: int, spread: float, seed: int, centres_seed: int = 0
) -> np.ndarray:
    """n unit vectors (float32) from a mixture of `clusters` isotropic Gaussians on the sphere.

    Args:
        n: number of vectors.
        dim: dimension.
        clusters: number of mixture components (centres uniform on the unit sphere).
        spread: expected norm of the noise added to a centre before normalising (1.0: the noise is
            as large as the centre, so clusters overlap and neighbours cross cluster borders).
        seed: seed of the points (corpus and queries use different seeds).
        centres_seed: seed of the centres (corpus and queries share it: one mixture).
    """
    if n < 1 or dim < 1 or clusters < 1 or not spread >= 0:
        raise ValueError(f"need n, dim, clusters >= 1 and spread >= 0, got {n}, {dim}, {clusters}, {spread}")
    centres = np.random.default_rng(centres_seed).standard_normal((clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        rows = centres[rng.integers(0, clusters, stop - start)]
        rows += rng.standard_normal((stop - start, dim)) * (spread / np.sqrt(dim))
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        out[start:stop] = rows
    return out

"""Counter-based random numbers: every draw is a hash of the fields that identify it.

A draw keyed by (seed, user, session, pin, stream) is the same whichever other users, sessions or
pins are simulated with it, so two arms of an A/B comparison that show the same pin to the same user
in the same session see the same noise and the same coin flips (common random numbers).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijective avalanche of 64-bit keys (wrapping uint64 arithmetic).

    Args:
        x: uint64 keys.
    """
    # wrap-around is the point of the hash; numpy only warns about it for 0-d operands
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_mix(key: np.ndarray | int, value: np.ndarray | int) -> np.ndarray:
    """Fold one more field into a hash key (broadcasting).

    Args:
        key: uint64 keys (or a non-negative int).
        value: non-negative integer field values.
    """
    value = np.asarray(value).astype(np.uint64)
    return splitmix64(np.asarray(key, dtype=np.uint64) ^ splitmix64(value + _GOLDEN))


def uniform(key: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float64 from the top 53 bits of a hash.

    Args:
        key: uint64 hash keys.
    """
    return (key >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def normal(key: np.ndarray, stream_a: int, stream_b: int) -> np.ndarray:
    """Standard normal draws (Box-Muller over two hash streams of the key).

    Args:
        key: uint64 hash keys.
        stream_a: the stream id of the radius draw.
        stream_b: the stream id of the angle draw.
    """
    radius = np.sqrt(-2.0 * np.log1p(-uniform(hash_mix(key, stream_a))))
    return radius * np.cos(2.0 * np.pi * uniform(hash_mix(key, stream_b)))

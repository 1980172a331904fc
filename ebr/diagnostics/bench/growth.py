"""How a benchmark figure grows with the world: its exponent over the log's size.

The growth exponent of a figure between two sizes is the slope of log(figure) over log(events): 1 is
linear in the log's size, 0 is constant; a throughput's exponent near 0 means the cost grows linearly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# the scale section's figures whose growth is reported
GROWN = (
    "generation_seconds",
    "generation_peak_rss_mb",
    "run_peak_rss_mb",
    "train_examples_per_second",
    "eval_users_per_second",
    "eval_seconds",
)


def growth_exponents(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Slope of log(figure) over log(events) from the smallest size to the largest, per figure.

    Args:
        rows: the sizes' figures, smallest first (each with `events` and the GROWN keys).
    """
    first, last = rows[0], rows[-1]
    scale = math.log(last["events"] / first["events"])
    return {key: math.log(last[key] / first[key]) / scale for key in GROWN}

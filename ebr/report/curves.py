"""`curves.png`: each arm's per-epoch training and validation loss, mean ± std over seeds.

Read from the jobs' `history.json` (ebr.training.history); a sweep whose runs keep no history
(baselines, older runs) gets no figure.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebr.report.plots import arm_tick
from ebr.report.sweep import Sweep
from ebr.runs import HISTORY_FILE, write_bytes_atomic

CURVES_PNG = "curves.png"
CURVES = ("train/loss", "val/loss")


@dataclass(frozen=True)
class Curve:
    """One arm's curve of one loss over the epochs every seed reached.

    Args:
        epochs: 1-based epoch numbers.
        mean: the mean over seeds per epoch.
        std: the sample standard deviation over seeds (0 with one seed).
        n: the number of seeds.
    """

    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: int


def arm_curves(sweep: Sweep) -> dict[str, dict[str, Curve]]:
    """Arm label -> loss name -> its curve, from the finished jobs' `history.json`.

    Args:
        sweep: the loaded sweep.

    Raises:
        ValueError: a `history.json` that is not a JSON object of equal-length lists (names the file).
    """
    out: dict[str, dict[str, Curve]] = {}
    for arm in sweep.arms:
        series: dict[str, list[list[float]]] = {name: [] for name in CURVES}
        for seed in sweep.seeds_or_none():
            job = sweep.cells.get((arm, seed))
            path = None if job is None or job.metrics is None else job.path / HISTORY_FILE
            if path is None or not path.is_file():
                continue
            history = _read_history(path)
            for name in CURVES:
                if history.get(name):
                    series[name].append(history[name])
        curves = {}
        for name, runs in series.items():
            if runs:
                length = min(len(run) for run in runs)
                values = np.array([run[:length] for run in runs], dtype=float)
                std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(length)
                curves[name] = Curve(np.arange(1, length + 1), values.mean(axis=0), std, len(runs))
        if curves:
            out[arm] = curves
    return out


def _read_history(path: Path) -> dict[str, list[float]]:
    try:
        history = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable history ({exc})") from exc
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise ValueError(f"{path}: expected an object of per-epoch lists")
    return history


def curves_png(sweep: Sweep, curves: dict[str, dict[str, Curve]], title: str) -> bytes:
    """The figure: one panel per loss, one line per arm (its short label), a ± std band.

    Args:
        sweep: the sweep (for the arms' short labels).
        curves: `arm_curves(sweep)`.
        title: the figure's title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [name for name in CURVES if any(name in arm for arm in curves.values())]
    fig = Figure(figsize=(1.0 + 4.4 * len(names), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        for i, (arm, by_name) in enumerate(curves.items()):
            curve = by_name.get(name)
            if curve is None:
                continue
            label = f"{arm_tick(sweep.arm_short.get(arm, arm))} (n={curve.n})"
            ax.plot(curve.epochs, curve.mean, marker="o", color=f"C{i % 10}", label=label)
            ax.fill_between(
                curve.epochs, curve.mean - curve.std, curve.mean + curve.std, color=f"C{i % 10}", alpha=0.15
            )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("mean over seeds (band: ± std)", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_curves(sweep: Sweep, title: str) -> Path | None:
    """Write `curves.png` into the sweep directory when any finished job kept its history.

    Args:
        sweep: the loaded sweep.
        title: the figure's title.

    Returns:
        The path written, or None.
    """
    curves = arm_curves(sweep)
    if not curves:
        return None
    return write_bytes_atomic(sweep.path / CURVES_PNG, curves_png(sweep, curves, title))

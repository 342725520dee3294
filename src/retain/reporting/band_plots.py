"""Curves with ±std bands over seeds: AP_t per method, and each task's score through the stream.

A single run's curve hides how much of a gap between methods is seed noise; the band (mean ± the
sample std of :mod:`retain.reporting.aggregate`) shows it. Drawn on the Agg canvas, like the run
plots, so nothing depends on a display or on pyplot's global state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import numpy as np
from matplotlib import rcParams
from matplotlib.ticker import MaxNLocator

from retain.reporting.aggregate import CellGrid, Spread
from retain.reporting.plots import _new_figure, _save_png

PathLike = Union[str, Path]


def _colours() -> list[str]:
    return [c["color"] for c in rcParams["axes.prop_cycle"]]


def _mean_and_band(spreads: Sequence[Spread]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = np.array([math.nan if s.mean is None else s.mean for s in spreads], dtype=float)
    std = np.array([0.0 if s.std is None else s.std for s in spreads], dtype=float)
    return mean, mean - std, mean + std


def _draw(ax: object, xs: Sequence[int], spreads: Sequence[Spread], label: str, colour: object) -> None:
    mean, low, high = _mean_and_band(spreads)
    ax.plot(xs, mean, marker="o", markersize=3, label=label, color=colour)  # type: ignore[attr-defined]
    if any(s.std is not None for s in spreads):
        ax.fill_between(xs, low, high, alpha=0.2, color=colour, linewidth=0)  # type: ignore[attr-defined]


def plot_curve_bands(
    series: Mapping[str, tuple[Sequence[int], Sequence[Spread]]],
    path: PathLike,
    title: str,
    ylabel: str = "AP_t = mean_{i<=t} a[t][i]",
    xlabel: str = "tasks trained t",
) -> Path:
    """One line per series (label -> (x positions, spreads)), with a ±std band where n > 1."""
    fig = _new_figure(7.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    cycle = _colours()
    for index, (label, (xs, spreads)) in enumerate(series.items()):
        _draw(ax, xs, spreads, label, cycle[index % len(cycle)])
    if not series:
        ax.text(0.5, 0.5, "no finished run", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8, loc="best")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save_png(fig, path)


def plot_task_bands(series: Mapping[str, CellGrid], path: PathLike, title: str) -> Path:
    """One panel per task: its score after each training phase, one line (and band) per method.

    The x axis counts tasks trained (0 = before training); a dotted line marks when the panel's
    task itself was trained, so what lies right of it is forgetting (or backward transfer).
    """
    task_names: list[str] = []
    for grid in series.values():
        task_names += [n for n in grid.task_names if n not in task_names]
    n = max(1, len(task_names))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = _new_figure(3.2 * cols + 1.0, 2.6 * rows + 0.8)
    cycle = _colours()
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    for index, (label, grid) in enumerate(series.items()):
        colour = cycle[index % len(cycle)]
        for task_index, name in enumerate(grid.task_names):
            ax = axes[task_names.index(name)]
            _draw(ax, grid.xs, [row[task_index] for row in grid.cells], label if task_index == 0 else "_", colour)
    for position, (ax, name) in enumerate(zip(axes, task_names)):
        ax.set_title(name, fontsize=9)
        ax.axvline(position + 1, color="grey", linestyle=":", linewidth=1)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("tasks trained", fontsize=8)
    if series and axes:  # below the panels, clear of the title
        fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(4, len(series)), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save_png(fig, path)

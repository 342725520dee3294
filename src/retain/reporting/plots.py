"""PNG plots of a run: the accuracy-matrix heatmap and the AP_t curve (methods draw their own with these helpers).

Figures are drawn on matplotlib's Agg canvas directly, without pyplot: that works on headless
machines, never switches the backend of a notebook that imported retain, and leaves no global
figures behind. PNG bytes are rendered in memory and written atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from retain.evaluation.cl_metrics import AccuracyMatrix, Score, running_ap
from retain.reporting.atomic import write_bytes_atomic

PathLike = Union[str, Path]
_MAX_ANNOTATED_CELLS = 900  # beyond this, numbers in cells are unreadable anyway


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: PathLike) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return write_bytes_atomic(path, buffer.getvalue())


def _to_masked(array2d: Any) -> np.ma.MaskedArray:
    """A float array with None/NaN cells masked (drawn blank)."""
    rows = [[np.nan if v is None else float(v) for v in row] for row in array2d]
    data = np.array(rows, dtype=float)
    if data.ndim != 2:
        data = data.reshape(len(rows), -1)
    return np.ma.masked_invalid(data)


def _format_score(value: float) -> str:
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:.3g}"


def _format_general(value: float) -> str:
    return f"{value:.3g}"  # unit statistics can be tiny (importances, gradient magnitudes)


def _draw_heatmap(
    fig: Figure,
    colours: np.ma.MaskedArray,
    labels: np.ma.MaskedArray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    colourbar_label: str,
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    fmt: Callable[[float], str] = _format_score,
) -> None:
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(colours, cmap="viridis", aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels), rotation=45, ha="right")
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels))
    ax.set_title(title)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(colourbar_label)
    if labels.size <= _MAX_ANNOTATED_CELLS:
        lo, hi = image.get_clim()
        mid = (lo + hi) / 2
        for r in range(labels.shape[0]):
            for c in range(labels.shape[1]):
                if labels.mask is not np.ma.nomask and labels.mask[r, c]:
                    continue
                colour_value = colours[r, c]
                dark = colour_value is np.ma.masked or float(colour_value) < mid
                ax.text(c, r, fmt(float(labels[r, c])), ha="center", va="center",
                        fontsize=8, color="white" if dark else "black")


def _figure_size(n_rows: int, n_cols: int) -> tuple[float, float]:
    return (min(2.5 + 0.9 * n_cols, 30.0), min(1.5 + 0.45 * n_rows, 30.0))


def plot_heatmap(matrix: AccuracyMatrix, path: PathLike) -> Path:
    """Rows x tasks heatmap of the accuracy matrix, values annotated, unevaluated cells blank.

    Higher-is-better columns are coloured on the fixed 0-100 scale, so tasks compare at a glance;
    a lower-is-better column (perplexity) is coloured by its relative goodness within the column
    (best = 100), since its raw values live on another scale. The numbers shown are always raw.
    """
    values = _to_masked(matrix.rows) if matrix.rows else np.ma.masked_all((1, matrix.num_tasks))
    colours = np.ma.array(values, copy=True)
    for col, higher in enumerate(matrix.higher_is_better):
        if higher:
            continue
        column = values[:, col]
        if column.count() == 0:
            continue
        lo, hi = float(column.min()), float(column.max())
        colours[:, col] = 100.0 if hi == lo else 100.0 * (hi - column) / (hi - lo)
    labels = [f"{name} (lower is better)" if not h else name
              for name, h in zip(matrix.task_names, matrix.higher_is_better)]
    row_labels = matrix.row_labels or ["(no rows)"]
    fig = _new_figure(*_figure_size(len(row_labels), len(labels)))
    bar_label = "score (0-100)" if all(matrix.higher_is_better) else "score (0-100); lower-is-better columns: relative"
    _draw_heatmap(fig, colours, values, row_labels, labels, "Accuracy matrix (rows: after training; columns: tasks)",
                  bar_label, vmin=0.0, vmax=100.0)
    return _save_png(fig, path)


def plot_ap_curve(matrix: AccuracyMatrix, metrics: Optional[dict[str, Any]], path: PathLike) -> Path:
    """AP_t (mean over the tasks seen so far) against the training row t."""
    ap_t: Sequence[Score] = (metrics or {}).get("ap_t") or running_ap(matrix)
    labels = matrix.training_row_labels[: len(ap_t)]
    fig = _new_figure(max(4.0, 1.0 + 0.8 * len(ap_t)), 3.5)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(1, len(ap_t) + 1))
    ys = [math.nan if v is None else float(v) for v in ap_t]
    if xs:
        ax.plot(xs, ys, marker="o")
        for x, y in zip(xs, ys):
            if not math.isnan(y):
                ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xticks(xs, labels=labels, rotation=30, ha="right")
    else:
        ax.text(0.5, 0.5, "no completed training row", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training row t")
    ax.set_ylabel("AP_t = mean_{i<=t} a[t][i]")
    ax.set_title("Average performance over the tasks seen so far")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.1, y=0.15)  # room for the value labels above the points
    return _save_png(fig, path)

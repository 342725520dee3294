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

from retain.evaluation.cl_metrics import AccuracyMatrix, GeneralScores, Score, running_ap
from retain.reporting.metric_text import ap_wording, column_infos, matrix_title, scale_text
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
    cmap: str = "viridis",
) -> None:
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(colours, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
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
                low = colour_value is np.ma.masked or float(colour_value) < mid
                dark = low if not cmap.endswith("_r") else not low  # the dark end of a reversed map is high
                ax.text(c, r, fmt(float(labels[r, c])), ha="center", va="center",
                        fontsize=8, color="white" if dark else "black")


def _figure_size(n_rows: int, n_cols: int) -> tuple[float, float]:
    return (min(2.5 + 0.9 * n_cols, 30.0), min(1.5 + 0.45 * n_rows, 30.0))


def heatmap_scale(matrix: AccuracyMatrix) -> tuple[np.ma.MaskedArray, np.ma.MaskedArray, Optional[float], Optional[float], str, str]:
    """(colours, values, vmin, vmax, colour map, colour-bar label) for the matrix's metrics.

    * every column a percentage, higher is better: the fixed 0-100 scale, so tasks compare at a glance;
    * every column the same unbounded metric (perplexity): the raw values on their own range, the
      colour map reversed when lower is better (bright = good, as for accuracy);
    * mixed metrics: percentage columns as they are, every other column coloured by its relative
      goodness within the column (best = 100), since its raw values live on another scale.
    The numbers written in the cells are always the raw scores.
    """
    infos = column_infos(matrix)
    values = _to_masked(matrix.rows) if matrix.rows else np.ma.masked_all((1, matrix.num_tasks))
    if infos and all(i.percent and i.higher_is_better for i in infos):
        return values, values, 0.0, 100.0, "viridis", f"{_metric_words(infos)} (0-100, higher is better)"
    if infos and len({i.name for i in infos}) == 1:
        info = infos[0]
        cmap = "viridis" if info.higher_is_better else "viridis_r"
        return values, values, None, None, cmap, f"{info.display} ({info.direction})"
    colours = np.ma.array(values, copy=True)
    for col, info in enumerate(infos):
        if info.percent and info.higher_is_better:
            continue
        column = values[:, col]
        if column.count() == 0:
            continue
        lo, hi = float(column.min()), float(column.max())
        if hi == lo:
            colours[:, col] = 100.0
        else:
            colours[:, col] = 100.0 * ((column - lo) if info.higher_is_better else (hi - column)) / (hi - lo)
    return colours, values, 0.0, 100.0, "viridis", "score (0-100); columns of other scales: relative within the column (best = 100)"


def _metric_words(infos: Sequence[Any]) -> str:
    names = list(dict.fromkeys(i.display for i in infos))
    return " / ".join(names)


def plot_heatmap(matrix: AccuracyMatrix, path: PathLike) -> Path:
    """Rows x tasks heatmap of the matrix, values annotated, unevaluated cells blank; its title,
    colour scale and bar label follow the tasks' metrics (see :func:`heatmap_scale`)."""
    colours, values, vmin, vmax, cmap, bar_label = heatmap_scale(matrix)
    infos = column_infos(matrix)
    labels = [f"{name} ({info.display}, lower is better)" if not info.higher_is_better else name
              for name, info in zip(matrix.task_names, infos)]
    row_labels = matrix.row_labels or ["(no rows)"]
    fig = _new_figure(*_figure_size(len(row_labels), len(labels)))
    _draw_heatmap(fig, colours, values, row_labels, labels, f"{matrix_title(matrix)} (rows: after training; columns: tasks)",
                  bar_label, vmin=vmin, vmax=vmax, cmap=cmap)
    return _save_png(fig, path)


def plot_general(general: GeneralScores, path: PathLike, row_labels: Optional[Sequence[str]] = None) -> Path:
    """Each held-out general-ability set's score before training and after every phase."""
    from retain.evaluation.metric_info import metric_info  # noqa: PLC0415

    fig = _new_figure(max(4.5, 1.0 + 0.8 * len(general.rows)), 3.5)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(general.rows)))
    for k, (name, metric, higher) in enumerate(zip(general.names, general.metric_names, general.higher_is_better)):
        info = metric_info(metric, higher)
        ys = [math.nan if row[k] is None else float(row[k]) for row in general.rows]
        ax.plot(xs, ys, marker="o", label=f"{name} ({info.display}, {info.direction})")
    labels = list(row_labels) if row_labels is not None and len(row_labels) == len(xs) else \
        ["before training", *(f"after phase {j}" for j in xs[1:])]
    ax.set_xticks(xs, labels=labels, rotation=30, ha="right")
    ax.set_xlabel("row (0 = before training)")
    ax.set_ylabel("score")
    ax.set_title("General-ability sets through the stream")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
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
    label, _ = ap_wording(matrix)
    ax.set_ylabel(f"{label.replace('AP', 'AP_t', 1)} = mean_{{i<=t}} a[t][i]")
    ax.set_title(f"Average over the tasks seen so far: {scale_text(matrix)}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.1, y=0.15)  # room for the value labels above the points
    return _save_png(fig, path)

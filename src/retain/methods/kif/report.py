"""What KIF leaves in the run folder: the per-task unit importances (JSON) and a report section.

``kif_importance.json`` is rewritten after every task (atomically), so a stopped run still has the
importances of its finished tasks; the report section adds a units x tasks heatmap.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch

from retain.methods.kif.skill_units import SkillUnits
from retain.reporting.report import markdown_table

PathLike = Union[str, Path]
IMPORTANCE_PLOT = "kif_importance.png"
MAX_PLOTTED_UNITS = 60  # more rows are unreadable; the JSON has all of them


def _floats(values: Optional[torch.Tensor]) -> Optional[list[float]]:
    return None if values is None else [round(float(v), 8) for v in values.tolist()]


def importance_payload(units: SkillUnits, history: list[dict[str, Any]], fusion: str) -> dict[str, Any]:
    """JSON-ready per-task importances: raw unit scores, Norm(I_k), I_cum(k), fusion weights."""
    return {
        "granularity": units.granularity,
        "fusion": fusion,
        "units": list(units.names),
        "kinds": units.kinds(),
        "tasks": [r["task"] for r in history],
        "importance": [_floats(r["importance"]) for r in history],
        "normalised": [_floats(r["normalised"]) for r in history],
        "cumulative": [_floats(r["cumulative"]) for r in history],
        "lambda_new": [_floats(r["lambda_new"]) for r in history],
        "frozen_units": [None if r["frozen"] is None else torch.nonzero(r["frozen"]).flatten().tolist() for r in history],
        "records": [_summary(r) for r in history],
    }


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("task", "steps", "categories", "fusion_seconds", "replay_steps", "replay_examples", "replay_loss", "replay_seconds")
    return {k: record[k] for k in keys if k in record}


def _plotted_units(history: list[dict[str, Any]]) -> list[int]:
    """All units, or the MAX_PLOTTED_UNITS with the highest normalised importance on any task."""
    normalised = torch.stack([r["normalised"] for r in history])
    count = normalised.shape[1]
    if count <= MAX_PLOTTED_UNITS:
        return list(range(count))
    top = torch.topk(normalised.max(dim=0).values, MAX_PLOTTED_UNITS).indices
    return sorted(top.tolist())


def report_section(run_dir: Path, units: SkillUnits, history: list[dict[str, Any]], fusion: str, top_fraction: float) -> tuple[str, str]:
    """('KIF skill units', markdown) with a per-task table and the importance heatmap."""
    rows = []
    for r in history:
        cats = r.get("categories") or {}
        lam = r["lambda_new"]
        rows.append([
            r["task"], str(r["steps"]),
            *(str(cats.get(k, "–")) for k in ("shared", "old_only", "new_only", "neither")),
            "–" if lam is None else f"{float(lam.mean()):.3f}",
            "–" if r["frozen"] is None or "replay_steps" not in r else str(int(r["frozen"].sum())),
            str(r.get("replay_steps", "–")),
            f"{r['fusion_seconds']:.2f}" if "fusion_seconds" in r else "–",
        ])
    table = markdown_table(
        ["task", "steps tracked", "shared", "old only", "new only", "neither", "mean λ_new", "frozen (KIF-M)", "replay steps", "fusion s"],
        rows,
    )
    shown = _plotted_units(history)
    values = [[float(r["normalised"][u]) for r in history] for u in shown]
    plot_unit_heatmap(values, [units.names[u] for u in shown], [r["task"] for r in history],
                      run_dir / IMPORTANCE_PLOT, "Norm(I_k): skill-unit importance per task")
    subset = "" if len(shown) == len(units) else f" (the {len(shown)} units with the highest importance on some task)"
    body = "\n".join([
        f"{len(units)} {units.granularity} units over {len(units.tensors)} tensors; {fusion} fusion. "
        f"Categories use the top {top_fraction:.0%} of Norm(I_k) (new) and Norm(I_cum(k-1)) (old); "
        "λ_new is the weight of the newly fine-tuned model in the fused one. The first task is not fused.",
        "",
        table,
        "",
        f"Per-unit importances of every task: `kif_importance.json`. Heatmap{subset}:",
        "",
        f"![skill-unit importance per task]({IMPORTANCE_PLOT})",
    ])
    return "KIF skill units", body


def plot_unit_heatmap(
    array2d: Any,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: PathLike,
    title: str,
) -> Path:
    """An annotated units x tasks heatmap; None/NaN cells are blank.

    Drawn with the run report's heatmap helpers (imported here, so matplotlib loads only when a
    report is drawn).
    """
    from retain.reporting.plots import _draw_heatmap, _figure_size, _format_general, _new_figure, _save_png, _to_masked

    values = _to_masked(array2d)
    if values.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"array of shape {values.shape} for {len(row_labels)} row and {len(col_labels)} column labels"
        )
    fig = _new_figure(*_figure_size(len(row_labels), len(col_labels)))
    _draw_heatmap(fig, values, values, row_labels, col_labels, title, "value", fmt=_format_general)
    return _save_png(fig, path)

"""Which cells of the accuracy matrix a row evaluates (``eval.cells``).

The metrics of ``docs/metrics.md`` read only some cells: AP, BWT and forgetting read the tasks
trained so far, FWT reads the next task (a[i-1][i]) and row 0. Scoring every task in every row
costs O(T^2) evaluations of which about 40% feed no metric on a 15-task stream, so ``needed`` (the
default) scores the seen tasks plus the next one and leaves the other cells absent (None, never 0);
``all`` keeps the full matrix for users who want to look at it.
"""

from __future__ import annotations

from typing import Optional

#: eval.cells values, the default first.
CELL_MODES = ("needed", "all")


def cells_to_evaluate(mode: str, num_tasks: int, trained_through: Optional[int], with_next: bool = True) -> list[int]:
    """Task indices to score in one row.

    ``trained_through``: the index of the last task the row's phase trained (None: row 0, before
    training, which is scored in full because FWT's b[i] needs every task). ``with_next``: also the
    task after it, for FWT's a[i-1][i]; without row 0 FWT is undefined and nothing reads that cell.
    """
    if mode not in CELL_MODES:
        raise ValueError(f"eval.cells: {mode!r} is not one of {', '.join(CELL_MODES)}")
    if mode == "all" or trained_through is None:
        return list(range(num_tasks))
    return list(range(min(num_tasks, trained_through + 1 + int(with_next))))

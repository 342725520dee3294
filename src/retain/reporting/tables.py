"""Tables as text: markdown for report.md and the summaries, aligned columns for the terminal.

Kept apart from :mod:`retain.reporting.report` so that the modules the report is built from (the
scoring section, comparisons, sweeps, methods' sections) can use them without importing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Optional[set[int]] = None
) -> str:
    """Aligned columns: text left-aligned; the ``numeric`` columns (default: all but the first)
    right-aligned so that decimal points line up."""
    numeric = set(range(1, len(header))) if numeric is None else numeric
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = ["-" * w for w in widths]
    if len(header) - 1 not in numeric:  # a long free-text last column gets a rule as wide as its title
        rule[-1] = "-" * len(str(header[-1]))
    return "\n".join([line(header), line(rule), *(line(r) for r in rows)])


__all__ = ["markdown_table", "text_table"]

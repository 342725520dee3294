"""Label sets of a task: inferred from the targets or the prompts' option lists, and records whose
label is in no set counted and reported (never scored, never a crash)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Iterable, Optional, Sequence

from retain.data.types import Example
from retain.data.readers.records import DataWarning, MAX_LABELS, _SHOWN_IN_WARNING, _records, logger


_OPTION_LINE = re.compile(r"Option:\s*([^\n]*)")


def parse_option_list(text: str) -> Optional[list[str]]:
    """The labels of an ``Option: a, b, c.`` line, split on commas only.

    Never on " or ": "Science or Technology" is one label.
    """
    match = _OPTION_LINE.search(text)
    if not match:
        return None
    body = match.group(1).strip().rstrip(".").strip()
    options = [part.strip() for part in body.split(",") if part.strip()]
    return options or None


def _distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _common_option_list(option_lists: Iterable[Optional[Sequence[str]]]) -> Optional[list[str]]:
    """The one option list every prompt shares (as a set), or None when absent or inconsistent."""
    found: Optional[list[str]] = None
    for options in option_lists:
        if not options:
            return None
        if found is None:
            found = list(options)
        elif set(options) != set(found):
            return None
    return found


def infer_labels(
    train: Sequence[Example], option_lists: Optional[Iterable[Optional[Sequence[str]]]] = None
) -> Optional[list[str]]:
    """The label set of a classification-style task, or None for free text.

    The distinct train targets (in order of first appearance) are the labels when there are at
    most :data:`MAX_LABELS` of them and they repeat (distinct <= len / 2). The ``Option:`` lists of
    the prompts (parsed from ``train`` when ``option_lists`` is None) are only a cross-check: a
    mismatch is logged, and a small train set that fails the repeat test still gets labels when
    all its targets are in the prompts' shared option list.
    """
    if not train:
        return None
    targets = _distinct(ex.target for ex in train)
    if option_lists is None:
        option_lists = (parse_option_list(ex.prompt) for ex in train)
    options = _common_option_list(option_lists)
    looks_like_labels = len(targets) <= MAX_LABELS and len(targets) <= len(train) / 2
    if looks_like_labels:
        if options is not None and set(options) != set(targets):
            logger.warning(
                "train labels %s differ from the instruction's option list %s; using the train labels",
                targets,
                options,
            )
        return targets
    if options is not None and set(targets) <= set(options):
        return options
    return None


def filter_unknown_labels(
    task_name: str, file: str | Path, examples: Sequence[Example], labels: Optional[Sequence[str]]
) -> tuple[list[Example], int]:
    """Drop records whose target is outside ``labels``; one DataWarning per file says which.

    Such records can never be predicted by a label-set scorer, so scoring them would silently
    lower accuracy; the caller adds the count to ``Task.skipped_records``.
    """
    if labels is None:
        return list(examples), 0
    allowed = set(labels)
    kept = [ex for ex in examples if ex.target in allowed]
    dropped = [ex for ex in examples if ex.target not in allowed]
    if dropped:
        shown = ", ".join(f"{ex.key} (output {ex.target!r})" for ex in dropped[:_SHOWN_IN_WARNING])
        more = f" and {len(dropped) - _SHOWN_IN_WARNING} more" if len(dropped) > _SHOWN_IN_WARNING else ""
        warnings.warn(
            f"{file}: {_records(len(dropped))} of task {task_name!r} with an output outside the "
            f"label set ({', '.join(labels)}) left out of scoring: {shown}{more}",
            DataWarning,
            stacklevel=2,
        )
    return kept, len(dropped)

"""Which metric scores a task, and whether its answers form a label set, from the answers' shape.

A label set changes what happens to a task: records whose answer is outside it are left out
(nothing could predict them), rank scoring picks among the labels, and answers are scored by exact
match. So the set is inferred only when the answers really look like classes: few distinct short
answers that repeat, that are not numbers (numeric QA has open answers), and that cover the
evaluation answers (unless the prompts' ``Option:`` lists name exactly these labels: then answers
outside them are bad records). Anything else is open: numeric answers are scored by exact match,
free text by ROUGE-L. Every choice carries its reason, printed in the run header and the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from retain.data.labels import _common_option_list, infer_labels, parse_option_list
from retain.data.types import Example

#: A label longer than this many words is a sentence, not a class name.
MAX_LABEL_WORDS = 5
#: Largest share of evaluation answers outside the train answers for these to be a label set.
MAX_EVAL_OUTSIDE = 0.1


@dataclass(frozen=True)
class AnswerShape:
    """The label set (None: open answers), the metric, and why (one phrase for the run header)."""

    labels: Optional[list[str]]
    metric: str
    reason: str


def _is_number(text: str) -> bool:
    try:
        float(text.strip().replace(",", ""))
    except ValueError:
        return False
    return True


def _not_labels(labels: Sequence[str], train: Sequence[Example], evaluation: Sequence[Example]) -> Optional[str]:
    """Why inferred ``labels`` are not a real label set (None: they are)."""
    options = _common_option_list(parse_option_list(ex.prompt) for ex in train)
    if options is not None and set(options) == set(labels):
        return None  # the prompts name exactly these labels: answers outside them are bad records
    if all(_is_number(label) for label in labels):
        return "numeric answers"
    long = [label for label in labels if len(label.split()) > MAX_LABEL_WORDS]
    if long:
        return f"answers longer than {MAX_LABEL_WORDS} words"
    if evaluation:
        known = set(labels)
        outside = sum(ex.target not in known for ex in evaluation)
        if outside > MAX_EVAL_OUTSIDE * len(evaluation):
            return f"{outside} of {len(evaluation)} evaluation answers are not train answers"
    return None


def _open_shape(examples: Sequence[Example], why: str) -> AnswerShape:
    if all(_is_number(ex.target) for ex in examples):
        return AnswerShape(None, "accuracy", f"numeric answers, exact match ({why})")
    return AnswerShape(None, "rouge_l", f"free-text answers ({why})")


def answer_shape(
    train: Sequence[Example],
    evaluation: Sequence[Example],
    *,
    declared: Optional[list[str]] = None,
    raw_text: bool = False,
    metric: Optional[str] = None,
    infer: bool = True,
) -> AnswerShape:
    """Label set and metric of a task from its train and evaluation answers.

    ``declared``: a label set the source states (O-LoRA's labels.json); ``metric``: the task spec's
    metric (None: choose one); ``infer``: False turns label sets off (nothing is left out; short
    numeric answers by exact match, others by ROUGE-L unless ``metric`` says otherwise). An explicit
    ``metric: accuracy`` says the answers are classes: the label set is inferred by the repeat test
    alone (numeric ratings, long class names).
    """
    given = "set in the task spec"
    if raw_text:
        return AnswerShape(None, metric or "perplexity", given if metric else "raw text")
    if metric is not None and metric != "accuracy":
        return AnswerShape(None, metric, given)
    if not infer:
        shape = _open_shape([*train, *evaluation], "label sets off")
        return AnswerShape(None, metric, given) if metric else shape
    if declared:
        labels, reason = declared, f"label set declared by the source ({len(declared)} labels)"
    elif metric == "accuracy":  # the spec says these are classes: the repeat test alone decides
        return AnswerShape(infer_labels(train), metric, given)
    else:
        labels = infer_labels(train)
        why = _not_labels(labels, train, evaluation) if labels else "no small repeating answer set"
        if why is not None:
            shape = _open_shape([*train, *evaluation], why)
            return AnswerShape(None, metric, given) if metric else shape
        reason = f"label set of {len(labels)} inferred from the train answers"  # type: ignore[arg-type]
    return AnswerShape(labels, "accuracy", given if metric else reason)


__all__ = ["AnswerShape", "MAX_LABEL_WORDS", "MAX_EVAL_OUTSIDE", "answer_shape"]

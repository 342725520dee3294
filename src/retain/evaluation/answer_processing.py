"""Named post-processing of generated answers before a task's metric scores them.

Some benchmarks score not the generated text but a part of it: TRACE's evaluation (as SEEKR's
``re_eval.py`` re-scores its predictions) keeps the text after an ``Answer:`` line, and of a
multiple-choice answer only its first character. A task names its processor (``Task.answer_processing``);
a task that names none is scored on the generated text as it is, so no other stream changes.

A processor turns the generated answer into the scored answer, and may turn the target too (TRACE's
ScienceQA compares the first character of answer and target alike). The names are what the run
header and the report print beside the metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from retain.errors import ConfigError

#: The markers TRACE-style answers put before or after the short answer, in the order they are tried
#: (jinghan1he/SEEKR re_eval.py): "Reasoning:" follows the answer, the others precede it.
_REASONING = "\nReasoning:"
_ANSWER_MARKERS = ("\nAnswer:", "\n回答:", "\n答案:")


def _unchanged(text: str) -> str:
    return text


def trace_short_answer(text: str) -> str:
    """The short answer of a TRACE-style generation.

    Full-width colons become ':'; the text before a ``\\nReasoning:`` line, else the text after the
    first ``\\nAnswer:`` (or ``\\n回答:`` / ``\\n答案:``) marker, else the whole text, stripped. An empty
    result becomes a single space, so it can never equal a target.
    """
    text = text.replace("：", ":")
    if _REASONING in text:
        short = text.split(_REASONING)[0]
    else:
        short = text
        for marker in _ANSWER_MARKERS:
            if marker in text:
                short = text.split(marker)[1]
                break
    short = short.strip()
    return short if short else " "


def trace_first_char(text: str) -> str:
    """The first character of the short answer: the option letter of a multiple-choice answer."""
    return trace_short_answer(text)[0]


def first_char(text: str) -> str:
    """The first character of a text (a space for the empty text), as TRACE reads a ScienceQA target."""
    return text[0] if text else " "


@dataclass(frozen=True)
class AnswerProcessor:
    """A named rule: ``answer`` turns the generated text into the scored answer, ``target`` the
    reference into the scored reference (unchanged unless the benchmark's scoring says otherwise)."""

    name: str
    description: str
    answer: Callable[[str], str]
    target: Callable[[str], str] = _unchanged


#: name -> processor. Only tasks that name one are post-processed.
ANSWER_PROCESSORS: dict[str, AnswerProcessor] = {
    p.name: p
    for p in (
        AnswerProcessor(
            "trace_answer",
            "TRACE's short answer: the text after '\\nAnswer:' (or before '\\nReasoning:'), stripped",
            trace_short_answer,
        ),
        AnswerProcessor(
            "trace_first_char",
            "TRACE's short answer, first character only (the option letter)",
            trace_first_char,
        ),
        AnswerProcessor(
            "trace_choice_letter",
            "TRACE's short answer, first character only, against the target's first character",
            trace_first_char,
            first_char,
        ),
    )
}


def get_answer_processor(name: Optional[str]) -> Optional[AnswerProcessor]:
    """The processor named ``name``; None for no name (the answer is scored as generated)."""
    if not name:
        return None
    try:
        return ANSWER_PROCESSORS[name]
    except KeyError:
        raise ConfigError(
            f"answer processing: unknown processor {name!r} (known: {', '.join(ANSWER_PROCESSORS)})"
        ) from None


__all__ = ["ANSWER_PROCESSORS", "AnswerProcessor", "first_char", "get_answer_processor", "trace_first_char",
           "trace_short_answer"]

"""What a metric is: one small class with a direction, a per-example score and an aggregate.

A task names its metric by registry name (``accuracy``, ``rouge_l``, ``sari``, ...) or by import
path (``my_pkg.module:MyMetric``); the engine scores generated answers example by example with
:meth:`Metric.score` and turns the list into the task's number with :meth:`Metric.aggregate`.
Reports read ``display_name``, ``higher_is_better`` and ``range`` so that a perplexity column is
never drawn on an accuracy scale.
"""

from __future__ import annotations

from typing import ClassVar, Optional, Sequence

#: How a metric gets its inputs: ``text`` compares generated answers with the targets; ``likelihood``
#: is computed from the model's token log-likelihoods of the targets (no generation).
METRIC_INPUTS = ("text", "likelihood")


class Metric:
    """Base class of every metric (subclass it to define your own).

    Class attributes (set them on a subclass):

    - ``name``: the key in configs and run files.
    - ``display_name``: how reports title it ("Accuracy", "ROUGE-L", ...).
    - ``higher_is_better``: the direction; CL metrics flip their differences for lower-is-better.
    - ``range``: the (low, high) bounds of the task score, e.g. (0, 100); None when unbounded.
    - ``inputs``: ``text`` (per-example comparison of generated answer and target) or ``likelihood``.
    - ``definition``: one sentence for reports and docs.

    ``score`` returns one example's score, ``aggregate`` the task's number from them. The default
    aggregate is 100 x the mean of per-example scores in [0, 1], the convention of every built-in
    bounded metric; corpus-level metrics (BLEU) override it and use the texts.
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[Optional[tuple[float, float]]] = (0.0, 100.0)
    inputs: ClassVar[str] = "text"
    definition: ClassVar[str] = ""

    def score(self, prediction: str, target: str, source: str = "") -> float:
        """One example's score: ``prediction`` (generated), ``target`` (reference), ``source``
        (the prompt; SARI compares against it)."""
        raise NotImplementedError(f"metric {self.name!r} does not score single examples")

    def aggregate(
        self,
        scores: Sequence[float],
        predictions: Sequence[str] = (),
        targets: Sequence[str] = (),
        sources: Sequence[str] = (),
    ) -> float:
        """The task's score from its per-example scores (and, for corpus metrics, the texts)."""
        return 100.0 * sum(scores) / max(1, len(scores))

    def __repr__(self) -> str:
        return f"<metric {self.name}>"


__all__ = ["METRIC_INPUTS", "Metric"]

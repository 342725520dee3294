"""The words a report uses for a run's scores, chosen from the metrics its tasks actually used.

A perplexity stream must not get an "Accuracy matrix", a "0-100" scale or an "AP" read as an
average accuracy; a stream mixing exact match and ROUGE-L should say which task used which. All
facts about a metric (name, direction, range) come from :mod:`retain.evaluation.metric_info`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from retain.evaluation.cl_metrics import AccuracyMatrix
from retain.evaluation.metric_info import MetricInfo, metric_info


def column_infos(matrix: AccuracyMatrix) -> list[MetricInfo]:
    return [metric_info(name, h) for name, h in zip(matrix.metric_names, matrix.higher_is_better)]


def _groups(names: Sequence[str], infos: Sequence[MetricInfo]) -> dict[str, list[str]]:
    """Metric name -> the tasks scored with it, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for name, info in zip(names, infos):
        groups.setdefault(info.name, []).append(name)
    return groups


def matrix_title(matrix: AccuracyMatrix) -> str:
    """'Accuracy matrix', 'Perplexity matrix (lower is better)', or 'Score matrix' for mixed metrics."""
    infos = column_infos(matrix)
    kinds = {i.name for i in infos}
    if len(kinds) != 1:
        return "Score matrix"
    info = infos[0]
    title = f"{info.display[0].upper()}{info.display[1:]} matrix"
    return title if info.higher_is_better else f"{title} (lower is better)"


def scale_text(matrix: AccuracyMatrix) -> str:
    """One sentence on each metric of the matrix: its tasks, range and direction."""
    infos = column_infos(matrix)
    by_metric = {i.name: i for i in infos}
    parts = []
    groups = _groups(matrix.task_names, infos)
    for name, tasks in groups.items():
        info = by_metric[name]
        scale = "0-100" if info.percent else "its own scale, unbounded"
        where = "" if len(groups) == 1 else f" ({', '.join(tasks)})"
        parts.append(f"{info.display}{where}: {scale}, {info.direction}")
    return "; ".join(parts)


def _how(info: MetricInfo, kind: Optional[str], scoring: Optional[str]) -> str:
    if info.name == "perplexity":
        return "perplexity of the reference text (exp of the mean token negative log-likelihood; no generation)"
    if kind == "classifier":
        return "argmax of the classifier head, accuracy"
    if info.name == "accuracy":
        if scoring == "rank":
            return "rank classification (the most likely label), accuracy"
        return "greedy generation, exact match after normalisation"
    return f"greedy generation, {info.display}"


def scoring_text(matrix: Optional[AccuracyMatrix], kind: Optional[str], scoring: Optional[str]) -> Optional[str]:
    """How the answers were scored, per metric actually used (tasks named when there are several)."""
    if matrix is None or not matrix.task_names:
        if kind == "classifier":
            return "argmax over the label space"
        return {"generate": "greedy generation", "rank": "rank classification over the task's labels"}.get(scoring or "", scoring)
    infos = column_infos(matrix)
    by_metric = {i.name: i for i in infos}
    groups = _groups(matrix.task_names, infos)
    if len(groups) == 1:
        return _how(infos[0], kind, scoring)
    return "; ".join(f"{_how(by_metric[name], kind, scoring)} ({', '.join(tasks)})" for name, tasks in groups.items())


def ap_wording(matrix: AccuracyMatrix) -> tuple[str, str]:
    """(label, note) of AP for this matrix: what its mean is a mean of."""
    infos = column_infos(matrix)
    kinds = {i.name for i in infos}
    if len(kinds) == 1:
        info = infos[0]
        if info.name in ("accuracy", "score"):
            return "AP", ""
        if info.higher_is_better:
            return f"AP (mean {info.display})", f"here the mean final {info.display}"
        return (f"AP (mean {info.display}, lower is better)",
                f"here the mean final {info.display} over tasks: lower is better; not an accuracy")
    if any(not i.higher_is_better for i in infos) or any(not i.percent for i in infos):
        used = ", ".join(dict.fromkeys(i.display for i in infos))
        return "AP (mixed scales)", f"the tasks use different metrics ({used}): this mean mixes their scales; read the matrix"
    return "AP", "mean over tasks of " + " and ".join(sorted({i.display for i in infos}))


def la_wording(matrix: AccuracyMatrix) -> tuple[str, str]:
    """(label, note) of LA: 'learning accuracy' only where the scores are accuracies."""
    label, note = ap_wording(matrix)
    if label == "AP":
        return "LA (learning accuracy)", ""
    inner = label[len("AP ("):-1]
    return f"LA ({inner}; right after training)", note.replace("final", "just-trained")


def never_learned_text(name: str, before: float, after: float) -> str:
    """The warning for a task whose score right after training is no better than before it."""
    return (f"task {name} was never learned: {after:.2f} right after training it, {before:.2f} before any "
            "training (check the learning rate, epochs, max_source_length truncation and the label set)")

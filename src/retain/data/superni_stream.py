"""The ``superni`` stream: SEEKR's and KIF's Super-NaturalInstructions orders, read from the
natural-instructions repository's own task files and split as the papers' data is split.

The papers train on a few instances of each task, not on a task's whole file; their released data
(circle-hit/SAPT ``CL_Benchmark/SuperNI/<task>/{train,dev,test}.json``, which KIF's
``data_SuperNI_Benchmark`` copies instance for instance) holds at most 1000 training and 100 test
instances per task, the test instances disjoint from the training ones; the tasks with fewer
instances hold train and test in about 8 : 1 (task1572: 160 and 20, task181: 338 and 43). retain
draws such a split itself, by the run seed, so that no preprocessed copy is needed: see
:func:`split_instances`. :mod:`retain.data.benchmarks` builds the stream from these pieces, as it
builds the other published streams.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from retain.config import StreamConfig
from retain.data.data_root import benchmark_folder
from retain.data.readers import read_superni
from retain.data.types import Example

#: Instances per task the papers train on and test on (at most).
TRAIN_PER_TASK = 1000
TEST_PER_TASK = 100

#: The tasks the papers score by exact match; every other task is scored by ROUGE-L. Both
#: official evaluations name the same three: jinghan1he/SEEKR inference/infer_single.py (eval_acc for
#: task363, task875, task195; eval_rouge for the rest) and show_results.py (task_metrics), and
#: Ngahoang2005/Recurrent_KIF src/eval_avgPerf.py / src/eval_bwt.py (acc_task_list, kept there beside
#: a rouge-score ROUGE-L function; the released loop scores its long-sequence tasks, all by accuracy).
ACCURACY_TASKS = frozenset({
    "task363_sst2_polarity_classification",
    "task875_emotion_classification",
    "task195_sentiment140_classification",
})


@dataclass(frozen=True)
class SuperNIScoring:
    """How one paper's evaluation scores its SuperNI tasks."""

    rouge: str  # the metric of the free-text tasks
    accuracy: str  # the metric of :data:`ACCURACY_TASKS`
    answer_processing: str  # applied to the generated text first ("" = none)
    source: str  # the evaluation files the rule comes from
    epochs: float | None  # the epochs per task of the paper's script (None: no SuperNI script)


#: SEEKR's re_eval.py cuts the short answer as for TRACE, then scores every SuperNI file with
#: evaluations/eval_rouge.py: utils/metrics.py's calculate_rouge (the `rouge` package, as TRACE) and
#: calculate_accuracy (the exact string); its script trains every SuperNI task for 10 epochs.
#: KIF scores with rouge-score's ROUGE-L and sklearn's accuracy on lowercased strings.
SCORING: dict[str, SuperNIScoring] = {
    "SEEKR": SuperNIScoring(
        "rouge_l_trace", "accuracy_trace", "trace_answer",
        "jinghan1he/SEEKR re_eval.py, evaluations/eval_rouge.py", 10.0,
    ),
    "KIF": SuperNIScoring("rouge_l", "accuracy", "", "Ngahoang2005/Recurrent_KIF src/eval_avgPerf.py", None),
}

#: order number -> the paper it comes from (its scoring and its name for the order).
ORDER_PAPERS: dict[int, tuple[str, str]] = {
    9: ("SEEKR", "superni1 (the paper's order 3)"),
    10: ("SEEKR", "superni2 (the paper's order 4)"),
    11: ("KIF", "SuperNI order 1"),
    12: ("KIF", "SuperNI order 2"),
}


def split_instances(examples: Sequence[Example], seed: int, task: str) -> dict[str, list[Example]]:
    """A task's instances cut into test, dev and train parts, disjoint, by a seeded shuffle.

    The test part is taken first, so that it stays the same whatever the training cap: the first
    ``min(100, ceil(n / 10))`` instances of the shuffle; dev the next as many (the released files'
    dev.json repeats test.json; retain keeps a separate one, so that choosing a setting on dev never
    looks at test); train at most 1000 of the rest. A task of 1200 instances or more gives
    1000 / 100 / 100, one of 200 gives 160 / 20 / 20 (the released split's sizes for task1572).
    Each part keeps the file's order.
    """
    order = list(range(len(examples)))
    random.Random(f"{seed}-superni-{task}").shuffle(order)
    held = min(TEST_PER_TASK, math.ceil(len(examples) / 10))
    parts = {
        "test": order[:held],
        "dev": order[held:2 * held],
        "train": order[2 * held:2 * held + TRAIN_PER_TASK],
    }
    return {name: [examples[i] for i in sorted(indices)] for name, indices in parts.items()}


def superni_root(config: StreamConfig, names: Sequence[str]) -> Path:
    """The natural-instructions folder, with a task file for each task: every missing one named at once."""
    return benchmark_folder(
        config, "the natural-instructions repository's folder, holding tasks/<task>.json",
        "task file", lambda root: [f"tasks/{name}.json" for name in names if not (root / "tasks" / f"{name}.json").is_file()],
    )


__all__ = [
    "ACCURACY_TASKS", "ORDER_PAPERS", "SCORING", "SuperNIScoring", "TEST_PER_TASK", "TRAIN_PER_TASK",
    "split_instances", "superni_root",
]

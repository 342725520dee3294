"""The generated demo stream: small tasks a tiny model learns in seconds and that interfere.

Each task maps a key word to one of the task's own labels through a random lookup table, with
distractor words around the key. Tasks share the keys but not the labels, so training on a new
task pulls the model's answers towards the new label vocabulary: plain sequential fine-tuning
forgets, which is what the demo is there to show.
"""

from __future__ import annotations

import random

from retain.config import StreamConfig
from retain.data.types import Example, Stream, Task
from retain.errors import ConfigError

_LABEL_SETS = [
    ["red", "green", "blue", "yellow"],
    ["cat", "dog", "horse", "bird"],
    ["north", "south", "east", "west"],
    ["apple", "pear", "plum", "grape"],
    ["oak", "pine", "elm", "birch"],
    ["tin", "iron", "gold", "lead"],
    ["rain", "snow", "wind", "fog"],
    ["bass", "drum", "harp", "horn"],
]
_KEYS = [f"k{i}" for i in range(12)]
_NOISE = [f"w{i}" for i in range(24)]


def _make_examples(
    rng: random.Random, task_id: str, table: dict[str, str], labels: list[str], count: int, split: str
) -> list[Example]:
    options = ", ".join(labels)
    examples = []
    for index in range(count):
        key = _KEYS[index % len(_KEYS)] if split == "train" else rng.choice(_KEYS)
        noise = [rng.choice(_NOISE) for _ in range(4)]
        position = rng.randrange(len(noise) + 1)
        words = noise[:position] + [key] + noise[position:]
        prompt = (
            f"task {task_id} : find the key and answer . options : {options} . "
            f"input : {' '.join(words)} answer :"
        )
        examples.append(Example(prompt=prompt, target=table[key], key=f"{split}-{index}"))
    rng.shuffle(examples)
    return examples


def build_demo_stream(config: StreamConfig, seed: int) -> Stream:
    """Build ``config.demo_tasks`` generated tasks (1 to 8), deterministic for a seed."""
    count = config.demo_tasks
    if not 1 <= count <= len(_LABEL_SETS):  # the config declares this range; code callers too
        raise ConfigError(f"stream.demo_tasks: must be in [1, {len(_LABEL_SETS)}], got {count}")
    tasks = []
    for t in range(count):
        rng = random.Random(f"demo-{seed}-{t}")
        labels = _LABEL_SETS[t]
        table = {key: labels[rng.randrange(len(labels))] for key in _KEYS}
        name = f"demo{t + 1}"
        train = _make_examples(rng, name, table, labels, config.demo_train_size, "train")
        evaluation = _make_examples(rng, name, table, labels, config.demo_eval_size, "eval")
        tasks.append(Task(name=name, train=train, eval=evaluation, metric="accuracy", labels=labels,
                          metric_reason=f"generated label task ({len(labels)} labels)"))
    return Stream(name="demo", tasks=tasks)

"""Stored teacher attention maps for replayed examples, and the attention-distillation loss.

What is stored per replayed example (bf16, on the CPU, no padding): for every selected layer, the
selected heads' post-softmax rows at ``query_budget`` randomly drawn query positions, over the
example's real key tokens: ``[selected heads, rows, real keys]``. The row positions are kept with
them (indices among the example's real tokens). The heads are those selected after the example's
task ended; that choice is frozen with the task's buffer entry.

Sides: a map's queries and keys come from the input tokens (``source``) or, in encoder-decoder
models, the target tokens (``target``); which one depends on the site's role (self, decoder,
cross). Real positions of a side are read from the micro-batch: ``attention_mask`` for the source,
``labels != -100`` for the target.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import torch

from retain.data.collate import IGNORE_INDEX, MicroBatch

#: role -> (query side, key side)
ROLE_SIDES = {"self": ("source", "source"), "decoder": ("target", "target"), "cross": ("target", "source")}


def real_positions(batch: MicroBatch, side: str) -> list[torch.Tensor]:
    """Per example, the positions of its real tokens on ``side`` (source or target)."""
    if side == "source":
        mask = batch.inputs["attention_mask"].bool()
    else:
        mask = batch.inputs["labels"] != IGNORE_INDEX
    return [row.nonzero().flatten() for row in mask]


#: What a query budget longer than the example does: ``all_rows`` keeps each row once;
#: ``with_replacement`` draws ``budget`` rows with replacement (the released code's ``randint``).
QUERY_SAMPLINGS = ("all_rows", "with_replacement")


def draw_query_rows(
    key: str, side: str, length: int, budget: int, seed: int, sampling: str = "all_rows"
) -> torch.Tensor:
    """Sorted indices of the query rows kept for one example: ``budget`` of ``length`` (0 = all).

    Seeded by the run seed and the example key, so every pass over an example (before the task,
    after it, on resume) uses the same rows. A budget of at least ``length`` keeps every row once
    under ``all_rows``; under ``with_replacement`` a budget above ``length`` draws ``budget`` rows
    with replacement, so some rows repeat and count more in forgettability and the attention loss.
    """
    if sampling not in QUERY_SAMPLINGS:
        raise ValueError(f"unknown query sampling {sampling!r} (choose from {QUERY_SAMPLINGS})")
    rng = random.Random(f"{seed}-seekr-rows-{key}-{side}")
    if sampling == "with_replacement" and 0 < length < budget:
        return torch.tensor(sorted(rng.randrange(length) for _ in range(budget)))
    if budget <= 0 or budget >= length:
        return torch.arange(length)
    return torch.tensor(sorted(rng.sample(range(length), budget)))


def rows_of(
    attention: torch.Tensor, query_positions: torch.Tensor, key_positions: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """The unpadded rows of one example's map: [heads, Q, K] -> [heads, len(rows), real keys]."""
    query_positions, key_positions = query_positions.to(attention.device), key_positions.to(attention.device)
    picked = attention.index_select(1, query_positions.index_select(0, rows.to(attention.device)))
    return picked.index_select(2, key_positions)


def attention_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(teacher || student) along the last (key) axis, in fp32.

    Rows hold real keys only. The teacher row is renormalised (bf16 storage rounds its sum away
    from 1); entries where the teacher is 0 contribute 0 (``xlogy``), the student is floored at the
    smallest normal float so a vanished probability gives a large finite penalty, not inf.
    """
    student, teacher = student.float(), teacher.float()
    teacher = teacher / teacher.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    log_student = student.clamp_min(torch.finfo(torch.float32).tiny).log()
    kl = torch.xlogy(teacher, teacher) - teacher * log_student
    return kl.sum(dim=-1).mean()


#: How a layer's attention KL is averaged over a batch's examples (see ``distillation_loss``).
ATTENTION_NORMALISATIONS = ("batch", "distilling")

class TeacherMaps:
    """Teacher attention rows per replayed example, with the head selection of each task."""

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype
        #: example key -> {site index: [selected heads, rows, real keys]}
        self.maps: dict[str, dict[int, torch.Tensor]] = {}
        #: example key -> {side: query row indices among the real tokens}
        self.rows: dict[str, dict[str, torch.Tensor]] = {}
        #: task index -> {site index: selected heads}
        self.heads: dict[int, dict[int, list[int]]] = {}

    def __len__(self) -> int:
        return len(self.maps)

    def __contains__(self, key: str) -> bool:
        return key in self.maps

    def nbytes(self) -> int:
        """Bytes of the stored maps and their row indices."""
        maps = sum(t.numel() * t.element_size() for entry in self.maps.values() for t in entry.values())
        rows = sum(t.numel() * t.element_size() for entry in self.rows.values() for t in entry.values())
        return maps + rows

    def add_task(self, task_index: int, selection: dict[int, list[int]]) -> None:
        self.heads[task_index] = {int(site): list(heads) for site, heads in selection.items()}

    def add(self, key: str, task_index: int, maps: dict[int, torch.Tensor], rows: dict[str, torch.Tensor]) -> None:
        """Store one example's rows, keeping only the heads selected for its task."""
        selection = self.heads[task_index]
        self.maps[key] = {
            site: maps[site][torch.tensor(heads)].to("cpu", self.dtype).clone() for site, heads in selection.items()
        }
        self.rows[key] = {side: r.clone() for side, r in rows.items()}

    def sites_for(self, batch: MicroBatch) -> set[int]:
        """Sites whose maps the batch's stored examples need."""
        sites: set[int] = set()
        for key, task_index in zip(batch.keys, batch.task_indices):
            if key in self.maps:
                sites.update(self.heads[task_index])
        return sites

    def distillation_loss(
        self,
        batch: MicroBatch,
        student_maps: dict[int, torch.Tensor],
        roles: dict[int, str],
        normalisation: str = "batch",
    ) -> Optional[torch.Tensor]:
        """Attention KL of the batch's stored examples, or None if it has none.

        Averaged over (head, query) rows of an example and layer, then, per layer, summed over
        the examples that distil it and divided by ``normalisation``'s count: ``batch``, every
        stored example of the batch (the reference implementation's division by the replay batch
        size, so a layer few examples distil weighs less); ``distilling``, only the examples that
        distil that layer. Then averaged over layers.
        """
        positions = {side: real_positions(batch, side) for side in {s for r in roles.values() for s in ROLE_SIDES[r]}}
        per_site: dict[int, list[torch.Tensor]] = {}
        stored = 0
        for i, (key, task_index) in enumerate(zip(batch.keys, batch.task_indices)):
            if key not in self.maps:
                continue
            stored += 1
            for site, teacher in self.maps[key].items():
                query_side, key_side = ROLE_SIDES[roles[site]]
                heads = torch.tensor(self.heads[task_index][site], device=student_maps[site].device)
                student = rows_of(
                    student_maps[site][i].index_select(0, heads),
                    positions[query_side][i], positions[key_side][i], self.rows[key][query_side],
                )
                if student.shape != teacher.shape:
                    raise RuntimeError(
                        f"stored attention rows {tuple(teacher.shape)} of {key} do not match the student's "
                        f"{tuple(student.shape)}: the example was encoded differently when they were stored"
                    )
                keys = teacher.shape[-1]
                kl = attention_kl(student.reshape(-1, keys), teacher.to(student.device).reshape(-1, keys))
                per_site.setdefault(site, []).append(kl)
        if not per_site:
            return None
        if normalisation not in ATTENTION_NORMALISATIONS:
            raise ValueError(f"unknown attention normalisation {normalisation!r}")
        if normalisation == "distilling":
            return torch.stack([torch.stack(values).mean() for values in per_site.values()]).mean()
        return torch.stack([torch.stack(values).sum() / stored for values in per_site.values()]).mean()

    def state_dict(self) -> dict[str, Any]:
        return {"maps": dict(self.maps), "rows": dict(self.rows), "heads": dict(self.heads)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.maps = dict(state.get("maps", {}))
        self.rows = dict(state.get("rows", {}))
        self.heads = {int(k): {int(s): list(h) for s, h in v.items()} for k, v in state.get("heads", {}).items()}

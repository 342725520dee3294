"""Rank classification: pick, per example, the label whose tokens (+ eos) are most likely.

Two paths that choose the same label:

* ``share_prompt=True`` (what the engine uses) encodes each prompt once. A causal LM runs the prompt
  batch with the KV cache, repeats the cache once per label and runs only the label tokens on it;
  a seq2seq LM runs its encoder once per example and the decoder over every label. A task with
  14 labels (dbpedia) thus costs one prompt pass instead of 14.
* ``share_prompt=False`` runs the whole prompt once per label (the earlier path). It is kept as
  the reference the tests and ``benchmarks/eval_speed.py`` compare against.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from retain.data.collate import IGNORE_INDEX, EncodedExample, Encoder
from retain.models.kinds import model_kind


def _chunks(items: list[EncodedExample], size: int) -> list[list[EncodedExample]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _examples_per_pass(batch_size: int, num_labels: int) -> int:
    """Examples per forward pass: ``batch_size`` rows once every example is repeated per label."""
    return max(1, batch_size // max(1, num_labels))


def _padded_labels(label_tokens: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels x width) token ids right-padded with ``pad_id``, and the mask of real tokens."""
    width = max(len(t) for t in label_tokens)
    ids = torch.full((len(label_tokens), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(label_tokens), width), dtype=torch.long)
    for row, tokens in enumerate(label_tokens):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    return ids, mask


def _accepts(model: Any, argument: str) -> bool:
    """Whether the (PEFT-unwrapped) model's forward takes ``argument`` by name."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return argument in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def _cache_argument(model: Any) -> str:
    """The name under which forward takes a KV cache (``cache`` in newer transformers)."""
    return "cache" if _accepts(model, "cache") else "past_key_values"


def _label_logprob_sums(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over positions of log p(target) where ``mask`` is set: (rows,)."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def _causal_totals(model: Any, encoder: Encoder, chunk: list[EncodedExample], label_ids: torch.Tensor,
                   label_mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(examples x labels) summed label log-likelihoods: one prompt pass, the cache shared by labels."""
    prompts = encoder.collate_prompts(chunk)  # left-padded: every prompt ends at the last column
    ids, mask = prompts["input_ids"].to(device), prompts["attention_mask"].to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
    num_labels, width = label_ids.shape
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)[:, label_ids[:, 0].to(device)]  # B x L
    if width == 1:
        return first
    cache = getattr(out, "cache", None) or out.past_key_values
    if isinstance(cache, tuple):  # older transformers: a legacy tuple cache
        from transformers import DynamicCache  # noqa: PLC0415

        cache = DynamicCache.from_legacy_cache(cache)
    cache.batch_repeat_interleave(num_labels)
    rows_ids = label_ids.to(device).repeat(len(chunk), 1)  # row b*L + l: label l of example b
    rows_mask = label_mask.to(device).repeat(len(chunk), 1)
    # the label tokens but the last go in; each predicts the next one (the last has no successor)
    attention = torch.cat([mask.repeat_interleave(num_labels, 0), rows_mask[:, :-1]], dim=1)
    lengths = mask.sum(-1).repeat_interleave(num_labels, 0)
    label_positions = lengths.unsqueeze(1) + torch.arange(width - 1, device=device).unsqueeze(0)
    rest = model(input_ids=rows_ids[:, :-1], attention_mask=attention, position_ids=label_positions,
                 use_cache=True, **{_cache_argument(model): cache}).logits
    later = _label_logprob_sums(rest, rows_ids[:, 1:], rows_mask[:, 1:]).view(len(chunk), num_labels)
    return first + later


def _seq2seq_totals(model: Any, encoder: Encoder, chunk: list[EncodedExample], label_tokens: list[list[int]],
                    device: torch.device) -> torch.Tensor:
    """(examples x labels) summed label log-likelihoods: one encoder pass per example."""
    prompts = encoder.collate_prompts(chunk)
    ids, mask = prompts["input_ids"].to(device), prompts["attention_mask"].to(device)
    num_labels = len(label_tokens)
    encoded = model.get_encoder()(input_ids=ids, attention_mask=mask)
    hidden = encoded.last_hidden_state.repeat_interleave(num_labels, 0)
    label_ids, label_mask = _padded_labels(label_tokens, IGNORE_INDEX)
    targets = label_ids.to(device).repeat(len(chunk), 1)
    out = model(encoder_outputs=(hidden,), attention_mask=mask.repeat_interleave(num_labels, 0), labels=targets)
    rows_mask = label_mask.to(device).repeat(len(chunk), 1)
    return _label_logprob_sums(out.logits, targets.clamp(min=0), rows_mask).view(len(chunk), num_labels)


def _per_label_totals(model: Any, encoder: Encoder, chunk: list[EncodedExample], label_tokens: list[list[int]],
                      device: torch.device) -> torch.Tensor:
    """(examples x labels) summed label log-likelihoods with prompt + label as one row per label."""
    rows = []
    for item in chunk:
        prompt = item.input_ids[: item.prompt_length] if encoder.kind == "causal" else item.input_ids
        for target in label_tokens:
            if encoder.kind == "causal":
                rows.append(EncodedExample(prompt + target, [IGNORE_INDEX] * len(prompt) + target, item.key, item.task_index))
            else:
                rows.append(EncodedExample(prompt, target, item.key, item.task_index))
    batch = encoder.collate(rows).to(device)
    extra = {"labels": batch.inputs["labels"]} if encoder.kind == "seq2seq" else {}
    logits = model(**{k: v for k, v in batch.inputs.items() if k != "labels"}, **extra).logits
    logits, target = model_kind(encoder.kind).aligned(logits, batch.inputs["labels"])
    return _label_logprob_sums(logits, target.clamp(min=0), target != IGNORE_INDEX).view(len(chunk), len(label_tokens))


@torch.no_grad()
def rank_totals(
    model: Any, encoder: Encoder, items: list[EncodedExample], labels: list[str], batch_size: int,
    device: torch.device, share_prompt: bool = True,
) -> torch.Tensor:
    """(examples x labels) summed log-likelihood of each label's tokens + eos after each prompt.

    ``share_prompt`` False: the per-label reference path (the whole prompt run once per label).
    """
    label_tokens = [encoder._target(label) for label in labels]
    label_ids, label_mask = _padded_labels(label_tokens, encoder.pad_id)
    totals = []
    for chunk in _chunks(items, _examples_per_pass(batch_size, len(labels))):
        if not share_prompt:
            totals.append(_per_label_totals(model, encoder, chunk, label_tokens, device))
        elif encoder.kind == "causal":
            totals.append(_causal_totals(model, encoder, chunk, label_ids, label_mask, device))
        else:
            totals.append(_seq2seq_totals(model, encoder, chunk, label_tokens, device))
    return torch.cat(totals).cpu() if totals else torch.zeros(0, len(labels))


def rank_answers(
    model: Any, encoder: Encoder, items: list[EncodedExample], labels: list[str], batch_size: int,
    device: torch.device, share_prompt: bool = True,
) -> list[str]:
    """The most likely label per example (see the module docstring for the two paths)."""
    totals = rank_totals(model, encoder, items, labels, batch_size, device, share_prompt)
    return [labels[i] for i in totals.argmax(-1).tolist()]

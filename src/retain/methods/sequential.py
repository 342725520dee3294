"""The plain sequential baselines: full fine-tuning and one LoRA adapter carried across tasks.

Both are the identity at every hook; they exist so that a run names what it trains, and so that
the start-up checks can refuse e.g. ``seqft`` on a LoRA model.
"""

from __future__ import annotations

from retain.methods.base import DISTRIBUTED_MODES, Method
from retain.methods.registry import register_method


@register_method
class SeqFT(Method):
    name = "seqft"
    summary = "Sequential fine-tuning of all weights, task after task (the lower bound)."
    needs_lora = False
    distributed = DISTRIBUTED_MODES


@register_method
class SeqLoRA(Method):
    name = "seqlora"
    summary = "One LoRA adapter trained on task after task (enables LoRA)."
    needs_lora = True
    distributed = DISTRIBUTED_MODES

"""Post-softmax attention maps from any model that routes attention through transformers'
``AttentionInterface``, without patching model code.

Why this shape: attention probabilities only exist in the eager computation (sdpa and flash kernels
never materialise them), but eager attention on every layer of every forward costs time and
memory. So one attention function is registered under :data:`CAPTURE_IMPLEMENTATION` and the model
is switched to it. For each call it looks up which *site* (attention module) is calling; if the
site is armed it computes eager attention and keeps the probabilities, otherwise it takes the sdpa
path. Sites are armed only around the forwards that need maps (SEEKR's replay micro-batches and its
importance pass), so new-task batches and evaluation stay on sdpa.

Sites are discovered by one probe forward at install time: every attention module that calls the
interface is a site, numbered in call order (encoder layers first for seq2seq models) and given a
role from the probe's shapes:

- ``self``: self-attention over the input (decoder-only LMs, encoder-only classifiers, T5 encoder);
- ``decoder``: decoder self-attention of an encoder-decoder model (queries and keys are target
  positions);
- ``cross``: decoder-to-encoder attention (queries are target positions, keys input positions).

Grouped-query attention is expanded to query heads (``repeat_kv``) before the softmax, so a site
has as many heads as the model has query heads. Masks are built by transformers' ``eager_mask``
(registered for the capture implementation), an additive float mask that sdpa accepts as well.

Supported: LLaMA-family decoders, T5-style encoder-decoders and BERT-style encoders, which all
call ``ALL_ATTENTION_FUNCTIONS.get_interface`` in this transformers version. A model that does not
(its attention modules never call the interface) is refused at install with a
:class:`~retain.errors.MethodError` naming the architecture. Gradient checkpointing is not
supported: the recomputed forward would not be armed.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from retain.errors import MethodError
from retain.models.kinds import eval_mode

#: the name the capture function and its mask function are registered under.
CAPTURE_IMPLEMENTATION = "retain_capture"

SITE_ROLES = ("self", "decoder", "cross")

#: probe lengths: distinct so that a site's role can be read from its query/key lengths.
_PROBE_SOURCE_LENGTH = 5
_PROBE_TARGET_LENGTH = 3


@dataclass(frozen=True)
class AttentionSite:
    """One attention module of the model: where it sits and what its maps are over."""

    index: int
    name: str  # module path in the model
    role: str  # self | decoder | cross
    num_heads: int  # query heads (after GQA expansion)


#: attention module -> (capture, site index). Weak keys: a dropped model leaves no entry behind.
_SITE_OF: "weakref.WeakKeyDictionary[nn.Module, tuple[AttentionCapture, int]]" = weakref.WeakKeyDictionary()
#: the capture that is discovering its sites (probe forward), if any.
_DISCOVERING: list["AttentionCapture"] = []


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    scaling: Optional[float] = None,
    dropout: float = 0.0,
    position_bias: Optional[torch.Tensor] = None,
    softcap: Optional[float] = None,
    grad_to_probs: bool = False,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention as the LLaMA/BERT/T5 eager paths compute it; returns (output, probabilities).

    The probabilities are the post-softmax map [batch, query heads, queries, keys], before
    dropout (dropout is applied to what multiplies the values, as in the models' own eager code).
    ``grad_to_probs`` makes the map a graph leaf when nothing upstream is trainable, so that a loss
    can still be differentiated with respect to it.
    """
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: one map per query head
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    elif getattr(module, "is_causal", False) and query.shape[2] > 1:
        q_len, k_len = query.shape[2], key.shape[2]
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).triu(k_len - q_len + 1)
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if grad_to_probs and not probs.requires_grad:
        probs.requires_grad_()
    dropped = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(dropped, value).transpose(1, 2).contiguous()
    return output, probs


def capture_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    **kwargs: Any,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The registered attention function: eager + record on armed sites, sdpa everywhere else."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if _DISCOVERING:
        _DISCOVERING[-1]._discovered(module, query, key)
    entry = _SITE_OF.get(module)
    if entry is not None:
        capture, site = entry
        if site in capture.armed:
            output, probs = eager_attention(
                module, query, key, value, attention_mask, grad_to_probs=capture.force_grad, **kwargs
            )
            capture._record(site, probs)
            return output, probs
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_capture_implementation() -> None:
    """Register the capture function and its mask builder with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(CAPTURE_IMPLEMENTATION, capture_attention_forward)
    AttentionMaskInterface.register(CAPTURE_IMPLEMENTATION, eager_mask)


def find_pretrained(model: nn.Module) -> Any:
    """The outermost transformers ``PreTrainedModel`` inside ``model`` (PEFT and wrappers unwrapped)."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            return module
    raise MethodError(f"attention capture: {type(model).__name__} is not a transformers model")


def probe_inputs(kind: str, vocab_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A one-example batch whose source and target lengths differ, so that roles can be told apart."""
    source = torch.arange(1, _PROBE_SOURCE_LENGTH + 1, device=device).remainder(vocab_size)[None]
    inputs = {"input_ids": source, "attention_mask": torch.ones_like(source)}
    if kind == "seq2seq":
        inputs["labels"] = torch.arange(1, _PROBE_TARGET_LENGTH + 1, device=device).remainder(vocab_size)[None]
    return inputs


class AttentionCapture:
    """Installs the capture implementation on a model and hands out the maps of armed sites.

    Usage::

        capture = AttentionCapture.install(model, kind)
        with capture.recording([0, 3]) as maps:
            model(**inputs)
        maps[0]  # [batch, heads, queries, keys], part of the autograd graph
    """

    def __init__(self, model: nn.Module, kind: str) -> None:
        self.model = model
        self.kind = kind
        self.sites: list[AttentionSite] = []
        self.armed: frozenset[int] = frozenset()
        self.force_grad = False
        self._maps: dict[int, torch.Tensor] = {}
        self._calls: list[tuple[nn.Module, int, int, int]] = []
        self._previous_implementation: Optional[str] = None

    # -- installation ----------------------------------------------------------------------

    @classmethod
    def install(cls, model: nn.Module, kind: str) -> "AttentionCapture":
        """Switch ``model`` to the capture implementation and discover its attention sites."""
        capture = cls(model, kind)
        pretrained = find_pretrained(model)
        architecture = type(pretrained).__name__
        if not pretrained._can_set_attn_implementation():
            raise MethodError(
                f"attention capture: {architecture} does not route attention through transformers' "
                "AttentionInterface, so its attention maps cannot be captured without patching it "
                "(supported: LLaMA-family decoders, T5-style encoder-decoders, BERT-style encoders)"
            )
        register_capture_implementation()
        capture._previous_implementation = pretrained.config._attn_implementation
        pretrained.set_attn_implementation(CAPTURE_IMPLEMENTATION)
        capture._discover(pretrained)
        if not capture.sites:
            capture.uninstall()
            raise MethodError(
                f"attention capture: no attention layer of {architecture} called the attention interface "
                "during a probe forward; its attention maps cannot be captured"
            )
        heads = {site.num_heads for site in capture.sites}
        if len(heads) != 1:
            capture.uninstall()
            raise MethodError(f"attention capture: {architecture} has layers with different head counts ({sorted(heads)})")
        return capture

    def uninstall(self) -> None:
        """Give the model its previous attention implementation back and forget the sites."""
        for module in list(_SITE_OF.keys()):
            if _SITE_OF[module][0] is self:
                del _SITE_OF[module]
        if self._previous_implementation is not None:
            find_pretrained(self.model).set_attn_implementation(self._previous_implementation)
            self._previous_implementation = None
        self.sites = []

    def _discover(self, pretrained: Any) -> None:
        names = {module: name for name, module in pretrained.named_modules()}
        vocab = int(getattr(pretrained.config, "vocab_size", 2) or 2)
        device = next(pretrained.parameters()).device
        _DISCOVERING.append(self)
        try:
            with torch.no_grad(), eval_mode(pretrained):
                pretrained(**probe_inputs(self.kind, vocab, device))
        finally:
            _DISCOVERING.pop()
        for module, q_len, k_len, heads in self._unique_calls():
            role = self._role(q_len, k_len)
            site = AttentionSite(len(self.sites), names.get(module, type(module).__name__), role, heads)
            self.sites.append(site)
            _SITE_OF[module] = (self, site.index)

    def _discovered(self, module: nn.Module, query: torch.Tensor, key: torch.Tensor) -> None:
        self._calls.append((module, int(query.shape[2]), int(key.shape[2]), int(query.shape[1])))

    def _unique_calls(self) -> Iterator[tuple[nn.Module, int, int, int]]:
        seen: set[int] = set()
        for module, q_len, k_len, heads in self._calls:
            if id(module) not in seen:
                seen.add(id(module))
                yield module, q_len, k_len, heads
        self._calls = []

    def _role(self, q_len: int, k_len: int) -> str:
        if self.kind != "seq2seq":
            return "self"
        if q_len == _PROBE_TARGET_LENGTH:
            return "cross" if k_len == _PROBE_SOURCE_LENGTH else "decoder"
        return "self"

    # -- recording -------------------------------------------------------------------------

    @property
    def num_heads(self) -> int:
        return self.sites[0].num_heads

    def site_indices(self, include_cross: bool = False) -> list[int]:
        """Sites that count as layers for head selection (cross-attention only when asked)."""
        return [s.index for s in self.sites if include_cross or s.role != "cross"]

    def arm(self, sites: Iterable[int], force_grad: bool = False) -> None:
        """Record the maps of ``sites`` in the following forwards (until :meth:`disarm`)."""
        self.armed = frozenset(int(s) for s in sites)
        self.force_grad = force_grad
        self._maps = {}

    def disarm(self) -> dict[int, torch.Tensor]:
        """Stop recording; return what was recorded (the first forward's map of each site)."""
        maps, self._maps = self._maps, {}
        self.armed = frozenset()
        self.force_grad = False
        return maps

    @contextlib.contextmanager
    def recording(self, sites: Iterable[int], force_grad: bool = False) -> Iterator[dict[int, torch.Tensor]]:
        """Arm ``sites`` for the block; the yielded dict fills with their maps."""
        self.arm(sites, force_grad)
        maps = self._maps
        try:
            yield maps
        finally:
            self.disarm()

    def _record(self, site: int, probs: torch.Tensor) -> None:
        # the first map only: a later forward in the same window (another method's teacher pass)
        # must not replace the one the loss is computed on.
        self._maps.setdefault(site, probs)

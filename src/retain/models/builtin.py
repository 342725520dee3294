"""Tiny models built from configs: the demo, the tests and quick experiments, no download."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import (
    BertConfig,
    GPT2Config,
    LlamaConfig,
    MixtralConfig,
    PretrainedConfig,
    T5Config,
)


def _llama(vocab: int, ids: dict[str, int]) -> PretrainedConfig:
    return LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=False, **ids,
    )


def _gpt2(vocab: int, ids: dict[str, int]) -> PretrainedConfig:
    return GPT2Config(
        vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=1024,
        bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"],
        pad_token_id=ids["pad_token_id"],
    )


def _t5(vocab: int, ids: dict[str, int]) -> PretrainedConfig:
    return T5Config(
        vocab_size=vocab, d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2,
        num_heads=4, feed_forward_proj="relu", decoder_start_token_id=ids["pad_token_id"],
        pad_token_id=ids["pad_token_id"], eos_token_id=ids["eos_token_id"],
        tie_word_embeddings=True,
    )


def _bert(vocab: int, ids: dict[str, int]) -> PretrainedConfig:
    return BertConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=1024, pad_token_id=ids["pad_token_id"],
    )


def _mixtral(vocab: int, ids: dict[str, int]) -> PretrainedConfig:
    """A mixture-of-experts decoder: 4 experts per layer, each token routed to 2 (fused expert tensors)."""
    return MixtralConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
        max_position_embeddings=1024, tie_word_embeddings=False, **ids,
    )


#: name -> (kind, config factory(vocab size, special token ids))
BUILTIN_MODELS: dict[str, tuple[str, Callable[[int, dict[str, int]], PretrainedConfig]]] = {
    "tiny-llama": ("causal", _llama),
    "tiny-gpt2": ("causal", _gpt2),
    "tiny-t5": ("seq2seq", _t5),
    "tiny-bert": ("classifier", _bert),
    "tiny-mixtral": ("causal", _mixtral),
}


def builtin_config(name: str, tokenizer: Any) -> tuple[str, PretrainedConfig]:
    kind, factory = BUILTIN_MODELS[name]
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return kind, factory(len(tokenizer), ids)

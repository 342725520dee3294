"""Loading a model and tokenizer for a stream, with optional PEFT LoRA.

Real models come from ``from_pretrained`` on a name or a local path; ``builtin:<name>`` models are
built from a tiny config with a tokenizer trained on the stream's text (no download anywhere).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from retain.config import LoraConfig, ModelConfig, resolve_dtype
from retain.data.tokenizer import build_word_tokenizer
from retain.data.types import Stream
from retain.errors import ConfigError
from retain.models.architecture import set_router_aux_loss
from retain.models.builtin import BUILTIN_MODELS, builtin_config
from retain.models.kinds import ENCODER_ONLY_TYPES, infer_kind

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_AUTO_CLASSES = {
    "causal": AutoModelForCausalLM,
    "seq2seq": AutoModelForSeq2SeqLM,
    "classifier": AutoModelForSequenceClassification,
}
_LORA_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "classifier": "SEQ_CLS"}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: Any
    kind: str
    label_names: list[str]  # classifier head classes (empty for generative kinds)


def stream_texts(stream: Stream) -> list[str]:
    texts = []
    for task in [*stream.tasks, *stream.general]:
        for example in [*task.train, *task.eval]:
            texts.append(example.prompt)
            texts.append(example.target)
    return texts


def load_tokenizer(config: ModelConfig, stream: Stream, kind: Optional[str] = None) -> Any:
    if config.name_or_path.startswith("builtin:") and config.tokenizer is None:
        return build_word_tokenizer(stream_texts(stream))
    source = config.tokenizer or config.name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.tokenizer: cannot load tokenizer {source!r} ({exc})") from None
    if tokenizer.eos_token is None and kind == "causal" and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token  # BERT-style vocabularies end a sequence with [SEP]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def decoder_kwargs(config: ModelConfig, kind: str, hf_config: Any) -> dict[str, Any]:
    """``is_decoder=True`` for an encoder-only checkpoint loaded as a causal LM (or when asked).

    Without it a BERT-style model attends in both directions, so training a causal LM on it would
    let every position see the answer it is asked to predict.
    """
    if config.is_decoder is not None:
        return {"is_decoder": config.is_decoder}
    if kind == "causal" and getattr(hf_config, "model_type", "") in ENCODER_ONLY_TYPES:
        return {"is_decoder": True}
    return {}


def _resolve_kind(config: ModelConfig) -> tuple[str, Optional[Any]]:
    """Return (kind, hf_config or None for builtin)."""
    if config.name_or_path.startswith("builtin:"):
        name = config.name_or_path.split(":", 1)[1]
        if name not in BUILTIN_MODELS:
            raise ConfigError(
                f"model.name_or_path: unknown built-in model {name!r} "
                f"(known: {', '.join(sorted(BUILTIN_MODELS))})"
            )
        builtin_kind = BUILTIN_MODELS[name][0]
        if config.kind not in (None, builtin_kind):
            raise ConfigError(
                f"model.kind: builtin:{name} is a {builtin_kind} model, not {config.kind}"
            )
        return builtin_kind, None
    try:
        hf_config = AutoConfig.from_pretrained(config.name_or_path)
    except (OSError, ValueError) as exc:
        hint = "" if os.path.exists(config.name_or_path) else " (no such local path; hub names need network access)"
        raise ConfigError(f"model.name_or_path: cannot load {config.name_or_path!r}{hint}: {exc}") from None
    return config.kind or infer_kind(hf_config), hf_config


def load_model(config: ModelConfig, stream: Stream, seed: int) -> LoadedModel:
    """Build the model for ``stream``: the classifier head covers the union of its labels."""
    kind, hf_config = _resolve_kind(config)
    tokenizer = load_tokenizer(config, stream, kind)
    labels = stream.all_labels() if kind == "classifier" else []
    if kind == "classifier" and not labels:
        raise ConfigError("model.kind: a classifier needs label-set tasks; this stream has none")
    if kind != "causal" and any(task.raw_text for task in stream.tasks):
        raise ConfigError("model.kind: raw-text (perplexity) tasks need a causal LM")
    dtype = _DTYPES[resolve_dtype(config.dtype, "no")]  # the runner resolves auto against the run
    torch.manual_seed(seed)
    label_kwargs: dict[str, Any] = {}
    if kind == "classifier":
        label_kwargs = {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)},
        }
    if hf_config is None:
        name = config.name_or_path.split(":", 1)[1]
        _, model_config = builtin_config(name, tokenizer)
        for key, value in label_kwargs.items():
            setattr(model_config, key, value)
        model = _AUTO_CLASSES[kind].from_config(model_config, dtype=dtype)
    else:
        try:
            model = _AUTO_CLASSES[kind].from_pretrained(
                config.name_or_path, dtype=dtype, ignore_mismatched_sizes=kind == "classifier",
                **label_kwargs, **decoder_kwargs(config, kind, hf_config),
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model.name_or_path: cannot load {config.name_or_path!r} as {kind}: {exc}") from None
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    set_router_aux_loss(model, config.router_aux_loss)  # MoE models: HF adds it to outputs.loss
    if config.lora.enabled:
        model = apply_lora(model, config.lora, kind)
    return LoadedModel(model=model, tokenizer=tokenizer, kind=kind, label_names=labels)


def apply_lora(model: torch.nn.Module, lora: LoraConfig, kind: str, adapter_name: str = "default") -> Any:
    """Wrap ``model`` with a PEFT LoRA adapter (PEFT picks target modules per architecture by default)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    target_modules = lora.target_modules
    if target_modules is None:
        # PEFT's own per-architecture default, passed explicitly: on mixture-of-experts models
        # PEFT 0.22 turns a missing target_modules into an empty set (its fused-expert weight
        # conversion runs first) and then adapts nothing.
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        default = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(getattr(model.config, "model_type", ""))
        target_modules = default if isinstance(default, (str, type(None))) else list(default)
    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target_modules,
        task_type=_LORA_TASK_TYPES[kind],
    )
    try:
        return get_peft_model(model, peft_config, adapter_name=adapter_name)
    except ValueError as exc:
        raise ConfigError(f"model.lora.target_modules: {exc}") from None


def is_lora_model(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)

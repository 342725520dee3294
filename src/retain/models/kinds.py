"""Model kinds and how to recognise them from a Hugging Face config."""

from __future__ import annotations

from typing import Any

MODEL_KINDS = ("causal", "seq2seq", "classifier")

#: Encoder-only architectures: used as sequence classifiers over the stream's label set.
ENCODER_ONLY_TYPES = {
    "bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert",
    "xlm-roberta", "mpnet", "camembert", "modernbert",
}


def infer_kind(hf_config: Any) -> str:
    """causal / seq2seq / classifier from a transformers config."""
    if getattr(hf_config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = getattr(hf_config, "architectures", None) or []
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return "classifier"
    if getattr(hf_config, "model_type", "") in ENCODER_ONLY_TYPES:
        return "classifier"
    return "causal"

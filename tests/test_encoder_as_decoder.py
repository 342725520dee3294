"""An encoder-only checkpoint (BERT family) loaded as a causal LM: causal mask, [SEP] as eos, a run."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import retain
from retain.config import ModelConfig, StreamConfig
from retain.data.demo import build_demo_stream
from retain.models.loading import load_model, stream_texts
from tests.conftest import tiny_config


def save_tiny_bert(folder: Path) -> Path:
    """A 2-layer BERT masked LM and a WordPiece vocabulary of the demo stream's words, saved offline."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    stream = build_demo_stream(StreamConfig(demo_tasks=2, demo_train_size=16, demo_eval_size=8), 7)
    words = sorted({w for text in stream_texts(stream) for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=128)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_bert_checkpoint_loads_as_a_left_to_right_lm(tmp_path: Path) -> None:
    path = save_tiny_bert(tmp_path / "bert")
    stream = build_demo_stream(StreamConfig(demo_tasks=1, demo_train_size=4, demo_eval_size=2), 7)
    loaded = load_model(ModelConfig(name_or_path=str(path), kind="causal"), stream, 0)
    model = loaded.model.eval()
    assert type(model).__name__ == "BertLMHeadModel" and model.config.is_decoder
    assert loaded.tokenizer.eos_token == "[SEP]"
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    # causal: the logits at position 2 do not depend on the tokens after it
    ids = torch.tensor([[2, 7, 8, 9, 10]])
    changed = ids.clone()
    changed[0, 3:] = 11
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
    assert torch.allclose(a[0, :3], b[0, :3]) and not torch.allclose(a[0, 3:], b[0, 3:])
    bidirectional = load_model(ModelConfig(name_or_path=str(path), kind="causal", is_decoder=False), stream, 0).model
    assert not bidirectional.config.is_decoder


def test_a_generative_run_on_a_bert_checkpoint(tmp_path: Path) -> None:
    path = save_tiny_bert(tmp_path / "bert")
    config = tiny_config(tmp_path, model=str(path), stream={"demo_train_size": 16, "demo_eval_size": 8})
    config["model"]["kind"] = "causal"
    result = retain.run(config, quiet=True)
    assert len(result.matrix.rows) == 3 and all(0 <= v <= 100 for row in result.matrix.rows for v in row)
    predictions = (result.run_dir / "predictions").glob("*.jsonl")
    assert any('"prediction"' in p.read_text() for p in predictions)

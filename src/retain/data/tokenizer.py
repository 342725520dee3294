"""A word-level tokenizer trained in code, so that demos and tests need no download.

Real runs use the model's own tokenizer (``AutoTokenizer.from_pretrained``); built-in tiny models
get this one, trained on the stream's own text in well under a second.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_word_tokenizer(texts: Iterable[str], vocab_size: int = 16000) -> PreTrainedTokenizerFast:
    """Train a whitespace word-level tokenizer; decoding joins words with single spaces.

    Word-level keeps labels as single tokens, which is what makes a tiny model learn a demo
    task in seconds; unseen words map to ``<unk>``.
    """
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    tokenizer.train_from_iterator(sorted(set(texts)), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )
    fast.clean_up_tokenization_spaces = False
    return fast

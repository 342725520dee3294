"""Word tokens for ROUGE in any script.

rouge-score's default tokeniser keeps only ``[a-z0-9]`` runs, so a Chinese answer has no tokens
at all (an exact match scores 0) and German ``Größe`` becomes ``gr`` + ``e``. This tokeniser
keeps every letter, mark and digit: words of space-separated scripts stay whole (``größe``),
and each character of the scripts written without spaces (Chinese, Japanese kana) is a token
of its own, as multilingual ROUGE tokenisers do. On ASCII text the tokens are exactly
rouge-score's: lowercase, runs of letters and digits, everything else a separator.
"""

from __future__ import annotations

import unicodedata

#: Code point ranges whose characters are one token each: CJK ideographs (unified, extensions,
#: compatibility) and Japanese kana.
_CHARACTER_TOKEN_RANGES: tuple[tuple[int, int], ...] = (
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3134F),  # CJK extensions B-G and compatibility supplement
)


def is_character_token(char: str) -> bool:
    """Whether ``char`` belongs to a script written without spaces (one token per character)."""
    code = ord(char)
    return any(low <= code <= high for low, high in _CHARACTER_TOKEN_RANGES)


def _is_word_char(char: str) -> bool:
    # letters (L*), combining marks (M*: Devanagari vowel signs, decomposed accents), digits (N*)
    return unicodedata.category(char)[0] in "LMN"


def multilingual_tokens(text: str) -> list[str]:
    """Lowercased word tokens of ``text``; see the module docstring."""
    tokens: list[str] = []
    word: list[str] = []
    for char in text.lower():
        if is_character_token(char):
            if word:
                tokens.append("".join(word))
                word = []
            tokens.append(char)
        elif _is_word_char(char):
            word.append(char)
        elif word:
            tokens.append("".join(word))
            word = []
    if word:
        tokens.append("".join(word))
    return tokens


class MultilingualTokenizer:
    """:func:`multilingual_tokens` behind the ``tokenize`` method rouge-score's scorer calls."""

    def tokenize(self, text: str) -> list[str]:
        return multilingual_tokens(text)


__all__ = ["MultilingualTokenizer", "is_character_token", "multilingual_tokens"]

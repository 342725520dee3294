"""Prompt templates: a Python format string over a record's own fields.

``template: "Review: {sentence}\\nSentiment:"`` builds each prompt from the record's fields (the
names in the file, before any ``fields`` mapping), so a Hub dataset whose columns are not
instruction/input needs no conversion. The template is checked when the config is read; a record
without one of its fields is a DataError that names the file, record and field.
"""

from __future__ import annotations

import string
from typing import Any, Mapping

from retain.errors import ConfigError, DataError


class PromptTemplate:
    """A parsed format string; :meth:`render` fills it from one record."""

    def __init__(self, text: str, key: str = "template") -> None:
        if not isinstance(text, str) or not text:
            raise ConfigError(f"{key}: expected a non-empty format string such as 'Question: {{question}}\\nAnswer:'")
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ConfigError(f"{key}: not a valid format string ({exc}; write a literal brace as {{{{ or }}}})") from None
        names = []
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if not name or name.isdigit():
                raise ConfigError(f"{key}: every placeholder needs a record field name, e.g. {{question}} (got {{{name}}})")
            if spec or conversion or not name.isidentifier():
                raise ConfigError(f"{key}: placeholder {{{name}}} must be a plain field name (no format spec, "
                                  "conversion, index or attribute)")
            names.append(name)
        self.text = text
        self.fields = tuple(dict.fromkeys(names))

    def render(self, record: Mapping[str, Any], where: object) -> str:
        """The prompt of ``record``; ``where`` names the record in messages (file, index, id)."""
        for name in self.fields:
            if name not in record or record[name] is None:
                known = ", ".join(sorted(str(k) for k in record))
                raise DataError(f"{where}: template field '{name}' is not in the record (fields: {known})")
        return self.text.format_map({name: record[name] for name in self.fields})


__all__ = ["PromptTemplate"]

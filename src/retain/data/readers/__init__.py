"""Format readers: turn files, folders and datasets into :class:`Example` lists.

One module per format (``alpaca``, ``olora``, ``trace``, ``text``, ``hf``, ``superni``), what they share in
``records`` (JSON loading, field checks, the examples of a record list) and the format registry in
``registry``. Every reader returns a :class:`ReadResult` (the examples plus the number of records
it left out, each reported), and every unusable file or record raises a :class:`DataError` whose
message names the file, the record index and id, and the field at fault. The label helpers live
in :mod:`retain.data.labels`.
"""

from __future__ import annotations

from retain.data.readers.alpaca import read_alpaca
from retain.data.readers.hf import read_hf
from retain.data.readers.olora import read_olora
from retain.data.readers.records import MAX_LABELS, DataWarning, ReadResult, load_records
from retain.data.readers.registry import FORMATS, Reader, read_source
from retain.data.readers.superni import read_superni
from retain.data.readers.text import read_text
from retain.data.readers.trace import read_trace

__all__ = [
    "FORMATS",
    "MAX_LABELS",
    "DataWarning",
    "ReadResult",
    "Reader",
    "load_records",
    "read_alpaca",
    "read_hf",
    "read_olora",
    "read_source",
    "read_superni",
    "read_text",
    "read_trace",
]

"""SEEKR: replay with logit and attention distillation on selected heads (see ``method.py``).

``attention_capture`` records the attention maps, ``attention_store`` keeps the teachers' rows,
``head_importance`` picks the heads.
"""

from retain.methods.seekr.method import Seekr, SeekrParams

__all__ = ["Seekr", "SeekrParams"]

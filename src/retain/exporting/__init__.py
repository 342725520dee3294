"""Models out of a run: what the run keeps (:mod:`.task_model`) and ``retain export`` (:mod:`.export_run`).

A run keeps its model in the form plain transformers and PEFT load (``save_pretrained``), so that
nothing outside retain needs to know how a checkpoint names its tensors.
"""

from __future__ import annotations

from retain.exporting.export_run import ExportResult, export_run

__all__ = ["ExportResult", "export_run"]

"""KIF: skill-unit importance, importance-guided fusion, KIF-M's masked replay (see ``method.py``).

``skill_units`` defines the units, ``unit_importance`` tracks them during training, ``unit_fusion``
fuses two models unit by unit, ``masked_replay`` freezes units for KIF-M's replay step, and
``report`` turns the history into the run-folder payload and the report section.
"""

from retain.methods.kif.method import KIF, KIFParams

__all__ = ["KIF", "KIFParams"]

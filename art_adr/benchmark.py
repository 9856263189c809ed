"""Former home of ``art-adr benchmark`` (the paper's Table 1), now :mod:`art_adr.experiments.table1`; every name it
had is still importable here. ``art-adr benchmark`` looks the experiment up in :mod:`art_adr.experiments`."""

from __future__ import annotations

from .experiments.common import (  # noqa: F401
    PlannedRun,
    ensure_trained,
    is_finished,
    log_table,
    mean_std,
    parse_seeds,
    read_history,
    train_planned,
)
from .experiments.table1 import *  # noqa: F403
from .experiments.table1 import __all__ as _table1_names

__all__ = [*_table1_names, "parse_seeds", "train_planned", "log_table", "PlannedRun"]

# their former names (the sweep imported them from here)
_history, _mean_std, _ensure_trained, _is_finished = read_history, mean_std, ensure_trained, is_finished

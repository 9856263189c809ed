"""Former home of ``art-adr sweep`` (ADR's τ × λ grid), now :mod:`art_adr.experiments.sweep`; every name it had is
still importable here. ``art-adr sweep`` looks the experiment up in :mod:`art_adr.experiments`."""

from __future__ import annotations

from .experiments.sweep import *  # noqa: F403
from .experiments.sweep import MIN_TEMPERATURE  # noqa: F401
from .experiments.sweep import __all__ as _sweep_names

__all__ = list(_sweep_names)

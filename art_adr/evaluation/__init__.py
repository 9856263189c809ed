"""Robustness evaluation: the registered attacks (:mod:`art_adr.attacks`: clean, PGD-k, margin = CW-∞, the
trainers' validation attack APGD-CE+T, AutoAttack) over a test set or hold-out, and ADR's appendix-E checks, as one
pipeline. This package defines no attack; importing it imports no torch.

- :mod:`~art_adr.evaluation.testset`: the images of a run (test set or hold-out), first N in order.
- :mod:`~art_adr.evaluation.identity`: which checkpoint was evaluated (file, epoch, SHA-256).
- :mod:`~art_adr.evaluation.cache`: the cache of a run's evaluations, keyed by checkpoint SHA-256 and settings.
- :mod:`~art_adr.evaluation.pipeline`: :func:`evaluate_model`, :func:`evaluate_checkpoint`.
- :mod:`~art_adr.evaluation.report`: the report's schema, Markdown and files.
- :mod:`~art_adr.evaluation.sanity`: accuracy against ε and against PGD steps, and their plots.

``from art_adr.evaluation import X`` works for every public name of these modules (imported on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "art_adr.attacks": ("AttackSpec", "default_eps_step", "format_eps"),
    "art_adr.evaluation.testset": ("SPLITS", "first_n", "load_split", "run_split", "test_set"),
    "art_adr.evaluation.identity": ("checkpoint_info", "file_sha256"),
    "art_adr.evaluation.cache": ("cache_name", "cached_evaluation"),
    "art_adr.evaluation.pipeline": ("evaluate_checkpoint", "evaluate_model"),
    "art_adr.evaluation.report": ("REPORT_FORMAT", "REPORT_VERSION", "SCHEMA", "build_report", "column_names",
                                  "format_table", "validate_report", "write_report"),
    "art_adr.evaluation.sanity": ("DEFAULT_SANITY_EPS", "DEFAULT_SANITY_STEPS", "accuracy_vs_eps",
                                  "accuracy_vs_steps", "default_sanity_eps", "plot_curve", "sanity_checks",
                                  "unbounded_eps", "write_sanity_plots"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [*_WHERE]


def __getattr__(name: str) -> Any:
    """Public names of the submodules, imported on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'art_adr.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

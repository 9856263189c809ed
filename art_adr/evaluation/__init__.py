"""Robustness evaluation: clean, PGD-k, CW-∞, the validation attack and AutoAttack (Croce & Hein 2020), and ADR's
appendix-E checks, as one pipeline with a registry of evaluation attacks.

- :mod:`~art_adr.evaluation.attacks`: the registry, :data:`EVAL_ATTACKS` (one class per attack, registered at its
  definition), and ε parsing; importing it (and this package) imports no torch.
- :mod:`~art_adr.evaluation.flags`: the clean / PGD / CW / validation-attack loops (which points stay correct).
- :mod:`~art_adr.evaluation.autoattack`: AutoAttack through pyautoattack, its versions and the paper's protocol.
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

# The evaluation attacks. Each module registers its attack classes at their definition (@register_attack); a new
# attack is one module of this package and one import line here.
from .attacks import EVAL_ATTACKS, EvalAttack, attack_names, get_eval_attack, register_attack  # noqa: F401

_LAZY = {
    "art_adr.attacks": ("AttackSpec", "default_eps_step", "format_eps"),
    "art_adr.evaluation.attacks": ("attacks_help", "parse_eps", "robust_attack_names"),
    "art_adr.evaluation.flags": ("correct_flags", "pgd_flags", "val_attack_flags"),
    "art_adr.evaluation.autoattack": ("AA_ATTACKS", "PAPER_AA_ITERATIONS", "PAPER_AA_SQUARE_QUERIES",
                                      "autoattack_eval", "autoattack_settings", "capture_autoattack_warnings",
                                      "configure_paper_protocol", "describe_autoattack"),
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

__all__ = ["ATTACKS", "EVAL_ATTACKS", "EvalAttack", "attack_names", "get_eval_attack", "register_attack",
           *_WHERE]


def __getattr__(name: str) -> Any:
    """Public names of the submodules, imported on first use (``ATTACKS``: the registered attacks' names)."""
    if name == "ATTACKS":
        return attack_names()
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'art_adr.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""RobustBench (Croce et al. 2021, robustbench==1.1.1): ``autoattack`` adapter, submission export, leaderboard.

- :mod:`~art_adr.robustbench.upstream`: the upstream ``autoattack`` API over ``pyautoattack``
  (:func:`fill_autoattack_module`); the top-level ``autoattack`` module art-adr installs (``shims/autoattack``) is
  built by it, so a plain ``import robustbench`` works.
- :mod:`~art_adr.robustbench.adapter`: :func:`install_autoattack_adapter` (the same in memory where that module is
  missing), :func:`import_robustbench`, :func:`robustbench_benchmark`.
- :mod:`~art_adr.robustbench.zoo`: our models as model-zoo entries: the Python source that rebuilds them from
  RobustBench's classes (:func:`robustbench_spec`) and their weights under its keys (:func:`robustbench_state_dict`).
- :mod:`~art_adr.robustbench.bundle`: what a submission says: :func:`model_info` (every field of RobustBench's
  schema), :func:`new_model_issue`, the paper fields.
- :mod:`~art_adr.robustbench.local`: art-adr's own architectures as self-contained files of a bundle.
- :mod:`~art_adr.robustbench.standalone`: the torch-only code a bundle carries (``Normalized``, ``load_bundle.py``).
- :mod:`~art_adr.robustbench.evidence`: the numbers of a bundle, from the evaluation report of its checkpoint
  (SHA-256 checked) or marked external, and the AutoAttack log.
- :mod:`~art_adr.robustbench.export`: :func:`export_robustbench`, the files of a bundle, written atomically, for any
  dataset; evaluations on fewer than the 10 000 test images of a leaderboard only with ``allow_partial`` (marked).
- :mod:`~art_adr.robustbench.check`: :func:`check_bundle`, what a maintainer runs on a bundle.
- :mod:`~art_adr.robustbench.leaderboard`: :func:`leaderboard_table`, placement against the shipped snapshot.
"""

from __future__ import annotations

from .adapter import import_robustbench, install_autoattack_adapter, robustbench_benchmark
from .bundle import (
    ADR_PAPER,
    ARCH_NAMES,
    FORBIDDEN_KEY_PARTS,
    NAME_RE,
    PLACEHOLDERS,
    ROBUSTBENCH_DATASETS,
    ROBUSTBENCH_N_EXAMPLES,
    THREAT_MODELS,
    ExportError,
    model_info,
    new_model_issue,
    paper_fields,
)
from .check import BundleCheckError, check_bundle
from .export import export_robustbench, register_exported
from .leaderboard import LEADERBOARD_FILE, format_leaderboard, leaderboard_table, load_leaderboard
from .upstream import AUTOATTACK_SUBMODULES, fill_autoattack_module
from .zoo import model_zoo_entry, robustbench_spec, robustbench_state_dict

__all__ = [
    "ROBUSTBENCH_DATASETS",
    "THREAT_MODELS",
    "ROBUSTBENCH_N_EXAMPLES",
    "ADR_PAPER",
    "PLACEHOLDERS",
    "ARCH_NAMES",
    "NAME_RE",
    "FORBIDDEN_KEY_PARTS",
    "LEADERBOARD_FILE",
    "AUTOATTACK_SUBMODULES",
    "fill_autoattack_module",
    "install_autoattack_adapter",
    "import_robustbench",
    "robustbench_benchmark",
    "robustbench_spec",
    "robustbench_state_dict",
    "export_robustbench",
    "model_info",
    "model_zoo_entry",
    "new_model_issue",
    "paper_fields",
    "register_exported",
    "load_leaderboard",
    "leaderboard_table",
    "format_leaderboard",
    "ExportError",
    "check_bundle",
    "BundleCheckError",
]

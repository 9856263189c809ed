"""Attacks: the PGD maths (:mod:`~art_adr.attacks.core`: :func:`pgd`, :class:`AttackSpec`, :class:`SoftLabelPGD`)
and the one attack registry (:mod:`~art_adr.attacks.base`) that validation and evaluation both run.

The built-in attacks are one module each, registered at their class definition: :mod:`.clean`, :mod:`.pgd_ce`
(``pgd``), :mod:`.margin` (``margin``: PGD on the CW margin, "CW-∞"), :mod:`.apgd` (APGD-CE+T) and
:mod:`.autoattack` (``aa``, AutoAttack and its versions). A new attack is one module of this package and one import
line below (docs/DESIGN.md, "Adding an attack"); ``--val-attack`` takes it when it ``validates``, ``evaluate`` /
``benchmark`` / ``sweep --attacks`` always.

Importing this package (the registry, the built-in attacks' classes) imports no torch; the maths and the batch
loops (:mod:`.core`, :mod:`.batches`) are imported on first use of one of their names.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import (  # noqa: F401
    ATTACKS,
    Attack,
    attack_names,
    attacks_help,
    example_attack_names,
    get_attack,
    register_attack,
    robust_attack_names,
    validating_attack_names,
)

# The built-in attacks, registered in this order (clean first). A new attack: one module, one line here.
# isort: off
from . import clean  # noqa: E402, F401
from . import pgd_ce  # noqa: E402, F401
from . import margin  # noqa: E402, F401
from . import apgd  # noqa: E402, F401
from . import autoattack  # noqa: E402, F401
# isort: on

_LAZY = {
    "art_adr.attacks.core": ("pgd", "attack_loss", "SoftLabelPGD", "AttackSpec", "default_eps_step", "format_eps",
                             "norm_name", "threat_model", "LOSSES", "NORMS"),
    "art_adr.attacks.batches": ("correct_flags", "batched_flags", "percent"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["ATTACKS", "Attack", "register_attack", "attack_names", "robust_attack_names", "validating_attack_names",
           "example_attack_names", "get_attack", "attacks_help", *_WHERE]


def __getattr__(name: str) -> Any:
    """The maths' and loops' public names, imported on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'art_adr.attacks' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

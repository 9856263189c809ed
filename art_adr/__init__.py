"""art-adr: Annealing Self-Distillation Rectification (Wu, Wang & Chen, ICLR 2024) for ART."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "AdversarialTrainerADR",
    "AdversarialTrainerTRADESADR",
    "AdversarialTrainerMARTADR",
    "AdversarialTrainerAWPADR",
    "METHODS",
    "EMATeacher",
    "SoftLabelPGD",
    "cosine_schedule",
    "pgd",
    "rectify_labels",
    "soft_cross_entropy",
    "trades_kl",
    "__version__",
]

_LAZY = {
    "AdversarialTrainerADR": "trainer",
    "AdversarialTrainerTRADESADR": "trainer",
    "AdversarialTrainerMARTADR": "trainer",
    "AdversarialTrainerAWPADR": "trainer",
    "EMATeacher": "ema",
    "METHODS": "methods",
    "SoftLabelPGD": "attacks",
    "pgd": "attacks",
    "cosine_schedule": "functional",
    "rectify_labels": "functional",
    "soft_cross_entropy": "functional",
    "trades_kl": "functional",
}


def __getattr__(name: str) -> Any:
    """Import public names on first use, so ``art-adr --help`` does not pay for torch and ART."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'art_adr' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"art_adr.{module}"), name)

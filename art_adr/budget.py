"""The perturbation budget as numbers and text: ε and α parsed from ``"8/255"``, written back as ``8/255``, and the
one PGD step-size rule. Imports nothing of art-adr (nor torch), so ``config`` and ``attacks`` both build on it."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

__all__ = ["ConfigError", "parse_number", "parse_eps", "format_eps", "default_eps_step"]


class ConfigError(ValueError):
    """An unknown key, a bad value or an unknown recipe (also a number that does not parse)."""


def parse_number(value: Any) -> float:
    """``0.03``, ``"8/255"`` or ``"0.1"`` → float (ε and α are usually written as fractions of 255)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"not a number: {value!r}") from None



def parse_eps(value: str | float) -> float:
    """ε from ``"8/255"``, ``"0.031"`` or a number; ``ValueError`` unless ``0 < ε ≤ 1`` (images in [0, 1])."""
    try:
        eps = parse_number(value)
    except ValueError:
        raise ValueError(f"eps must be a number or a fraction like 8/255, got {value!r}") from None
    if not math.isfinite(eps) or not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] for [0, 1] images, got {value!r}")
    return eps

def format_eps(eps: float) -> str:
    """``8/255``-style text when ε is a whole number of 255ths (RobustBench's ``eps`` field), else decimal."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.6g}"


def default_eps_step(eps: float, steps: int) -> float:
    """The one PGD step-size default of art-adr: ``α = min(ε, 2.5·ε/k)`` for ``k`` steps.

    The rule of Madry et al. (2018; MadryLab's ``robustness`` library): ``k`` steps of ``2.5·ε/k`` can cross the
    ball from any start. For the usual 10 steps it is ε/4 — 2/255 at ε = 8/255, the step of ADR's and TRADES'
    training attacks — and it is used by training (when no ``eps_step`` is given), validation, ``evaluate``,
    ``benchmark``, ``analyze`` and ``sweep``. ``k ≤ 0`` gives ε.

    Example:
        >>> default_eps_step(8 / 255, 10) * 255
        2.0
    """
    return float(eps) if steps <= 0 else min(float(eps), 2.5 * float(eps) / int(steps))

"""The τ/λ schedules of ADR's label rectification (Wu et al. 2024, Eq. 4-5): cosine from start to end over a
*plan* of iterations, or ``"auto"`` (:mod:`art_adr.auto_schedule`), as one object the trainer holds.

The plan spans the iterations of one ``fit`` call (ART semantics: each call trains ``nb_epochs`` more epochs and
anneals over them) unless it is *pinned*: by :meth:`RectificationSchedule.set_plan` (``art-adr train`` pins the
whole run's plan) or by a restored checkpoint whose plan is not finished, which the next call continues, so a
resumed run anneals exactly as the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .auto_schedule import AutoRectification, is_auto
from .checks import number_pair
from .functional import cosine_schedule

__all__ = ["RectificationSchedule"]


@dataclass
class RectificationSchedule:
    """τ and λ as ``(start, end)`` pairs (ignored where ``auto`` sets them), the plan ``(first iteration,
    iterations)`` and whether the next fit call keeps it (``pinned``)."""

    temperature: tuple[float, float]
    interpolation: tuple[float, float]
    auto: AutoRectification = field(default_factory=AutoRectification)
    plan: tuple[int, int] = (0, 0)
    pinned: bool = False

    @classmethod
    def from_arguments(cls, temperature: float | Sequence[float] | str,
                       interpolation: float | Sequence[float] | str) -> RectificationSchedule:
        """The trainer's ``temperature`` / ``interpolation`` arguments, checked (the one place they are):
        τ > 0, λ in [0, 1], or ``"auto"``."""
        auto = AutoRectification(auto_temperature=is_auto(temperature), auto_interpolation=is_auto(interpolation))
        pair_t = (1.0, 1.0) if auto.auto_temperature else number_pair(temperature, "temperature")
        pair_i = (0.0, 0.0) if auto.auto_interpolation else number_pair(interpolation, "interpolation")
        if min(pair_t) <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not all(0.0 <= v <= 1.0 for v in pair_i):
            raise ValueError(f"interpolation must be in [0, 1], got {interpolation}")
        return cls(pair_t, pair_i, auto)

    def set_plan(self, first_step: int, total_steps: int) -> None:
        """Anneal from iteration ``first_step`` over ``total_steps`` iterations; the next fit call keeps it."""
        self.plan = (int(first_step), int(total_steps))
        self.pinned = True

    def begin_call(self, step: int, iterations: int) -> None:
        """A fit call starts at iteration ``step`` for ``iterations``: a new plan over them unless one is pinned
        (a pin lasts one call)."""
        if not self.pinned:
            self.plan = (step, iterations)
        self.pinned = False

    def values(self, step: int) -> tuple[float, float]:
        """``(τ, λ)`` at iteration ``step`` of the plan's cosine schedules (``auto``: the last validation's)."""
        first, total = self.plan
        done = min(max(step - first, 0), max(total, 1))
        temperature = cosine_schedule(self.temperature[0], self.temperature[1], done, max(total, 1))
        interpolation = cosine_schedule(self.interpolation[0], self.interpolation[1], done, max(total, 1))
        temperature = self.auto.temperature if self.auto.auto_temperature else temperature
        interpolation = self.auto.interpolation if self.auto.auto_interpolation else interpolation
        return temperature, interpolation

    def restore(self, plan: Sequence[int] | None, auto: dict[str, Any] | None, step: int) -> None:
        """A checkpoint's plan (continued by the next fit call while unfinished at ``step``) and ``auto`` state."""
        if plan is not None:
            first, total = (int(v) for v in plan)
            self.plan = (first, total)
            self.pinned = step < first + total
        self.auto.load_state_dict(auto)

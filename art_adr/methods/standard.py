"""Standard training: the cross-entropy on the clean inputs, no attack — the non-robust model the paper's §3.2
compares robust models with (Wu et al. 2024, Figs. 1–2: calibration, OOD entropy, clean↔adversarial consistency).
With ADR the target is the rectified label ``P(x)``: self-distillation from the EMA teacher on clean data.

Its training "adversarial" inputs are the clean ones, so the ``train_robust_acc`` of its runs is the training
accuracy on clean inputs; the validation attacks still measure its robustness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ..functional import soft_cross_entropy
from .base import AttackContext, Forward, TrainingMethod, forward_logits

__all__ = ["Standard"]


@dataclass
class Standard(TrainingMethod):
    """Standard training: ``CE(f(x), P(x))`` on the clean batch (``P(x)`` the one-hot label without ADR)."""

    name: ClassVar[str] = "standard"
    label: ClassVar[str] = "Standard"
    title: ClassVar[str] = "Standard training"
    citation: ClassVar[str] = "no attack (the non-robust reference)"
    adversarial: ClassVar[bool] = False

    def attack(self, ctx: AttackContext, x: Tensor, target: Tensor, y: Tensor) -> Tensor:
        return x

    def loss(self, forward: Forward, x: Tensor, x_adv: Tensor, target: Tensor, y: Tensor,
             autocast: Any) -> tuple[Tensor, Tensor]:
        logits = forward_logits(forward, x, autocast)
        return soft_cross_entropy(logits, target), logits

"""MART (Wang et al., ICLR 2020, "Improving adversarial robustness requires revisiting misclassified
examples", Eq. 9): a boosted cross-entropy on adversarial examples plus ``β·KL(f(x) ‖ f(x'))`` weighted by
``1 − p_y(x)``, so that misclassified clean examples weigh more (:func:`art_adr.functional.mart_loss`).

ADR (Wu et al. 2024 say ADR combines with any method; they do not define MART+ADR). The rectified label
``P(x)`` replaces ``y`` where MART uses ``y`` as a *training target*: in the attack's cross-entropy and in the
boosted cross-entropy's first term ``CE(f(x'), P(x))``. The ground-truth ``y`` stays where MART uses it to
decide *what is misclassified*: the runner-up class of the margin term ``−log(1 − max_{k≠y} p_k(x'))`` and the
weight ``1 − p_y(x)``. With ADR off, ``P(x)`` is one-hot ``y`` and this is MART exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ..attacks import pgd
from ..functional import mart_loss
from .base import AttackContext, Forward, TrainingMethod, autocast_context

__all__ = ["MART"]


@dataclass
class MART(TrainingMethod):
    """MART(+ADR): the attack is PGD on the cross-entropy to ``P(x)`` from ``x + 0.001·N(0, 1)`` with BatchNorm in
    eval mode (the MART reference code, ``mart.py``); the loss is ``BCE(f(x'), P(x), y) + β·(1 − p_y(x))·KL``,
    from ``f(x)`` then ``f(x')`` in train mode (the reference's order, which the BN running statistics follow).

    Args:
        beta: β, weight of the misclassification-aware KL term (default 6.0, the MART reference code's CIFAR-10
            setting).
    """

    beta: float = 6.0

    name: ClassVar[str] = "mart"
    label: ClassVar[str] = "MART"
    citation: ClassVar[str] = "Wang et al., ICLR 2020"
    default_bn_mode: ClassVar[str] = "eval"
    loss_forwards: ClassVar[int] = 2

    def validate(self) -> None:
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")

    def attack(self, ctx: AttackContext, x: Tensor, target: Tensor, y: Tensor) -> Tensor:
        return pgd(ctx.forward, x, target, eps=ctx.eps, eps_step=ctx.eps_step, max_iter=ctx.max_iter,
                   norm=ctx.norm, clip_values=ctx.clip_values, random_init="trades", loss="ce", bn_mode=ctx.bn_mode,
                   generator=ctx.generator, autocast=ctx.autocast)

    def loss(self, forward: Forward, x: Tensor, x_adv: Tensor, target: Tensor, y: Tensor,
             autocast: Any) -> tuple[Tensor, Tensor]:
        with autocast_context(autocast):  # clean first, as the reference code: the BN running statistics see
            logits_clean = forward(x)  # the clean batch, then the adversarial one
            logits_adv = forward(x_adv)
        return mart_loss(logits_adv, logits_clean, target, y, self.beta), logits_adv

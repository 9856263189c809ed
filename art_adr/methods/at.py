"""PGD adversarial training (Madry et al., ICLR 2018, "Towards deep learning models resistant to adversarial
attacks", Eq. 2.1): minimise the cross-entropy on PGD examples that maximise it. With ADR the target is the
rectified label ``P(x)`` in both the attack and the loss (Wu et al. 2024, Algorithm 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ..attacks import pgd
from ..functional import soft_cross_entropy
from .base import AttackContext, Forward, TrainingMethod, forward_logits

__all__ = ["AT"]


@dataclass
class AT(TrainingMethod):
    """PGD-AT: ``CE(f(x'), P(x))`` with ``x' = PGD_CE(x, P(x))`` from a uniform start in the ε-ball; the
    attack runs in BatchNorm train mode, as the ADR authors' ``advTrainer.py`` does."""

    name: ClassVar[str] = "at"
    label: ClassVar[str] = "AT"
    title: ClassVar[str] = "PGD-AT"
    citation: ClassVar[str] = "Madry et al., ICLR 2018"
    default_bn_mode: ClassVar[str] = "train"

    def attack(self, ctx: AttackContext, x: Tensor, target: Tensor, y: Tensor) -> Tensor:
        return pgd(ctx.forward, x, target, eps=ctx.eps, eps_step=ctx.eps_step, max_iter=ctx.max_iter,
                   norm=ctx.norm, clip_values=ctx.clip_values, random_init=ctx.random_init, loss="ce",
                   bn_mode=ctx.bn_mode, generator=ctx.generator, autocast=ctx.autocast)

    def loss(self, forward: Forward, x: Tensor, x_adv: Tensor, target: Tensor, y: Tensor,
             autocast: Any) -> tuple[Tensor, Tensor]:
        logits_adv = forward_logits(forward, x_adv, autocast)
        return soft_cross_entropy(logits_adv, target), logits_adv

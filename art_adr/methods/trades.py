"""TRADES (Zhang et al., ICML 2019, "Theoretically principled trade-off between robustness and accuracy",
Eq. 5): ``CE(f(x), y) + β·KL(f(x) ‖ f(x'))`` with ``x'`` maximising the KL term. With ADR the rectified label
``P(x)`` replaces ``y`` in the clean cross-entropy term only (Wu et al. 2024, §4.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..attacks import pgd
from ..functional import soft_cross_entropy, trades_kl
from ..modes import bn_mode_flag, module_mode
from .base import AttackContext, Forward, TrainingMethod, autocast_context

__all__ = ["TRADES", "TRADES_VARIANTS"]

TRADES_VARIANTS = ("official", "reference")


@dataclass
class TRADES(TrainingMethod):
    """TRADES(+ADR).

    Args:
        beta: β, weight of the KL robustness term (default 6.0, Zhang et al. and the ADR authors).
        trades_variant: ``"official"`` (default) follows the ADR authors' code (``advTrainer.py``,
            ``trades_attack.py``): the attack runs with BatchNorm in **train** mode from ``x + 0.001·U[0, 1)``,
            and the loss comes from **one forward of the concatenated batch** ``f(cat[x, x'])`` (one BatchNorm
            batch of 2N). ``"reference"`` follows the TRADES reference code (``trades.py``): eval-mode attack
            from ``x + 0.001·N(0, 1)`` and its three train-mode forwards ``f(x)`` (the CE term), ``f(x')`` and
            ``f(x)`` again (the KL target), so the BN running statistics see clean, adversarial, clean. (Both
            clip the start to the valid box; the authors' first attack forward sees it unclipped.)
    """

    beta: float = 6.0
    trades_variant: str = "official"

    name: ClassVar[str] = "trades"
    label: ClassVar[str] = "TRADES"
    citation: ClassVar[str] = "Zhang et al., ICML 2019"
    loss_forwards: ClassVar[int] = 2
    attack_setup_forwards: ClassVar[int] = 1

    def validate(self) -> None:
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.trades_variant not in TRADES_VARIANTS:
            raise ValueError(f"trades_variant must be one of {TRADES_VARIANTS}, got {self.trades_variant!r}")

    @property
    def default_bn_mode(self) -> str:  # type: ignore[override]
        return "train" if self.trades_variant == "official" else "eval"

    def attack(self, ctx: AttackContext, x: Tensor, target: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad(), module_mode(ctx.model, bn_mode_flag(ctx.bn_mode, True)), ctx.autocast_ctx():
            clean_logits = ctx.forward(x).float()
        start = "trades-uniform" if self.trades_variant == "official" else "trades"
        return pgd(ctx.forward, x, clean_logits, eps=ctx.eps, eps_step=ctx.eps_step, max_iter=ctx.max_iter,
                   norm=ctx.norm, clip_values=ctx.clip_values, random_init=start, loss="kl", bn_mode=ctx.bn_mode,
                   generator=ctx.generator, autocast=ctx.autocast)

    def loss(self, forward: Forward, x: Tensor, x_adv: Tensor, target: Tensor, y: Tensor,
             autocast: Any) -> tuple[Tensor, Tensor]:
        with autocast_context(autocast):
            if self.trades_variant == "official":
                both = torch.cat([x, x_adv])
                if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
                    both = both.contiguous(memory_format=torch.channels_last)
                logits_clean, logits_adv = forward(both).split([x.shape[0], x_adv.shape[0]])
            else:  # the reference's forwards: f(x) for the CE term, f(x') and f(x) again for the KL term
                logits_clean = forward(x)
                logits_adv = forward(x_adv)
                logits_kl = forward(x)
        kl_target = logits_clean if self.trades_variant == "official" else logits_kl
        loss = soft_cross_entropy(logits_clean, target) + self.beta * trades_kl(logits_adv, kl_target)
        return loss, logits_adv

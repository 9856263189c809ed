"""``pgd``: PGD-k on the cross-entropy from a uniform random start (Madry et al. 2018) — the trainers' former
validation attack and the evaluation's PGD column."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .base import Attack, Forward, register_attack

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from .core import AttackSpec


@register_attack
@dataclass(frozen=True)
class PGD(Attack):
    """PGD-k on the loss of :meth:`attack_spec` (here the cross-entropy) at the spec's norm, ε, step, restarts."""

    name: ClassVar[str] = "pgd"
    label: ClassVar[str] = "PGD"
    help: ClassVar[str] = "PGD-k on the cross-entropy"
    validates: ClassVar[bool] = True
    gives_examples: ClassVar[bool] = True

    def attack_spec(self, spec: AttackSpec) -> AttackSpec:
        """The PGD attack that runs against ``spec``: ``spec`` on the cross-entropy."""
        return spec if spec.loss == "ce" else spec.replace(loss="ce")

    def describe(self, spec: AttackSpec) -> str:
        return f"{self.label}-{self.attack_spec(spec).steps}"

    def details(self, spec: AttackSpec) -> str:
        return self.attack_spec(spec).describe()

    def column(self, settings: Mapping[str, Any]) -> str:
        return f"PGD-{settings['pgd_steps']}"

    def flags(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, *, clip_values: tuple[float, float],
              generator: torch.Generator, autocast: Callable[[], Any] | None = None) -> Tensor:
        from .batches import correct

        if self.attack_spec(spec).steps <= 0:
            return correct(forward, x, y, autocast)
        x_adv = self.examples(forward, x, y, spec, clip_values=clip_values, generator=generator, autocast=autocast)
        return correct(forward, x_adv, y, autocast)

    def examples(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, *,
                 clip_values: tuple[float, float], generator: torch.Generator,
                 autocast: Callable[[], Any] | None = None) -> Tensor:
        """The PGD iterate (the worst of the restarts), in the spec's norm; BN modes as the caller set them."""
        from .core import pgd

        s = self.attack_spec(spec)
        return pgd(forward, x, y, eps=s.eps, eps_step=s.step_size, max_iter=s.steps, norm=s.norm,
                   clip_values=clip_values, restarts=s.restarts, loss=s.loss, bn_mode=None, generator=generator,
                   autocast=autocast)

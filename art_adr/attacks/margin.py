"""``margin``: PGD-k on the CW margin loss ``max_{j≠y} z_j − z_y`` (Carlini & Wagner 2017; "CW-∞"), invariant to
the softmax temperature that blunts cross-entropy attacks on ADR's soft outputs. ``cw_steps`` iterations (default
the spec's ``k``; ``art-adr evaluate --cw-max-iter``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .base import register_attack
from .pgd_ce import PGD

if TYPE_CHECKING:
    from .core import AttackSpec


@register_attack
@dataclass(frozen=True)
class Margin(PGD):
    """PGD on the CW margin loss (logit of the best wrong class minus the true one), ``cw_steps`` iterations."""

    cw_steps: int | None = None
    name: ClassVar[str] = "margin"
    label: ClassVar[str] = "Margin-PGD"
    help: ClassVar[str] = "PGD-k on the CW margin, CW-∞"
    validates: ClassVar[bool] = True

    def attack_spec(self, spec: AttackSpec) -> AttackSpec:
        """The PGD ``spec`` on the CW margin, at ``cw_steps`` iterations (default ``spec.steps``)."""
        return spec.replace(loss="cw", steps=int(self.cw_steps or spec.steps))

    def column(self, settings: Mapping[str, Any]) -> str:
        return f"CW-{'∞' if settings.get('norm', 'Linf') == 'Linf' else 'L2'}-{settings['cw_steps']}"

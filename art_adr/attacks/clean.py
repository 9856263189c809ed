"""``clean``: no attack — is each image classified correctly? Evaluation always runs it first: its flags are the
points the other attacks attack."""

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
class Clean(Attack):
    """No attack: the argmax of the clean logits."""

    name: ClassVar[str] = "clean"
    label: ClassVar[str] = "Clean"

    def forwards(self, spec: AttackSpec) -> int:
        return 1

    def describe(self, spec: AttackSpec) -> str:
        return "clean"

    def column(self, settings: Mapping[str, Any]) -> str:
        return "Clean"

    def flags(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, *, clip_values: tuple[float, float],
              generator: torch.Generator, autocast: Callable[[], Any] | None = None) -> Tensor:
        from .batches import correct

        return correct(forward, x, y, autocast)

    def run(self, model: Any, x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int = 0, batch_size: int = 256,
            device: Any = "cpu", start_flags: Tensor | None = None, progress: bool = False) -> Tensor:
        from .batches import correct_flags

        return correct_flags(model, x, y, batch_size=batch_size, device=device, progress=progress)

    def record(self, entry: dict[str, Any], spec: AttackSpec, result: Tensor | dict[str, Any]) -> None:
        pass

"""``apgd``: pyautoattack's APGD-CE then APGD-T (targeted DLR; Croce & Hein 2020) with ``k`` iterations and
``targets`` target classes, APGD-T on the points APGD-CE left robust — AutoAttack's first two attacks, shortened;
the trainers' default validation attack."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..defaults import VAL_TARGETS
from .base import Attack, Forward, register_attack

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from .core import AttackSpec


@functools.cache
def _float32_class() -> type:
    """``Float32(forward, autocast)``: a module whose forward returns float32 logits under an optional autocast
    (pyautoattack computes in float32); defined on first use, so importing this module does not import torch."""
    import torch

    class Float32(torch.nn.Module):
        def __init__(self, forward: Forward, autocast: Callable[[], Any] | None) -> None:
            super().__init__()
            self.forward_fn, self.autocast = forward, autocast or contextlib.nullcontext

        def forward(self, x: Tensor) -> Tensor:
            with self.autocast():
                return self.forward_fn(x).float()

    return Float32


@register_attack
@dataclass(frozen=True)
class APGD(Attack):
    """pyautoattack's APGD-CE (``k`` iterations) then APGD-T (``k`` iterations × ``targets`` classes) on the
    points still robust; seeded from the generator, the global torch RNG left as it was."""

    targets: int = VAL_TARGETS
    name: ClassVar[str] = "apgd"
    label: ClassVar[str] = "APGD-CE+T"
    help: ClassVar[str] = (f"the trainers' default validation attack: APGD-CE then APGD-T, k iterations, "
                           f"{VAL_TARGETS} targets")
    validates: ClassVar[bool] = True
    gives_examples: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.targets, bool) or not isinstance(self.targets, int) or self.targets < 1:
            raise ValueError(f"val_targets must be an integer >= 1, got {self.targets!r}")

    def flags(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, *, clip_values: tuple[float, float],
              generator: torch.Generator, autocast: Callable[[], Any] | None = None) -> Tensor:
        return self._attack(forward, x, y, spec, clip_values, generator, autocast, examples=False)[0]

    def examples(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, *,
                 clip_values: tuple[float, float], generator: torch.Generator,
                 autocast: Callable[[], Any] | None = None) -> Tensor:
        """pyautoattack's examples: a point APGD-CE or APGD-T misclassifies is returned as found; one that neither
        flips is returned unperturbed (as AutoAttack returns it)."""
        return self._attack(forward, x, y, spec, clip_values, generator, autocast, examples=True)[1]

    def _attack(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, clip_values: tuple[float, float],
                generator: torch.Generator, autocast: Callable[[], Any] | None,
                examples: bool) -> tuple[Tensor, Tensor | None]:
        """``(flags, examples)``: APGD-CE, then APGD-T on the points still correct (the examples only when asked
        for: validation needs the flags alone)."""
        import torch
        from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

        from .batches import correct
        from .core import threat_model

        if tuple(float(v) for v in clip_values) != (0.0, 1.0):
            raise ValueError(f"val_attack='apgd' needs clip_values (0, 1) (pyautoattack clips to [0, 1]), got "
                             f"{clip_values}")
        model = _float32_class()(forward, autocast)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
        common = dict(norm=threat_model(spec.norm), eps=spec.eps, n_iter=max(spec.steps, 1), n_restarts=1,
                      seed=seed, device=x.device)
        flags, found = correct(model, x, y), x.clone() if examples else None
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            for attack in (APGDAttack(model, loss="ce", **common),
                           APGDAttack_targeted(model, n_target_classes=self._targets(forward, x), **common)):
                idx = torch.nonzero(flags).flatten()
                if len(idx) == 0:
                    break
                # pyautoattack views gradients as flat rows: give it standard-layout (not channels_last) images
                x_adv = attack.perturb(x[idx].float().contiguous(memory_format=torch.contiguous_format),
                                       y[idx]).to(x.dtype)
                flags[idx] = correct(model, x_adv, y[idx])
                if found is not None:
                    found[idx] = x_adv
        return flags, found

    def _targets(self, forward: Forward, x: Tensor) -> int:
        import torch

        with torch.no_grad():
            classes = int(forward(x[:1]).shape[1])
        return max(1, min(int(self.targets), classes - 1))

    def forwards(self, spec: AttackSpec) -> int:
        return self._scoring_forwards + (spec.steps + 1) * (1 + int(self.targets))

    def forward_equivalents(self, spec: AttackSpec) -> float:
        return self._scoring_forwards + 3.0 * (spec.steps + 1) * (1 + int(self.targets))

    # forwards without backward: the clean check, and per attack pyautoattack's own check and the scoring after it
    _scoring_forwards: ClassVar[int] = 5

    def describe(self, spec: AttackSpec) -> str:
        return f"APGD-CE-{spec.steps}+APGD-T-{spec.steps}×{self.targets}"

    def column(self, settings: Mapping[str, Any]) -> str:
        return f"APGD-CE+T-{settings['pgd_steps']}"

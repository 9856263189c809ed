"""Validation attacks: what the trainers' per-epoch hold-out robust accuracy is measured with — and so what
``best.pt``, the benchmark's "best" rows and the sweep's score select by.

ADR's soft, low-confidence outputs blunt cross-entropy attacks (a flat softmax gives small CE gradients), so
PGD-k on CE flatters ADR models: on the Fashion-MNIST study ADR models lost 6.7–9.5 pp from PGD-10 to
AutoAttack, PGD-AT 2.7 pp. The attacks here are the candidates for a validation signal that ranks checkpoints as
AutoAttack does, at PGD-10-like cost (``benchmarks/val_agreement.py`` measures the agreement):

- ``pgd``: PGD-k on the cross-entropy (Madry et al. 2018) — art-adr's former validation.
- ``margin``: PGD-k on the CW margin loss ``max_{j≠y} z_j − z_y`` (Carlini & Wagner 2017; "CW-∞"), which is
  invariant to the softmax temperature that blunts CE.
- ``apgd``: pyautoattack's own APGD-CE then APGD-T (targeted DLR; Croce & Hein 2020) with ``k`` iterations and
  ``targets`` target classes, APGD-T on the points APGD-CE left robust — AutoAttack's first two attacks, shortened.

Each attack is a small class registered at its definition (:data:`VAL_ATTACKS`); its ``flags`` runs it on a batch
and returns which points stay correct. Metric names in the history: ``<name>_acc`` (student),
``teacher_<name>_acc``. Importing this module does not import torch (the attacks do when they run), so the command
line's ``--val-attack`` choices are :data:`VAL_ATTACK_NAMES`: a new attack is one class here, registered.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .defaults import VAL_TARGETS

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from .attacks import AttackSpec

__all__ = ["VAL_ATTACKS", "VAL_ATTACK_NAMES", "ValidationAttack", "get_val_attack", "metric_name",
           "best_metric_choices", "resolve_best_metric"]

VAL_ATTACKS: dict[str, type[ValidationAttack]] = {}
Forward = Callable[["Tensor"], "Tensor"]


def register(cls: type[ValidationAttack]) -> type[ValidationAttack]:
    """Class decorator: add a validation attack to :data:`VAL_ATTACKS` under its ``name``."""
    VAL_ATTACKS[cls.name] = cls
    return cls


@dataclass(frozen=True)
class ValidationAttack:
    """A validation attack: ``flags(forward, x, y, spec, ...)`` → bool ``[N]``, True where ``x`` stays correct.

    ``spec`` is the trainer's validation :class:`AttackSpec` (norm, ε, step, ``k`` = ``eval_max_iter``).
    ``forwards(spec)`` is the worst-case cost per image in forward+backward passes (a clean forward counts 1).
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    targets: int = VAL_TARGETS

    def flags(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, *, clip_values: tuple[float, float],
              generator: torch.Generator, autocast: Callable[[], Any] | None = None) -> Tensor:
        raise NotImplementedError

    def forwards(self, spec: AttackSpec) -> int:
        return spec.steps + 1

    def describe(self, spec: AttackSpec) -> str:
        return f"{self.label}-{spec.steps}"


def _correct(forward: Forward, x: Tensor, y: Tensor, autocast: Callable[[], Any] | None) -> Tensor:
    import torch

    with torch.no_grad(), (autocast or contextlib.nullcontext)():
        return forward(x).argmax(1) == y


class _PGDLoss(ValidationAttack):
    loss: ClassVar[str] = "ce"

    def flags(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, *, clip_values: tuple[float, float],
              generator: torch.Generator, autocast: Callable[[], Any] | None = None) -> Tensor:
        from .attacks import pgd

        x_adv = pgd(forward, x, y, eps=spec.eps, eps_step=spec.step_size, max_iter=spec.steps, norm=spec.norm,
                    clip_values=clip_values, restarts=spec.restarts, loss=self.loss, bn_mode=None,
                    generator=generator, autocast=autocast)
        return _correct(forward, x_adv, y, autocast)


@register
class PGD(_PGDLoss):
    """PGD-k on the cross-entropy from a uniform random start (the former validation)."""

    name: ClassVar[str] = "pgd"
    label: ClassVar[str] = "PGD"
    loss: ClassVar[str] = "ce"


@register
class Margin(_PGDLoss):
    """PGD-k on the CW margin loss (logit of the best wrong class minus the true one)."""

    name: ClassVar[str] = "margin"
    label: ClassVar[str] = "Margin-PGD"
    loss: ClassVar[str] = "cw"


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


@register
class APGD(ValidationAttack):
    """pyautoattack's APGD-CE (``k`` iterations) then APGD-T (``k`` iterations × ``targets`` classes) on the
    points still robust; seeded from the validation generator, the global torch RNG left as it was."""

    name: ClassVar[str] = "apgd"
    label: ClassVar[str] = "APGD-CE+T"

    def flags(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, *, clip_values: tuple[float, float],
              generator: torch.Generator, autocast: Callable[[], Any] | None = None) -> Tensor:
        import torch
        from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

        from .attacks import threat_model

        if tuple(float(v) for v in clip_values) != (0.0, 1.0):
            raise ValueError(f"val_attack='apgd' needs clip_values (0, 1) (pyautoattack clips to [0, 1]), got "
                             f"{clip_values}")
        model = _float32_class()(forward, autocast)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
        common = dict(norm=threat_model(spec.norm), eps=spec.eps, n_iter=max(spec.steps, 1), n_restarts=1,
                      seed=seed, device=x.device)
        flags = _correct(model, x, y, None)
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            for attack in (APGDAttack(model, loss="ce", **common),
                           APGDAttack_targeted(model, n_target_classes=self._targets(forward, x), **common)):
                idx = torch.nonzero(flags).flatten()
                if len(idx) == 0:
                    break
                # pyautoattack views gradients as flat rows: give it standard-layout (not channels_last) images
                x_adv = attack.perturb(x[idx].float().contiguous(memory_format=torch.contiguous_format), y[idx])
                flags[idx] = _correct(model, x_adv.to(x.dtype), y[idx], None)
        return flags

    def _targets(self, forward: Forward, x: Tensor) -> int:
        import torch

        with torch.no_grad():
            classes = int(forward(x[:1]).shape[1])
        return max(1, min(int(self.targets), classes - 1))

    def forwards(self, spec: AttackSpec) -> int:
        return 1 + (spec.steps + 1) * (1 + int(self.targets))

    def describe(self, spec: AttackSpec) -> str:
        return f"APGD-CE-{spec.steps}+APGD-T-{spec.steps}×{self.targets}"


VAL_ATTACK_NAMES: tuple[str, ...] = tuple(VAL_ATTACKS)


def get_val_attack(name: str, targets: int = VAL_TARGETS) -> ValidationAttack:
    """The validation attack called ``name`` (``ValueError`` listing the choices otherwise)."""
    if name not in VAL_ATTACKS:
        raise ValueError(f"val_attack must be one of {', '.join(VAL_ATTACKS)}, got {name!r}")
    if isinstance(targets, bool) or not isinstance(targets, int) or targets < 1:
        raise ValueError(f"val_targets must be an integer >= 1, got {targets!r}")
    return VAL_ATTACKS[name](targets=targets)


def metric_name(attack: str, model: str = "student") -> str:
    """History key of ``attack``'s accuracy for ``model``: ``"apgd_acc"``, ``"teacher_margin_acc"``, ..."""
    return ("teacher_" if model == "teacher" else "") + f"{attack}_acc"


# ``best_metric`` names a history key, or — the default — the validation attack's accuracy of the student
# ("robust_acc") or of the EMA teacher ("teacher_robust_acc", the +WA model), whatever ``val_attack`` is.
SYMBOLIC_BEST = {"robust_acc": "student", "teacher_robust_acc": "teacher"}


def best_metric_choices(val_attack: str) -> tuple[str, ...]:
    """Every value ``best_metric`` may take for a trainer validating with ``val_attack``."""
    kinds = ["clean", "pgd"] + ([val_attack] if val_attack != "pgd" else [])
    return tuple(SYMBOLIC_BEST) + tuple(metric_name(k, m) for m in ("student", "teacher") for k in kinds)


def resolve_best_metric(best_metric: str, val_attack: str) -> str:
    """The history key ``best_metric`` selects by (``"robust_acc"`` → ``"<val_attack>_acc"``); ``ValueError``
    for a metric the validation does not compute."""
    choices = best_metric_choices(val_attack)
    if best_metric not in choices:
        raise ValueError(f"best_metric must be one of {', '.join(choices)} (with val_attack={val_attack!r}), got "
                         f"{best_metric!r}")
    if best_metric in SYMBOLIC_BEST:
        return metric_name(val_attack, SYMBOLIC_BEST[best_metric])
    return best_metric

"""What the trainers measure on a hold-out every ``eval_every`` epochs: clean accuracy, PGD-k and the selecting
attack (:mod:`art_adr.attacks`, ``val_attack``) of the student and the EMA teacher, as one object the trainer holds.

Every number is a hard-label accuracy in eval mode with fixed seeds (PGD: 12345; the selecting attack its own
stream, 54321; the automatic τ's teacher PGD 777), so a validation is reproducible and independent of training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attacks import Attack, AttackSpec, get_attack, pgd
from .auto_schedule import teacher_adversarial_logits
from .distributed import all_reduce_sum
from .loader import finish_batch
from .modes import module_mode
from .precision import Precision
from .validation import full_plan, metric_name, resolve_best_metric

__all__ = ["VALIDATIONS", "ValidatedModel", "Validator", "validation_settings"]

# what the validation of every epoch measures (the trainer's validation=): robust (default) or clean only
VALIDATIONS = ("robust", "clean")

Forward = Callable[[Tensor], Tensor]


def validation_settings(validation: str, val_attack: str, val_targets: int, best_metric: str,
                        auto_active: bool) -> tuple[Attack, str]:
    """The selecting attack and the resolved ``best_metric`` key, checked against ``validation``."""
    if validation not in VALIDATIONS:
        raise ValueError(f"validation must be one of {', '.join(VALIDATIONS)}, got {validation!r}")
    attack = get_attack(val_attack, validates=True, targets=val_targets)
    if validation == "robust":
        return attack, resolve_best_metric(best_metric, val_attack)
    if auto_active:
        raise ValueError("validation='clean' computes no robust accuracy: temperature/interpolation='auto' "
                         "are set from the validation attack; use validation='robust'")
    metric = {"robust_acc": "clean_acc", "teacher_robust_acc": "teacher_clean_acc"}.get(best_metric, best_metric)
    if metric not in ("clean_acc", "teacher_clean_acc"):
        raise ValueError(f"best_metric={best_metric!r} needs the robust validation; with validation='clean' "
                         "it is clean_acc or teacher_clean_acc (robust_acc selects clean_acc)")
    return attack, metric


@dataclass(frozen=True)
class ValidatedModel:
    """One validated model: its (possibly compiled) forward, the module whose mode is switched, and the eager
    forward the selecting attack runs (its forwards see the still-robust subsets: data-dependent shapes)."""

    forward: Forward
    module: nn.Module
    eager: Forward


@dataclass
class Validator:
    """The per-epoch validation of ``models`` (``{"student": ..., "teacher": ...}``)."""

    models: dict[str, ValidatedModel]
    attack: Attack
    spec: AttackSpec
    mode: str
    clip_values: tuple[float, float]
    precision: Precision
    device: torch.device
    batch_size: int | None = None
    channels_last: bool = False
    rank: int = 0
    world_size: int = 1
    mark_step: Callable[[], None] = lambda: None

    @property
    def robust(self) -> bool:
        return self.mode != "clean"

    @torch.no_grad()
    def _correct(self, model: ValidatedModel, x: Tensor, y: Tensor, adversarial: bool,
                 generator: torch.Generator) -> Tensor:
        spec = self.spec
        self.mark_step()
        with module_mode(model.module, False):
            if adversarial:
                x = pgd(model.forward, x, y, eps=spec.eps, eps_step=spec.step_size, max_iter=spec.steps,
                        norm=spec.norm, clip_values=self.clip_values, restarts=spec.restarts, loss=spec.loss,
                        bn_mode="eval", generator=generator, autocast=self.precision.autocast_factory)
            with self.precision.autocast():
                return (model.forward(x).argmax(1) == y).sum()

    def _attack_correct(self, model: ValidatedModel, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """How many of ``(x, y)`` stay correct under the selecting attack (eval mode)."""
        with module_mode(model.module, False):
            return self.attack.flags(model.eager, x, y, self.spec, clip_values=self.clip_values,
                                     generator=generator, autocast=self.precision.autocast_factory).sum()

    def evaluate(self, xs: Tensor, ys: Tensor, batch_size: int | None = None, adversarial: bool = True,
                 progress: str | None = None, plan: dict[str, tuple[str, ...]] | None = None) -> dict[str, float]:
        """Accuracies of every model on device tensors ``(xs, ys)`` (``progress``: a tqdm bar's text), keyed as
        the history's columns (``clean_acc``, ``teacher_pgd_acc``, ``apgd_acc``, ...); DDP ranks share the work.
        ``plan`` (model → kinds, :func:`art_adr.validation.selective_plan`) measures only those; by default every
        model, clean, PGD-k and the selecting attack (``adversarial``) or clean only."""
        bs = batch_size or self.batch_size or 256
        gen = torch.Generator(device=self.device)
        gen.manual_seed(12345)
        val_gen = torch.Generator(device=self.device)  # its own stream: PGD's starts are those of before
        val_gen.manual_seed(54321)
        plan = plan or self.full_plan(adversarial)
        counts = {metric_name(k, m): torch.zeros((), device=self.device, dtype=torch.long)
                  for m, kinds in plan.items() for k in kinds}
        n = xs.shape[0]
        for i in _batches(range(self.rank * bs, n, bs * self.world_size), progress):
            xb = finish_batch(xs[i : i + bs], channels_last=self.channels_last)
            yb = ys[i : i + bs]
            for name, kinds in plan.items():
                model = self.models[name]
                for kind in kinds:
                    counts[metric_name(kind, name)] += (
                        self._correct(model, xb, yb, kind == "pgd", gen) if kind in ("clean", "pgd") else
                        self._attack_correct(model, xb, yb, val_gen))
        totals = all_reduce_sum(torch.stack(list(counts.values())), self.world_size)
        return {k: float(v.item()) / n for k, v in zip(counts, totals)}

    def full_plan(self, adversarial: bool = True) -> dict[str, tuple[str, ...]]:
        """Every model: clean, and with ``adversarial`` PGD-k and the selecting attack (when it is not PGD)."""
        return full_plan(self.attack.name, adversarial, tuple(self.models))

    def teacher_adversarial_logits(self, xs: Tensor, ys: Tensor) -> Tensor:
        """The teacher's logits on PGD-k examples of the hold-out (seed 777): what the automatic τ is fit on."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(777)
        spec, teacher = self.spec, self.models["teacher"]

        def attack(x: Tensor, y: Tensor) -> Tensor:
            x = finish_batch(x, channels_last=self.channels_last)
            with module_mode(teacher.module, False):
                return pgd(teacher.eager, x, y, eps=spec.eps, eps_step=spec.step_size, max_iter=spec.steps,
                           norm=spec.norm, clip_values=self.clip_values, bn_mode="eval", generator=gen,
                           autocast=self.precision.autocast_factory)

        with self.precision.autocast():
            return teacher_adversarial_logits(teacher.eager, attack, xs, ys, self.batch_size or 256)


def _batches(starts: range, progress: str | None) -> Iterable[int]:
    """The batch starts, through a tqdm bar (stderr, closed when done) when ``progress`` names one."""
    if not progress:
        return starts
    from tqdm.auto import tqdm

    return tqdm(starts, desc=progress, unit="batch", leave=False, dynamic_ncols=True)

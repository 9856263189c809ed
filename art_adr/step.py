"""One ADR iteration (Wu et al. 2024, Algorithm 1's loop body) and the forwards it runs, as objects the trainer
holds: the EMA teacher rectifies the labels, the training method (:mod:`art_adr.methods`) attacks and computes its
loss, AWP (:mod:`art_adr.awp`) optionally perturbs the weights, mixed precision (:mod:`art_adr.precision`) scales
the step, and the teacher takes one EMA step."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .awp import AWP, awp_backward
from .compiling import Compiled, uses_cudagraphs
from .distributed import shard_weight, wrap_ddp
from .ema import EMATeacher
from .functional import ema_warmup_decay, one_hot, rectify_labels
from .methods import AttackContext, TrainingMethod
from .modes import module_mode, set_bn_momentum
from .precision import Precision
from .rectification import RectificationSchedule

__all__ = ["AdrStep", "Forwards"]

Forward = Callable[[Tensor], Tensor]


@dataclass
class Forwards:
    """The forwards of student and teacher: eager (``student``: the classifier's, normalising; ``teacher``; and
    ``train_eager``, DDP-wrapped under ``torchrun``) and, when ``mode`` compiles, their compiled versions
    (``local``: this process — the attack, AWP's proxy gradient, validation; ``train``: the one whose gradient is
    applied; ``teacher_compiled``), else the eager ones."""

    student: Forward
    teacher: Forward
    train_eager: Forward
    local: Forward
    train: Forward
    teacher_compiled: Forward
    mode: str | None
    device: torch.device
    compiled: dict[str, Compiled] = field(default_factory=dict)

    @classmethod
    def build(cls, student: Forward, teacher: Forward, mode: str | None, device: torch.device,
              world_size: int) -> Forwards:
        compiled: dict[str, Compiled] = {}

        def compile_as(fn: Forward, name: str) -> Forward:
            if mode is None:
                return fn
            compiled[name] = Compiled(fn, mode, name)
            return compiled[name]

        train_eager = wrap_ddp(student, device) if world_size > 1 else student
        local = compile_as(student, "student forward")
        train = compile_as(train_eager, "DDP student forward") if world_size > 1 else local
        return cls(student, teacher, train_eager, local, train, compile_as(teacher, "teacher forward"), mode,
                   device, compiled)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per compiled function: the mode and the graphs and compilations so far (``{}`` when not compiled)."""
        return {name: c.stats() for name, c in self.compiled.items()}

    def mark_step(self) -> None:
        """With CUDA graphs, a new step begins: outputs of the last one may be overwritten."""
        if uses_cudagraphs(self.mode) and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()


@dataclass
class AdrStep:
    """One training iteration on a device batch (:meth:`run`), counting the iterations (``step``)."""

    method: TrainingMethod
    student: nn.Module
    teacher: EMATeacher
    optimizer: torch.optim.Optimizer
    precision: Precision
    forwards: Forwards
    rectification: RectificationSchedule
    attack_ctx: AttackContext
    awp: AWP
    adr: bool
    nb_classes: int
    ema_decay: float
    ema_warmup: bool
    awp_rho: float
    awp_warmup: int
    bn_momentum: float | None
    device: torch.device
    world_size: int
    step: int = 0
    bn_momentum_now: float | None = None
    eager_attack_ctx: AttackContext = field(init=False)

    def __post_init__(self) -> None:
        self.eager_attack_ctx = dataclasses.replace(self.attack_ctx, forward=self.forwards.student)

    def targets(self, x: Tensor, y: Tensor) -> Tensor:
        """ADR rectified labels from the teacher on the clean batch (or one-hot when ``adr=False``)."""
        if not self.adr:
            return one_hot(y, self.nb_classes)
        temperature, interpolation = self.rectification.values(self.step)
        with torch.no_grad(), self.precision.autocast():
            teacher_logits = self.forwards.teacher_compiled(x)
        return rectify_labels(teacher_logits, y, temperature, interpolation)

    def attack(self, x: Tensor, target: Tensor, y: Tensor | None = None) -> Tensor:
        """The method's training attack on ``x`` against ``target`` (hard labels ``y`` default to its argmax)."""
        ctx = self.eager_attack_ctx if self.eager() else self.attack_ctx
        return self.method.attack(ctx, x, target, target.argmax(1) if y is None else y)

    def eager(self) -> bool:
        """The first iteration of a ``bn_momentum`` run (BatchNorm momentum 1.0) runs eager, so the compiled
        forwards only ever see the one momentum of every later iteration (no recompile when it changes)."""
        return self.forwards.mode is not None and self.bn_momentum is not None and self.step == 0

    def apply_bn_momentum(self) -> None:
        """BatchNorm momentum 1.0 at iteration 0, then ``bn_momentum`` (authors' ``set_bn_momentum``)."""
        if self.bn_momentum is None:
            return
        want = 1.0 if self.step == 0 else self.bn_momentum
        if want != self.bn_momentum_now:
            set_bn_momentum(self.student, want)
            self.bn_momentum_now = want

    def run(self, x: Tensor, y: Tensor, epoch: int) -> tuple[Tensor, Tensor]:
        """One ADR iteration in epoch ``epoch`` (AWP starts at ``awp_warmup``); ``(loss, #correct on adversarial
        inputs)`` as tensors.

        Under DDP the loss that is back-propagated is weighted by this shard's share of the global batch
        (:func:`art_adr.distributed.shard_weight`), so a ragged last batch (``drop_last=False``) gives the
        gradient one process computes on it, and a rank whose shard is empty contributes a zero loss; the
        returned loss is the shard's own mean (0 for an empty shard)."""
        self.forwards.mark_step()
        self.apply_bn_momentum()
        guard = self.precision.buffer_guard(self.student)
        target = self.targets(x, y)
        x_adv = self.attack(x, target, y)
        autocast = self.precision.autocast_factory
        weight = shard_weight(y.shape[0], self.device, self.world_size)  # DDP: this shard's share of the batch
        f = self.forwards
        local, train = (f.student, f.train_eager) if self.eager() else (f.local, f.train)

        def loss_at(forward: Forward) -> tuple[Tensor, Tensor]:
            loss, logits_adv = self.method.loss(forward, x, x_adv, target, y, autocast)
            if y.shape[0] == 0:  # an empty DDP shard (drop_last off): a zero loss, so that DDP's backward runs
                loss = logits_adv.float().sum() * 0.0
            return loss, (logits_adv.detach().argmax(1) == y).sum()  # now: a CUDA graph may reuse the logits

        with module_mode(self.student, True):
            self.optimizer.zero_grad(set_to_none=True)
            if self.awp_rho > 0 and epoch >= self.awp_warmup:
                loss, correct = awp_backward(self.awp, loss_at, local, train, self.precision.scaler, self.student,
                                             weight)
            else:
                loss, correct = loss_at(train)
                self.precision.backward(loss if weight is None else loss * weight)
            self.precision.step(self.optimizer, guard)
        decay = ema_warmup_decay(self.ema_decay, self.step) if self.ema_warmup else None
        self.teacher.update(self.student, decay)
        self.step += 1
        return loss.detach(), correct

"""What a training method is: the attack it trains against and the loss it minimises (one small class each).

A method never sees the trainer: the trainer hands it an :class:`AttackContext` (the model forward used by the
attack, the threat model, the generator, autocast) for the attack, and a forward for the loss. ADR enters only
through ``target``, the label the trainer passes in: the teacher's rectified ``P(x)`` (Wu et al. 2024, Eq. 5),
or one-hot ``y`` when ADR is off, so every method works with and without ADR in the same loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = ["AttackContext", "Forward", "TrainingMethod", "autocast_context", "forward_logits"]

Forward = Callable[[Tensor], Tensor]


@dataclass
class AttackContext:
    """Everything a method's training attack needs (built once by the trainer; the generator advances).

    Attributes:
        forward: the attack forward ``[N, C, H, W] -> [N, K]`` (compiled when the trainer compiles).
        model: the student ``nn.Module`` (for BatchNorm mode switches).
        eps, eps_step, max_iter, norm: the threat model and PGD step (``norm`` ``"inf"`` or ``"2"``).
        clip_values: the valid input box.
        bn_mode: BatchNorm mode during the attack (``"train"`` or ``"eval"``; the method's default unless the
            trainer was given one).
        generator: ``torch.Generator`` on the device, for random starts (seeded ``seed + rank``).
        autocast: zero-argument factory of the autocast context, or ``None``.
        random_init: start AT's attack uniformly in the ε-ball (default) or at ``x`` (``False``: an ART PGD with
            ``num_random_init=0``); TRADES and MART keep their own 0.001-scale starts.
    """

    forward: Forward
    model: nn.Module
    eps: float
    eps_step: float
    max_iter: int
    norm: str
    clip_values: tuple[float, float]
    bn_mode: str
    generator: torch.Generator
    autocast: Callable[[], contextlib.AbstractContextManager] | None
    random_init: bool = True

    def autocast_ctx(self) -> contextlib.AbstractContextManager:
        return autocast_context(self.autocast)


@dataclass
class TrainingMethod:
    """Base of every training method; subclasses are dataclasses whose fields are the method's hyper-parameters
    (named as the :class:`art_adr.config.RunConfig` fields they are read from).

    Class attributes:
        name: registry key and ``RunConfig.method`` value (``"at"``).
        label: table label (``"AT"``; ``"+ADR"`` is appended by ADR runs).
        title: the name outside our tables (``"PGD-AT"``; RobustBench entries of runs without ADR); default label.
        citation: the paper the loss comes from.
        default_bn_mode: BatchNorm mode of the training attack when the user gives none.
        loss_forwards: forward+backward passes per image in the loss (AT 1; TRADES, MART 2: clean and
            adversarial; TRADES' ``"reference"`` variant makes a third, the clean KL target) —
            ``benchmarks/bench_utils.forward_equivalents`` counts FLOPs from them.
        attack_setup_forwards: no-grad forwards per image before the attack (TRADES' clean KL target: 1).
        adversarial: ``False`` for a method that trains without an attack (standard training): its ``attack``
            returns ``x`` and the cost model counts no attack steps.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    title: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    default_bn_mode: ClassVar[str] = "train"
    loss_forwards: ClassVar[int] = 1
    attack_setup_forwards: ClassVar[int] = 0
    adversarial: ClassVar[bool] = True

    @classmethod
    def display_name(cls) -> str:
        """``title`` when set, else ``label``."""
        return cls.title or cls.label

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when a hyper-parameter is out of range."""

    def attack(self, ctx: AttackContext, x: Tensor, target: Tensor, y: Tensor) -> Tensor:
        """Adversarial examples for clean device batch ``x`` (in ``clip_values``), training target ``target``
        (``[N, K]`` probabilities: rectified or one-hot) and hard labels ``y`` ``[N]``."""
        raise NotImplementedError

    def loss(self, forward: Forward, x: Tensor, x_adv: Tensor, target: Tensor, y: Tensor,
             autocast: Callable[[], contextlib.AbstractContextManager] | None) -> tuple[Tensor, Tensor]:
        """``(scalar training loss, adversarial logits [N, K])`` through ``forward`` (train mode is set by the
        caller; ``autocast`` wraps the forward passes, the loss itself is computed in float32)."""
        raise NotImplementedError

    def describe(self) -> str:
        """``"TRADES (beta=6.0, trades_variant=official)"``: the label and every hyper-parameter."""
        params = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))
        return f"{self.label} ({params})" if params else self.label


def autocast_context(autocast: Callable[[], contextlib.AbstractContextManager] | None
                     ) -> contextlib.AbstractContextManager:
    """``autocast()`` when a factory is given, else a no-op context."""
    return autocast() if autocast is not None else contextlib.nullcontext()


def forward_logits(forward: Forward, x: Tensor, autocast: Any) -> Tensor:
    """``forward(x)`` under ``autocast`` (when given), as float32 logits for the loss."""
    with autocast_context(autocast):
        return forward(x).float()

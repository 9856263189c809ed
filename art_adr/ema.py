"""EMA teacher over parameters and buffers (weight averaging; Izmailov et al. 2018, ADR §4.2)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .defaults import EMA_BUFFERS

__all__ = ["EMA_BUFFERS", "EMATeacher"]



class EMATeacher:
    """Exponential moving average ``θ_t ← γ·θ_t + (1 − γ)·θ_s`` of a student's whole state.

    Floating-point parameters **and** buffers (BatchNorm running mean/var) are averaged in place with
    ``torch._foreach_lerp_``; integer buffers (``num_batches_tracked``) are copied. The teacher is kept
    in eval mode with ``requires_grad=False``.

    Why not timm's class (``benchmarks/ema_timm.py``, ``benchmarks/results/ema-timm-cpu.json``): the ADR authors
    use timm's ``ModelEmaV2``, whose update ``γ·e + (1 − γ)·m`` runs on integer buffers too (truncating
    ``num_batches_tracked``) and differs from a lerp in the last bits of the weights (up to 3e-8 after 20 steps
    of an MLP); its outputs agree with ours to float rounding. timm's ``ModelEmaV3`` *is* this update —
    bit-identical on CPU (``tests/test_ema_attacks.py`` pins it) — but rebuilds both state dicts at every step
    where this class binds the tensor lists once: 6–22 % slower per update on a CPU (ResNet-18 40.0 vs 42.6 ms,
    MLP 1.29 vs 1.57 ms, one thread). Its warm-up (``1 − (1 + t/γ_w)^−p``) is not the ``(1 + t)/(10 + t)`` of
    ``ema_warmup`` either.

    Args:
        student: the model being trained.
        decay: γ in [0, 1) (default 0.995, the ADR authors').
        buffers: ``"average"`` (default, the authors': floating-point buffers such as BatchNorm's running
            statistics are averaged like the weights) or ``"student"`` (every buffer is the student's, copied at
            each update — timm's ``exclude_buffers=True``).

    Example:
        >>> teacher = EMATeacher(model, decay=0.995)
        >>> optimizer.step(); teacher.update(model)
    """

    def __init__(self, student: nn.Module, decay: float = 0.995, buffers: str = "average") -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        if buffers not in EMA_BUFFERS:
            raise ValueError(f"buffers must be one of {EMA_BUFFERS}, got {buffers!r}")
        self.decay, self.buffers = float(decay), buffers
        self.module = copy.deepcopy(student)
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._bind(student)

    def _bind(self, student: nn.Module) -> None:
        t_state = self.module.state_dict(keep_vars=True)
        s_state = student.state_dict(keep_vars=True)
        if t_state.keys() != s_state.keys():
            raise ValueError("student and teacher have different state_dict keys")
        copied = {name for name, _ in self.module.named_buffers()} if self.buffers == "student" else set()
        self._float_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._other_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        for k, t in t_state.items():
            s = s_state[k]
            pair = (t.data, s.data)
            (self._float_pairs if t.is_floating_point() and k not in copied else self._other_pairs).append(pair)
        self._student_id = id(student)

    @torch.no_grad()
    def update(self, student: nn.Module, decay: float | None = None) -> None:
        """One EMA step towards ``student`` (call after each optimizer step); ``decay`` overrides γ once."""
        if id(student) != self._student_id:
            self._bind(student)
        decay = self.decay if decay is None else decay
        if self._float_pairs:
            teacher_tensors = [t for t, _ in self._float_pairs]
            student_tensors = [s for _, s in self._float_pairs]
            torch._foreach_lerp_(teacher_tensors, student_tensors, 1.0 - decay)
        for t, s in self._other_pairs:
            t.copy_(s)

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)

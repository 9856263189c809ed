"""EMA teacher over parameters and buffers (weight averaging; Izmailov et al. 2018, ADR §4.2)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["EMATeacher"]


class EMATeacher:
    """Exponential moving average ``θ_t ← γ·θ_t + (1 − γ)·θ_s`` of a student's whole state.

    Floating-point parameters **and** buffers (BatchNorm running mean/var) are averaged in place with
    ``torch._foreach_lerp_``; integer buffers (``num_batches_tracked``) are copied. The teacher is kept
    in eval mode with ``requires_grad=False``.

    Args:
        student: the model being trained.
        decay: γ in [0, 1) (default 0.995, the ADR authors').

    Example:
        >>> teacher = EMATeacher(model, decay=0.995)
        >>> optimizer.step(); teacher.update(model)
    """

    def __init__(self, student: nn.Module, decay: float = 0.995) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
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
        self._float_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._other_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        for k, t in t_state.items():
            s = s_state[k]
            pair = (t.data, s.data)
            (self._float_pairs if t.is_floating_point() else self._other_pairs).append(pair)
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

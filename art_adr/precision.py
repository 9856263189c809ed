"""Mixed precision for one training iteration: autocast, the fp16 gradient scaler and its BatchNorm guard."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .awp import scale_of
from .snapshot import TensorSnapshot

__all__ = ["Precision", "amp_dtype"]

Guard = TensorSnapshot


def amp_dtype(amp: str | None) -> torch.dtype | None:
    """``None``/``"none"`` → no autocast, ``"bf16"``, ``"fp16"`` → the autocast dtype (``ValueError`` otherwise)."""
    table = {None: None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if amp not in table:
        raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
    return table[amp]


class Precision:
    """Autocast (bf16/fp16) and fp16 loss scaling on ``device``.

    Args:
        amp: ``None`` (float32), ``"bf16"`` or ``"fp16"`` (with a ``torch.amp.GradScaler``).
        device: the training device.
    """

    def __init__(self, amp: str | None, device: torch.device) -> None:
        self.dtype = amp_dtype(amp)
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self._guard: TensorSnapshot | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of the forward passes (a no-op in float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @property
    def autocast_factory(self) -> Callable[[], contextlib.AbstractContextManager] | None:
        """:meth:`autocast`, or ``None`` in float32 (what :func:`art_adr.attacks.pgd` takes)."""
        return self.autocast if self.dtype is not None else None

    def backward(self, loss: Tensor) -> None:
        self.scaler.scale(loss).backward()

    def buffer_guard(self, model: nn.Module) -> Guard | None:
        """With fp16 loss scaling, a copy of ``model``'s buffers (BatchNorm statistics) taken before the
        iteration's train-mode forwards, so :meth:`step` can undo what an overflowing step wrote (one copy
        into buffers allocated once, :class:`art_adr.snapshot.TensorSnapshot`)."""
        if not self.scaler.is_enabled():
            return None
        buffers = list(model.buffers())
        if self._guard is None or len(self._guard.tensors) != len(buffers) or any(
                a is not b for a, b in zip(self._guard.tensors, buffers)):
            self._guard = TensorSnapshot(buffers)
        self._guard.save()
        return self._guard

    def step(self, optimizer: torch.optim.Optimizer, guard: Guard | None) -> None:
        """``scaler.step`` + ``scaler.update``; when the scaler skips the step (inf/NaN gradients: its scale
        shrinks) the buffers go back to ``guard`` — selected on the device, no host synchronisation."""
        scale = scale_of(self.scaler) if guard is not None else None
        before = scale.clone() if scale is not None else None
        self.scaler.step(optimizer)
        self.scaler.update()
        if guard is None or before is None:
            return
        guard.restore_where(scale_of(self.scaler) < before)

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.scaler.load_state_dict(state)

"""Copies of a fixed list of tensors kept in buffers allocated once: a save or a restore is one
``torch._foreach_copy_`` (a handful of kernels) instead of a clone and a copy per tensor, and
:meth:`TensorSnapshot.restore_where` selects old or new values on the device (no host synchronisation).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["TensorSnapshot", "bn_stat_buffers"]


def bn_stat_buffers(model: nn.Module) -> list[Tensor]:
    """The running statistics (mean, variance, ``num_batches_tracked``) of every BatchNorm layer of ``model``."""
    out = []
    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            out += [b for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    return out


class TensorSnapshot:
    """One saved copy of ``tensors``; per dtype the copies are views of one flat buffer (allocated here, once).

    Example:
        >>> snap = TensorSnapshot(model.buffers())
        >>> snap.save(); model.train()(x); snap.restore()      # the forward left no trace in the buffers
    """

    def __init__(self, tensors: Iterable[Tensor]) -> None:
        self.tensors = [t for t in tensors]
        self.copies: list[Tensor] = [torch.empty(0)] * len(self.tensors)
        by_dtype: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        for i, t in enumerate(self.tensors):
            by_dtype.setdefault((t.dtype, t.device), []).append(i)
        self._flat: list[tuple[list[int], Tensor]] = []
        for (dtype, device), idx in by_dtype.items():
            flat = torch.empty(sum(self.tensors[i].numel() for i in idx), dtype=dtype, device=device)
            offset = 0
            for i in idx:
                n = self.tensors[i].numel()
                self.copies[i] = flat[offset:offset + n].view(self.tensors[i].shape)
                offset += n
            self._flat.append((idx, flat))

    @torch.no_grad()
    def save(self) -> None:
        """Copy the tensors' current values into the snapshot."""
        if self.tensors:
            torch._foreach_copy_(self.copies, self.tensors)

    @torch.no_grad()
    def restore(self) -> None:
        """Put the saved values back into the tensors."""
        if self.tensors:
            torch._foreach_copy_(self.tensors, self.copies)

    @torch.no_grad()
    def restore_where(self, condition: Tensor) -> None:
        """Restore the saved values where the 0-dim boolean ``condition`` is true, keep the current ones
        otherwise — decided on the device; NaN/inf in the current values do not leak into a restore."""
        for idx, flat in self._flat:
            targets = [self.tensors[i] for i in idx]
            current = torch.cat([t.reshape(-1) for t in targets])
            torch.where(condition, flat, current, out=current)
            pieces = current.split([t.numel() for t in targets])
            torch._foreach_copy_(targets, [p.view(t.shape) for p, t in zip(pieces, targets)])

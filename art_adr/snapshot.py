"""Copies of tensors kept in buffers allocated once. :class:`TensorSnapshot`: a save or a restore of a fixed
list of device tensors is one ``torch._foreach_copy_`` (a handful of kernels) instead of a clone and a copy per
tensor, and :meth:`TensorSnapshot.restore_where` selects old or new values on the device (no host
synchronisation). :class:`HostStateCopies`: the divergence restore's host copy of the training state.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["HostStateCopies", "TensorSnapshot", "all_finite", "bn_stat_buffers"]


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


def _copy_tree(src: Any, dst: Any) -> Any:
    """``src`` (a state dict tree) copied into ``dst``'s host tensors where shapes and dtypes match (new ones
    otherwise: pinned for CUDA tensors, which are copied asynchronously); other values are deep-copied."""
    if isinstance(src, Tensor):
        cuda = src.is_cuda
        same = isinstance(dst, Tensor) and dst.shape == src.shape and dst.dtype == src.dtype
        out = dst if same else torch.empty(src.shape, dtype=src.dtype, pin_memory=cuda)
        out.copy_(src.detach(), non_blocking=cuda)
        return out
    if isinstance(src, dict):
        old = dst if isinstance(dst, dict) else {}
        return {k: _copy_tree(v, old.get(k)) for k, v in src.items()}
    if isinstance(src, (list, tuple)):
        old = dst if isinstance(dst, (list, tuple)) and len(dst) == len(src) else [None] * len(src)
        return type(src)(_copy_tree(v, d) for v, d in zip(src, old))
    return copy.deepcopy(src)


def all_finite(tensors: Sequence[Tensor]) -> Tensor:
    """A 0-dim boolean tensor on the tensors' device: every element of every tensor is finite (no host sync)."""
    tensors = [t.detach() for t in tensors if t.numel()]
    if not tensors:
        return torch.tensor(True)
    maxima = torch._foreach_norm(tensors, float("inf"))
    return torch.stack([m.float() for m in maxima]).isfinite().all()


class HostStateCopies:
    """The last *finite* training state on the host, kept without stalling the device (the divergence restore).

    Two slots of host tensors, allocated on first use and reused (pinned memory for CUDA tensors, copied
    asynchronously; on CPU a plain copy). :meth:`take` writes the state into the slot that does not hold the
    latest finite copy and computes, on the device, whether the state was finite; that flag is read at the next
    :meth:`take` (once per epoch, when the device is idle anyway) or by :meth:`latest`.
    """

    def __init__(self) -> None:
        self.slots: list[Any] = [None, None]
        self._flags: list[Tensor | None] = [None, None]
        self._best: int | None = None
        self._pending: int | None = None

    def clear(self) -> None:
        """Forget which copy is the latest finite one (the buffers are kept)."""
        self._best = self._pending = None

    def _resolve(self) -> None:
        if self._pending is not None:
            if bool(self._flags[self._pending]):
                self._best = self._pending
            self._pending = None

    def take(self, state: dict[str, Any], check: Sequence[Tensor]) -> None:
        """Copy ``state`` to the host; it counts as finite when every tensor of ``check`` is."""
        self._resolve()
        slot = 1 if self._best == 0 else 0
        self._flags[slot] = all_finite(check)
        self.slots[slot] = _copy_tree(state, self.slots[slot])
        self._pending = slot

    def latest(self) -> dict[str, Any] | None:
        """The latest finite copy (``None`` if none was taken since :meth:`clear`); waits for the copies."""
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        self._resolve()
        return None if self._best is None else self.slots[self._best]

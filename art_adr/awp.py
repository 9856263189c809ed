"""Adversarial weight perturbation as one composable step (Wu, Xia & Wang 2020; ADR authors' ``util/awp.py``).

The ADR authors' AWP is SAM-style: from the gradient ``g`` of the training loss at ``w``, every parameter
tensor that has a gradient moves to ``w + ρ·‖w‖/(‖g‖ + 1e-20)·g``; the gradient at the perturbed weights then
updates the unperturbed ones. :class:`AWP` computes and applies that perturbation and undoes it; the caller
owns the forward passes (it passes the proxy loss in), so no trainer attribute is swapped.

Variants (``AWP_VARIANTS``):

* ``"official"`` (default): all parameters with a gradient (BatchNorm γ/β and biases too); the first,
  unperturbed pass is an ordinary train-mode pass (it updates the BatchNorm running statistics), and the
  perturbed pass runs under :func:`frozen_bn_stats` (the running statistics saved and put back: the
  effect of the authors' ``disable_running_stats``, momentum 0, without changing ``momentum``, which would
  recompile a compiled forward), so the running statistics are updated exactly once per iteration.
* ``"weights-only"`` (art-adr ≤ 0.x): only weight tensors with ``ndim > 1``; the proxy pass leaves the
  BatchNorm buffers as they were (:func:`kept_buffers`) and the perturbed pass updates them.

Mixed precision: the proxy gradient comes from ``scaler.scale(loss)``; it is unscaled, and when any of its
tensors is non-finite (an fp16 overflow) the whole perturbation is multiplied by 0 — decided on the device,
no host synchronisation — so NaN/inf never reaches the weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .snapshot import TensorSnapshot, bn_stat_buffers

__all__ = ["AWP", "AWP_VARIANTS", "awp_backward", "frozen_bn_stats", "kept_buffers", "scale_of"]

AWP_VARIANTS = ("official", "weights-only")


def scale_of(scaler: Any) -> Tensor | None:
    """The current loss-scale tensor of an enabled ``torch.amp.GradScaler`` (``None`` when disabled or unset)."""
    if scaler is None or not scaler.is_enabled():
        return None
    return getattr(scaler, "_scale", None)


class AWP:
    """SAM-style adversarial weight perturbation of ``model`` with relative radius ``rho``.

    Args:
        model: the module whose parameters are perturbed.
        rho: relative radius ρ > 0 (ADR authors: 0.005 CIFAR, 0.001 Tiny-ImageNet).
        variant: ``"official"`` (every parameter with a gradient) or ``"weights-only"`` (``ndim > 1``).
        eps: added to ``‖g‖`` (authors: 1e-20; the weights-only variant keeps art-adr's former 1e-12).

    Example:
        >>> awp = AWP(model, rho=0.005)
        >>> proxy = loss_fn(model(x_adv))                      # pass 1, at w
        >>> with awp.perturbed(proxy, scaler), frozen_bn_stats(model):
        ...     scaler.scale(loss_fn(model(x_adv))).backward()  # pass 2, at w + e(w)
        >>> scaler.step(optimizer)                              # back at w
    """

    def __init__(self, model: nn.Module, rho: float, variant: str = "official", eps: float | None = None) -> None:
        if variant not in AWP_VARIANTS:
            raise ValueError(f"awp_variant must be one of {AWP_VARIANTS}, got {variant!r}")
        if not rho >= 0:
            raise ValueError(f"awp_rho must be >= 0, got {rho}")
        self.model, self.rho, self.variant = model, float(rho), variant
        self.eps = float(eps) if eps is not None else (1e-20 if variant == "official" else 1e-12)

    def params(self) -> list[Tensor]:
        """The candidate parameters (those that require grad; ``ndim > 1`` only for ``"weights-only"``)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return params if self.variant == "official" else [p for p in params if p.dim() > 1]

    def perturb(self, loss: Tensor, scaler: Any = None) -> list[tuple[Tensor, Tensor]]:
        """Add ``e(w)`` from the gradient of ``loss``; returns ``(param, original)`` pairs for :meth:`restore`.

        Parameters the loss does not reach (no gradient) stay put, as in the authors' ``p.grad is None``. The
        gradients are gathered into one flat vector and the originals copied into buffers allocated once, so
        the whole perturbation is ~20 kernels (``torch._foreach_*``), not ~10 per parameter tensor.
        """
        params = self.params()
        scaled = scaler.scale(loss) if scaler is not None and scaler.is_enabled() else loss
        scale = scale_of(scaler)
        grads = torch.autograd.grad(scaled, params, allow_unused=True)
        pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
        if not pairs:
            return []
        ps = [p for p, _ in pairs]
        saved, sizes, repeats = self._buffers(ps)
        with torch.no_grad():
            flat = torch.cat([_flat_view(g) for _, g in pairs]).float()
            if scale is not None:
                flat.mul_(scale.double().reciprocal().float())
            pieces = flat.split(sizes)
            g_norms = torch.stack(torch._foreach_norm(list(pieces)))
            w_norms = torch.stack(torch._foreach_norm([p.detach() for p in ps])).float()
            finite = g_norms.isfinite().all()  # one overflow anywhere: no perturbation at all
            coef = torch.where(finite, self.rho * w_norms / (g_norms + self.eps), torch.zeros_like(g_norms))
            flat.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
            flat.mul_(coef.repeat_interleave(repeats, output_size=flat.numel()))
            torch._foreach_copy_(saved, ps)
            torch._foreach_add_(ps, [_unflat(piece, g) for piece, (_, g) in zip(flat.split(sizes), pairs)])
        return list(zip(ps, saved))

    def _buffers(self, ps: list[Tensor]) -> tuple[list[Tensor], list[int], Tensor]:
        """Copies of ``ps`` and their sizes (a device tensor too), allocated once per set of parameters."""
        key = tuple(id(p) for p in ps)
        if getattr(self, "_key", None) != key:
            sizes = [p.numel() for p in ps]
            self._key = key
            self._cache = ([torch.empty_like(p) for p in ps], sizes,
                           torch.tensor(sizes, device=ps[0].device, dtype=torch.long))
        return self._cache

    @staticmethod
    def restore(saved: Sequence[tuple[Tensor, Tensor]]) -> None:
        """Put the parameters back to the values :meth:`perturb` saved."""
        if saved:
            with torch.no_grad():
                torch._foreach_copy_([p for p, _ in saved], [o for _, o in saved])

    @contextlib.contextmanager
    def perturbed(self, loss: Tensor, scaler: Any = None) -> Iterator[None]:
        """Perturb from ``loss`` for the block (run the perturbed forward/backward inside), then restore."""
        saved = self.perturb(loss, scaler)
        try:
            yield
        finally:
            self.restore(saved)

    def bn_stats(self) -> TensorSnapshot:
        """The snapshot :func:`frozen_bn_stats` uses for this model (allocated once)."""
        if getattr(self, "_bn_snapshot", None) is None:
            self._bn_snapshot = TensorSnapshot(bn_stat_buffers(self.model))
        return self._bn_snapshot

    def all_buffers(self) -> TensorSnapshot:
        """The snapshot :func:`kept_buffers` uses for this model (allocated once)."""
        if getattr(self, "_buffer_snapshot", None) is None:
            self._buffer_snapshot = TensorSnapshot(self.model.buffers())
        return self._buffer_snapshot


def _memory_order(t: Tensor) -> list[int]:
    """The dimensions of ``t`` from the largest stride to the smallest (its memory order)."""
    return sorted(range(t.dim()), key=lambda d: -t.stride(d))


def _flat_view(t: Tensor) -> Tensor:
    """``t``'s elements as a 1-D tensor in memory order (a view for dense tensors, e.g. channels_last ones)."""
    return t.view(-1) if t.is_contiguous() else t.permute(_memory_order(t)).reshape(-1)


def _unflat(piece: Tensor, like: Tensor) -> Tensor:
    """The inverse of :func:`_flat_view` of ``like`` (the same memory order), in ``like``'s dtype."""
    piece = piece.to(like.dtype)
    if like.is_contiguous():
        return piece.view(like.shape)
    perm = _memory_order(like)
    inverse = sorted(range(like.dim()), key=lambda d: perm[d])
    return piece.view([like.shape[d] for d in perm]).permute(inverse)


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module, snapshot: TensorSnapshot | None = None) -> Iterator[None]:
    """BatchNorm layers keep their running statistics (and ``num_batches_tracked``) through the block, as the
    authors' ``disable_running_stats`` (momentum 0) does — by saving them and putting them back, never by
    changing ``momentum``: a compiled forward then sees the same module attributes and is not recompiled.
    ``snapshot``: a :class:`TensorSnapshot` of :func:`bn_stat_buffers` to reuse (``AWP.bn_stats()``)."""
    snap = snapshot if snapshot is not None else TensorSnapshot(bn_stat_buffers(model))
    snap.save()
    try:
        yield
    finally:
        snap.restore()


@contextlib.contextmanager
def kept_buffers(model: nn.Module, snapshot: TensorSnapshot | None = None) -> Iterator[None]:
    """Every buffer of ``model`` is restored to its value at entry when the block ends (``snapshot``: a
    :class:`TensorSnapshot` of ``model.buffers()`` to reuse)."""
    snap = snapshot if snapshot is not None else TensorSnapshot(model.buffers())
    snap.save()
    try:
        yield
    finally:
        snap.restore()


def awp_backward(awp: AWP, loss_at: Any, local_forward: Any, train_forward: Any, scaler: Any,
                 model: nn.Module, weight: Tensor | None = None) -> tuple[Tensor, Any]:
    """One AWP iteration's forward/backward passes; leaves the gradient of the loss at the perturbed weights in
    ``.grad`` and the weights back at ``w``. Returns ``(loss, record)`` as ``loss_at`` gave them.

    Args:
        awp: the perturbation (its ``variant`` decides the passes).
        loss_at: ``forward -> (loss, record)``: the method's loss through the given forward (and what the
            caller records of it, e.g. the adversarial logits or the number of correct ones).
        local_forward: the forward of this process only (no DDP gradient reduction) for the proxy gradient.
        train_forward: the training forward (DDP-wrapped under ``torchrun``) for the gradient that is applied.
        scaler: the ``GradScaler`` (fp16) or a disabled one.
        model: the student (its BatchNorm statistics are kept or frozen as the variant says).
        weight: factor of the applied (``train_forward``) loss's backward — a DDP shard's share of the global
            batch (:func:`art_adr.distributed.shard_weight`); ``None`` = 1. The proxy gradient is unweighted
            (the perturbation only uses its direction); the returned loss too.

    ``official``: pass 1 at ``w`` (train mode, updates BatchNorm statistics, local gradient), pass 2 at
    ``w + e(w)`` through ``train_forward`` with the BatchNorm statistics frozen; the reported loss/record are
    pass 1's, as in the authors' code. ``weights-only``: the proxy pass leaves the buffers alone and the
    perturbed pass is the reported one.
    """
    def weighted(loss: Tensor) -> Tensor:
        return loss if weight is None else loss * weight

    if awp.variant == "official":
        loss, logits_adv = loss_at(local_forward)
        with awp.perturbed(loss, scaler), frozen_bn_stats(model, awp.bn_stats()):
            perturbed, _ = loss_at(train_forward)
            scaler.scale(weighted(perturbed)).backward()
        return loss, logits_adv
    with kept_buffers(model, awp.all_buffers()):  # restored after the proxy's backward (which saved the buffers)
        proxy, _ = loss_at(local_forward)
        saved = awp.perturb(proxy, scaler)
    try:
        loss, logits_adv = loss_at(train_forward)
        scaler.scale(weighted(loss)).backward()
    finally:
        awp.restore(saved)
    return loss, logits_adv

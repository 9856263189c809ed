"""Adversarial weight perturbation as one composable step (Wu, Xia & Wang 2020; ADR authors' ``util/awp.py``).

The ADR authors' AWP is SAM-style: from the gradient ``g`` of the training loss at ``w``, every parameter
tensor that has a gradient moves to ``w + ρ·‖w‖/(‖g‖ + 1e-20)·g``; the gradient at the perturbed weights then
updates the unperturbed ones. :class:`AWP` computes and applies that perturbation and undoes it; the caller
owns the forward passes (it passes the proxy loss in), so no trainer attribute is swapped.

Variants (``AWP_VARIANTS``):

* ``"official"`` (default): all parameters with a gradient (BatchNorm γ/β and biases too); the first,
  unperturbed pass is an ordinary train-mode pass (it updates the BatchNorm running statistics), and the
  perturbed pass runs under :func:`frozen_bn_stats` (BatchNorm momentum 0, as the authors'
  ``disable_running_stats``), so the running statistics are updated exactly once per iteration.
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
from torch.nn.modules.batchnorm import _BatchNorm

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

        Parameters the loss does not reach (no gradient) stay put, as in the authors' ``p.grad is None``.
        """
        params = self.params()
        scaled = scaler.scale(loss) if scaler is not None and scaler.is_enabled() else loss
        scale = scale_of(scaler)
        grads = torch.autograd.grad(scaled, params, allow_unused=True)
        pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
        if not pairs:
            return []
        ps = [p for p, _ in pairs]
        gs = [g.float() for _, g in pairs]
        with torch.no_grad():
            if scale is not None:
                gs = torch._foreach_mul(gs, scale.double().reciprocal().float())
            g_norms = torch._foreach_norm(gs)
            w_norms = torch._foreach_norm([p.detach().float() for p in ps])
            finite = torch.stack(g_norms).isfinite().all()  # one overflow anywhere: no perturbation at all
            saved = []
            for p, g, wn, gn in zip(ps, gs, w_norms, g_norms):
                coef = torch.where(finite, self.rho * wn / (gn + self.eps), torch.zeros_like(gn))
                saved.append((p, p.detach().clone()))
                p.add_((torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0) * coef).to(p.dtype))
        return saved

    @staticmethod
    def restore(saved: Sequence[tuple[Tensor, Tensor]]) -> None:
        """Put the parameters back to the values :meth:`perturb` saved."""
        with torch.no_grad():
            for p, original in saved:
                p.copy_(original)

    @contextlib.contextmanager
    def perturbed(self, loss: Tensor, scaler: Any = None) -> Iterator[None]:
        """Perturb from ``loss`` for the block (run the perturbed forward/backward inside), then restore."""
        saved = self.perturb(loss, scaler)
        try:
            yield
        finally:
            self.restore(saved)


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers keep their running statistics during the block (momentum 0, the authors'
    ``disable_running_stats``); ``num_batches_tracked`` is put back too, so the block leaves no trace."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
             for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for m, momentum, tracked in saved:
                m.momentum = momentum
                if tracked is not None:
                    m.num_batches_tracked.copy_(tracked)


@contextlib.contextmanager
def kept_buffers(model: nn.Module) -> Iterator[None]:
    """Every buffer of ``model`` is restored to its value at entry when the block ends."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, original in saved:
                b.copy_(original)


def awp_backward(awp: AWP, loss_at: Any, local_forward: Any, train_forward: Any, scaler: Any,
                 model: nn.Module, weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One AWP iteration's forward/backward passes; leaves the gradient of the loss at the perturbed weights in
    ``.grad`` and the weights back at ``w``. Returns ``(loss, adversarial logits)`` for the records.

    Args:
        awp: the perturbation (its ``variant`` decides the passes).
        loss_at: ``forward -> (loss, adversarial logits)``: the method's loss through the given forward.
        local_forward: the forward of this process only (no DDP gradient reduction) for the proxy gradient.
        train_forward: the training forward (DDP-wrapped under ``torchrun``) for the gradient that is applied.
        scaler: the ``GradScaler`` (fp16) or a disabled one.
        model: the student (its BatchNorm statistics are kept or frozen as the variant says).
        weight: factor of the applied (``train_forward``) loss's backward — a DDP shard's share of the global
            batch (:func:`art_adr.distributed.shard_weight`); ``None`` = 1. The proxy gradient is unweighted
            (the perturbation only uses its direction); the returned loss too.

    ``official``: pass 1 at ``w`` (train mode, updates BatchNorm statistics, local gradient), pass 2 at
    ``w + e(w)`` through ``train_forward`` with BatchNorm momentum 0; the reported loss/logits are pass 1's, as in
    the authors' code. ``weights-only``: the proxy pass leaves the buffers alone and the perturbed pass is the
    reported one.
    """
    def weighted(loss: Tensor) -> Tensor:
        return loss if weight is None else loss * weight

    if awp.variant == "official":
        loss, logits_adv = loss_at(local_forward)
        with awp.perturbed(loss, scaler), frozen_bn_stats(model):
            perturbed, _ = loss_at(train_forward)
            scaler.scale(weighted(perturbed)).backward()
        return loss, logits_adv
    with kept_buffers(model):  # restored after the proxy's backward (which saved the buffers)
        proxy, _ = loss_at(local_forward)
        saved = awp.perturb(proxy, scaler)
    try:
        loss, logits_adv = loss_at(train_forward)
        scaler.scale(weighted(loss)).backward()
    finally:
        awp.restore(saved)
    return loss, logits_adv

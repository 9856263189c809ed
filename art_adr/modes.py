"""Scoped train/eval mode switches that restore every submodule's own flag on exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["module_mode", "bn_mode_flag", "set_bn_momentum"]


@contextmanager
def module_mode(model: nn.Module, train: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train (``True``) or eval (``False``) mode for the block, then restore each submodule."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(train)
    try:
        yield model
    finally:
        for m, flag in saved:
            m.training = flag


def bn_mode_flag(bn_mode: str | None, current: bool) -> bool:
    """Resolve an attack's ``bn_mode`` (``"train"``, ``"eval"`` or ``None`` = leave as is) to a train flag."""
    if bn_mode is None:
        return current
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train', 'eval' or None, got {bn_mode!r}")
    return bn_mode == "train"


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """Set the running-statistics momentum of every BatchNorm layer in ``model`` (ADR authors' ``bypass_bn``)."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"BatchNorm momentum must be in [0, 1], got {momentum}")
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.momentum = momentum

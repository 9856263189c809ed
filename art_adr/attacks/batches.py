"""Which points stay correct, over an image set batch by batch: clean accuracy and the default whole-set run of a
registered attack (:meth:`~art_adr.attacks.Attack.run`).

Every function returns a boolean ``[N]`` on the CPU (True: still classified correctly) and attacks only the points
of ``start_flags`` (default: the clean-correct ones); a point misclassified without attack stays non-robust
(AutoAttack's convention). Random starts come from a generator seeded with ``seed``; the global RNG is untouched.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..loader import to_unit_float

if TYPE_CHECKING:
    from .base import Attack
    from .core import AttackSpec

__all__ = ["correct", "correct_flags", "batched_flags", "percent", "spans", "progress_bar", "to_float"]


def spans(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def progress_bar(iterable: Any, enabled: bool, desc: str, total: int | None = None) -> Any:
    """``iterable`` wrapped in a tqdm bar labelled ``desc`` when ``enabled``, else unchanged."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def to_float(x: Tensor, device: torch.device | str) -> Tensor:
    """Images on ``device`` as float in ``[0, 1]`` (uint8 divided by 255)."""
    return to_unit_float(x.to(device))


def percent(flags: Tensor, n: int) -> float:
    """Percentage (0-100) of True entries of ``flags`` among ``n`` examples."""
    return 100.0 * float(flags.sum().item()) / max(1, n)


def correct(forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor,
            autocast: Callable[[], Any] | None = None) -> Tensor:
    """Bool ``[N]`` on ``x``'s device: is each point of the batch classified correctly (argmax, no grad)?"""
    with torch.no_grad(), (autocast or contextlib.nullcontext)():
        return forward(x).argmax(1) == y


@torch.no_grad()
def correct_flags(
    model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, batch_size: int = 256,
    device: str | torch.device = "cpu", progress: bool = False,
) -> Tensor:
    """Boolean ``[N]`` (CPU): is each clean example classified correctly (argmax of the logits)?"""
    out = torch.zeros(len(y), dtype=torch.bool)
    for sl in progress_bar(spans(len(y), batch_size), progress, "clean", math.ceil(len(y) / batch_size)):
        pred = model(to_float(x[sl], device)).argmax(1).cpu()
        out[sl] = pred == y[sl].cpu()
    return out


def batched_flags(
    attack: Attack, model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int = 0,
    batch_size: int = 256, device: str | torch.device = "cpu", start_flags: Tensor | None = None,
    progress: bool = False,
) -> Tensor:
    """Boolean ``[N]`` (CPU): is each example still correct after ``attack`` (its ``flags``, batch by batch)?

    Args:
        attack: a registered attack. model: maps ``[N, C, H, W]`` images in ``[0, 1]`` to logits (eval mode,
            on ``device``). x: images (float in ``[0, 1]`` or uint8). y: int labels ``[N]``.
        spec: the PGD attack it runs against (norm, ε, step, steps, restarts).
        seed: seed of the random starts (default 0). batch_size: default 256. device: default ``"cpu"``.
        start_flags: points to attack (default: the clean-correct ones); the others stay as given.
        progress: tqdm bar labelled with ``attack.describe(spec)`` (default False).
    """
    if start_flags is None:
        flags = correct_flags(model, x, y, batch_size=batch_size, device=device)
    else:
        flags = start_flags.clone()
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    idx = torch.nonzero(flags).flatten()
    for sl in progress_bar(spans(len(idx), batch_size), progress, attack.describe(spec),
                           math.ceil(len(idx) / batch_size)):
        rows = idx[sl]
        xb, yb = to_float(x[rows], device), y[rows].to(device)
        flags[rows] = attack.flags(model, xb, yb, spec, clip_values=(0.0, 1.0), generator=gen).cpu()
    return flags

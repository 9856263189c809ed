"""Which points stay correct: the clean, PGD-k / CW and validation-attack loops over an image set, batch by batch.

Every function returns a boolean ``[N]`` on the CPU (True: still classified correctly) and attacks only the points
of ``start_flags`` (default: the clean-correct ones); a point misclassified without attack stays non-robust
(AutoAttack's convention). Random starts come from a generator seeded with ``seed``; the global RNG is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from ..attacks import AttackSpec, pgd
from ..loader import to_unit_float

__all__ = ["correct_flags", "pgd_flags", "val_attack_flags", "percent", "spans", "progress_bar", "to_float"]


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


def _start(model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, start_flags: Tensor | None, batch_size: int,
           device: str | torch.device) -> Tensor:
    """A copy of ``start_flags``, or the clean-correct points."""
    if start_flags is None:
        return correct_flags(model, x, y, batch_size=batch_size, device=device)
    return start_flags.clone()


def pgd_flags(
    model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int = 0,
    batch_size: int = 256, device: str | torch.device = "cpu", start_flags: Tensor | None = None,
    progress: bool = False, desc: str | None = None,
) -> Tensor:
    """Boolean ``[N]`` (CPU): is each example still correct after the PGD attack ``spec``?

    Args:
        model: maps ``[N, C, H, W]`` images in ``[0, 1]`` to logits ``[N, K]`` (eval mode, on ``device``).
        x: images ``[N, C, H, W]`` (float in ``[0, 1]`` or uint8). y: int labels ``[N]``.
        spec: the attack (norm, ε, step, steps, restarts; loss ``"ce"`` = PGD, ``"cw"`` = CW margin).
        seed: seed of the random starts (default 0). batch_size: default 256. device: default ``"cpu"``.
        start_flags: points to attack (default: the clean-correct ones); the others stay as given.
        progress: tqdm bar (default False). desc: its label (default ``"pgd-<steps>"`` / ``"cw-<steps>"``).
    """
    flags = _start(model, x, y, start_flags, batch_size, device)
    if spec.steps <= 0:
        return flags
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    idx = torch.nonzero(flags).flatten()
    desc = desc or f"{'cw' if spec.loss == 'cw' else 'pgd'}-{spec.steps}"
    for sl in progress_bar(spans(len(idx), batch_size), progress, desc, math.ceil(len(idx) / batch_size)):
        rows = idx[sl]
        xb, yb = to_float(x[rows], device), y[rows].to(device)
        x_adv = pgd(model, xb, yb, eps=spec.eps, eps_step=spec.step_size, max_iter=spec.steps, norm=spec.norm,
                    loss=spec.loss, restarts=spec.restarts, generator=gen, bn_mode=None)
        with torch.no_grad():
            flags[rows] = (model(x_adv).argmax(1) == yb).cpu()
    return flags


def val_attack_flags(
    model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, spec: AttackSpec, name: str = "apgd",
    targets: int | None = None, seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu",
    start_flags: Tensor | None = None, progress: bool = False,
) -> Tensor:
    """Boolean ``[N]`` (CPU): is each example still correct after the trainer's validation attack ``name``
    (:mod:`art_adr.validation`; ``k`` = ``spec.steps``)? The attack ``best.pt`` is selected by, run on other
    images; seeded from ``seed``, the global RNG untouched."""
    from ..defaults import VAL_TARGETS
    from ..validation import get_val_attack

    attack = get_val_attack(name, VAL_TARGETS if targets is None else targets)
    flags = _start(model, x, y, start_flags, batch_size, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    idx = torch.nonzero(flags).flatten()
    for sl in progress_bar(spans(len(idx), batch_size), progress, attack.describe(spec),
                           math.ceil(len(idx) / batch_size)):
        rows = idx[sl]
        xb, yb = to_float(x[rows], device), y[rows].to(device)
        flags[rows] = attack.flags(model, xb, yb, spec, clip_values=(0.0, 1.0), generator=gen).cpu()
    return flags

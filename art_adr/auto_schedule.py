"""τ and λ set automatically during training ("auto" mode), from hold-out signals, with no grid.

The paper (§H and conclusion) leaves choosing τ/λ automatically as future work; its own argument is that the
rectified label should be *calibrated under attack*. The rule here follows that argument literally:

- **τ** (``temperature="auto"``): at every validation, the temperature that minimises the EMA teacher's negative
  log-likelihood on adversarial examples of the hold-out (temperature scaling, Guo et al. 2017, on PGD-k examples
  of the teacher, ``eval_max_iter`` steps): the teacher's softmax at that τ is its best-calibrated probability
  under attack. NLL(z/τ) is convex in 1/τ, so a golden-section search over 1/τ finds the minimum in ``bounds``.
- **λ** (``interpolation="auto"``): the teacher's hold-out robust accuracy under the validation attack
  (``val_attack``): trust in the teacher grows as it becomes right under attack (λ ∈ [0, 1] by construction).

Before the first validation τ = 1 and λ = 0 (one-hot labels: a random teacher earns no trust). The values
hold until the next validation, so they change once per ``eval_every`` epochs; they are part of the checkpoint
state (an exact resume continues them) and the history records them as ``tau``/``lambda``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .defaults import AUTO, is_auto  # defined without torch, so config (and the CLI's --help) need not import it

__all__ = ["AUTO", "TAU_BOUNDS", "fit_temperature", "AutoRectification", "is_auto"]

TAU_BOUNDS = (0.5, 5.0)
_GOLDEN = (math.sqrt(5) - 1) / 2


def _nll(logits: Tensor, targets: Tensor, inv_tau: float) -> float:
    return float(F.cross_entropy(logits * inv_tau, targets))


def fit_temperature(logits: Tensor, targets: Tensor, bounds: tuple[float, float] = TAU_BOUNDS,
                    iters: int = 40) -> float:
    """Temperature scaling: the τ in ``bounds`` minimising the mean NLL of ``softmax(logits / τ)`` for ``targets``.

    Golden-section search over β = 1/τ, where the NLL is convex (log-sum-exp of a linear function minus a linear
    term); ``iters`` = 40 shrinks the interval by 0.618⁴⁰ ≈ 4e-9.

    Example:
        >>> tau = fit_temperature(teacher_logits_on_adversarial_holdout, labels)
    """
    lo_tau, hi_tau = (float(b) for b in bounds)
    if not 0 < lo_tau < hi_tau:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
    if logits.dim() != 2 or logits.shape[0] != targets.shape[0] or logits.shape[0] == 0:
        raise ValueError("logits must be [N, K] and targets [N] with N > 0")
    z, y = logits.detach().float(), targets.detach().long()
    a, b = 1.0 / hi_tau, 1.0 / lo_tau
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = _nll(z, y, c), _nll(z, y, d)
    for _ in range(int(iters)):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = _nll(z, y, c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = _nll(z, y, d)
    return 1.0 / ((a + b) / 2)


@dataclass
class AutoRectification:
    """The automatic τ/λ state of one trainer: which of the two are automatic and their current values."""

    auto_temperature: bool = False
    auto_interpolation: bool = False
    temperature: float = 1.0
    interpolation: float = 0.0
    updates: int = 0

    @property
    def active(self) -> bool:
        return self.auto_temperature or self.auto_interpolation

    def update(self, teacher_adv_logits: Tensor | None, targets: Tensor | None, teacher_robust_acc: float) -> None:
        """One validation's signals: fit τ on the teacher's adversarial logits, set λ to its robust accuracy."""
        if self.auto_temperature and teacher_adv_logits is not None and targets is not None:
            self.temperature = fit_temperature(teacher_adv_logits, targets)
        if self.auto_interpolation:
            self.interpolation = min(1.0, max(0.0, float(teacher_robust_acc)))
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's ``auto`` entry; its keys ``tau``/``lambda`` are the on-disk format."""
        return {"tau": self.temperature, "lambda": self.interpolation, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.temperature, self.interpolation = float(state["tau"]), float(state["lambda"])
            self.updates = int(state.get("updates", 0))


@torch.no_grad()
def teacher_adversarial_logits(forward: Any, x_adv_fn: Any, xs: Tensor, ys: Tensor, batch_size: int) -> Tensor:
    """The teacher's logits on adversarial versions of the hold-out (``x_adv_fn(x, y)`` makes them), batched."""
    out = []
    for i in range(0, xs.shape[0], batch_size):
        x_adv = x_adv_fn(xs[i : i + batch_size], ys[i : i + batch_size])
        out.append(forward(x_adv).float())
    return torch.cat(out)

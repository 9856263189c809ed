"""Pure maths of ADR and adversarial training (Wu, Wang & Chen, ICLR 2024, Eq. 3-5; Zhang et al. 2019)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cosine_schedule",
    "one_hot",
    "ema_warmup_decay",
    "rectify_labels",
    "interpolation_per_sample",
    "soft_cross_entropy",
    "trades_kl",
    "cw_margin_loss",
    "project_linf",
    "project_l2",
    "clip_to_range",
]


def cosine_schedule(start: float, end: float, step: int, total_steps: int) -> float:
    """Cosine annealing ``end + ½(start − end)(1 + cos(π·step/total_steps))`` (ADR's τ and λ schedules).

    ``step = 0`` gives ``start``, ``step = total_steps`` gives ``end``; steps beyond are clamped.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    t = min(max(step, 0), total_steps) / total_steps
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * t))


def ema_warmup_decay(decay: float, step: int) -> float:
    """EMA decay with warm-up, ``min(γ, (1 + t)/(10 + t))`` (TensorFlow's ``num_updates`` rule; timm, Gowal et al.).

    Lets a teacher follow the student early in short runs instead of staying half at its random initialisation.
    """
    return min(decay, (1.0 + step) / (10.0 + step))


def one_hot(targets: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Index labels ``[N]`` to one-hot rows ``[N, C]``."""
    return F.one_hot(targets.long(), num_classes).to(dtype)


def interpolation_per_sample(teacher_probs: Tensor, targets: Tensor, interpolation: float) -> Tensor:
    """ADR Eq. 4: ``λ_i = clip(λ − (max_k p_k − p_{y_i}), 0, 1)`` on the temperature-scaled probabilities."""
    p_max = teacher_probs.max(dim=1).values
    p_true = teacher_probs.gather(1, targets.long().view(-1, 1)).squeeze(1)
    return (interpolation - (p_max - p_true)).clamp(0.0, 1.0)


def rectify_labels(teacher_logits: Tensor, targets: Tensor, temperature: float, interpolation: float) -> Tensor:
    """ADR rectified labels ``P(x_i) = λ_i·softmax(f_t(x_i)/τ) + (1 − λ_i)·y_i`` (Eq. 3-5).

    Args:
        teacher_logits: ``[N, C]`` logits of the EMA teacher on the clean batch.
        targets: ``[N]`` integer ground-truth labels.
        temperature: τ > 0.
        interpolation: λ in [0, 1].

    τ and λ are checked once, where they enter (``AdversarialTrainerADR``, ``RunConfig.validate``), not at every
    iteration here.

    Returns:
        ``[N, C]`` probability rows (float32) whose argmax is the ground truth.
    """
    probs = torch.softmax(teacher_logits.float() / temperature, dim=1)
    lam = interpolation_per_sample(probs, targets, interpolation).unsqueeze(1)
    return lam * probs + (1.0 - lam) * one_hot(targets, probs.shape[1], probs.dtype)


def soft_cross_entropy(logits: Tensor, target_probs: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy against probability targets, ``−Σ_c q_c log softmax(z)_c`` (equals CE for one-hot q)."""
    per_sample = -(target_probs * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ValueError(f"unknown reduction {reduction!r}")


def trades_kl(logits_adv: Tensor, logits_clean: Tensor, reduction: str = "batchmean") -> Tensor:
    """TRADES robustness term ``KL(softmax(z_clean) ‖ softmax(z_adv))`` (Zhang et al. 2019, Eq. 5).

    ``reduction="batchmean"`` sums over classes and averages over the batch, as the reference code does
    (``KLDivLoss(size_average=False) / batch_size``); ``"sum"`` and ``"none"`` (per sample) also accepted.
    """
    log_p_adv = F.log_softmax(logits_adv.float(), dim=1)
    p_clean = F.softmax(logits_clean.float(), dim=1)
    per_sample = F.kl_div(log_p_adv, p_clean, reduction="none").sum(dim=1)
    if reduction == "batchmean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ValueError(f"unknown reduction {reduction!r}")


def mart_loss(logits_adv: Tensor, logits_clean: Tensor, target_probs: Tensor, targets: Tensor, beta: float,
              reduction: str = "mean") -> Tensor:
    """MART (Wang et al. 2020, Eq. 9, reference ``mart.py``): ``BCE + β·KL(p(x) ‖ p(x'))·(1 − p_y(x))``.

    ``BCE = CE(z_adv, q) − log(1.0001 − p_{y'}(x'))`` with ``y'`` the most likely class other than ``y`` at ``x'``
    (``q`` = ``target_probs``: one-hot ``y`` is MART; ADR's rectified label for MART+ADR); the KL term
    ``Σ_k p_k(x)·(log p_k(x) − log(p_k(x') + 1e-12))`` is weighted per example by ``1.0000001 − p_y(x)``, the
    reference code's constants. ``targets``: hard labels ``[N]``; reduction ``"mean"`` (the reference: sum of the
    weighted KL / N) or ``"none"``.
    """
    p_adv = F.softmax(logits_adv.float(), dim=1)
    p_clean = F.softmax(logits_clean.float(), dim=1)
    y = targets.long().view(-1, 1)
    runner_up = p_adv.scatter(1, y, float("-inf")).argmax(dim=1, keepdim=True)  # most likely wrong class at x'
    margin = -torch.log(1.0001 - p_adv.gather(1, runner_up).squeeze(1) + 1e-12)
    boosted = soft_cross_entropy(logits_adv, target_probs, reduction="none") + margin
    kl = F.kl_div(torch.log(p_adv + 1e-12), p_clean, reduction="none").sum(dim=1)
    weighted = kl * (1.0000001 - p_clean.gather(1, y).squeeze(1))
    per_sample = boosted + beta * weighted
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"unknown reduction {reduction!r}")


def cw_margin_loss(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Carlini-Wagner margin ``max_{k≠y} z_k − z_y`` (to be maximised; Carlini & Wagner 2017)."""
    logits = logits.float()
    z_true = logits.gather(1, targets.long().view(-1, 1)).squeeze(1)
    other = logits.scatter(1, targets.long().view(-1, 1), float("-inf"))
    margin = other.max(dim=1).values - z_true
    if reduction == "mean":
        return margin.mean()
    if reduction == "sum":
        return margin.sum()
    return margin


def clip_to_range(x: Tensor, clip_values: tuple[float, float] | None) -> Tensor:
    """Clamp to the valid input range ``clip_values = (min, max)`` (no-op for ``None``)."""
    if clip_values is None:
        return x
    return x.clamp(clip_values[0], clip_values[1])


def project_linf(x_adv: Tensor, x: Tensor, eps: float, clip_values: tuple[float, float] | None) -> Tensor:
    """Projection onto ``{x': ‖x' − x‖_∞ ≤ ε} ∩ [min, max]^d``."""
    x_adv = torch.max(torch.min(x_adv, x + eps), x - eps)
    return clip_to_range(x_adv, clip_values)


def _flat_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


def project_l2(x_adv: Tensor, x: Tensor, eps: float, clip_values: tuple[float, float] | None) -> Tensor:
    """Projection onto the L2 ball ``{x': ‖x' − x‖_2 ≤ ε}`` (radial scaling), then the box."""
    delta = x_adv - x
    norm = _flat_norm(delta)
    factor = torch.clamp(eps / (norm + 1e-12), max=1.0)
    return clip_to_range(x + delta * factor, clip_values)


def l2_normalize(t: Tensor) -> Tensor:
    """Per-sample unit L2 direction (zero rows stay zero)."""
    return t / (_flat_norm(t) + 1e-12)

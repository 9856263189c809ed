"""What the analyses measure on a model's outputs: entropy, Jensen-Shannon divergence, calibration (ECE and the
reliability curve), and the logits and PGD examples they are measured on (Wu et al. 2024, §3.2, Fig. 1-2)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..attacks import default_eps_step, pgd
from ..modes import module_mode

__all__ = ["entropy", "js_divergence", "reliability_curve", "expected_calibration_error", "histogram",
           "predict_logits", "adversarial_examples", "robust_loss", "output_analysis"]


def entropy(probs: Tensor) -> Tensor:
    """Shannon entropy ``−Σ_c p_c log p_c`` (nats) of each row of ``probs`` ``[N, C]`` (§3.2, Fig. 1-2)."""
    probs = probs.double()
    return -torch.xlogy(probs, probs).sum(dim=-1)


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence ``½KL(p‖m) + ½KL(q‖m)``, ``m = ½(p+q)``, per row, nats ≤ log 2 (Fig. 2e)."""
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(dim=-1)
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(dim=-1)
    return (0.5 * (kl_pm + kl_qm)).clamp(0.0, math.log(2.0))


def reliability_curve(probs: Tensor, labels: Tensor, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin: mean confidence, accuracy, count (Guo et al. 2017 reliability diagram).

    Bins are ``(lo, hi]`` (the first also holds confidence 0); empty bins have NaN confidence and accuracy.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    probs = torch.as_tensor(probs).double()
    labels = torch.as_tensor(labels).long().to(probs.device)
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=probs.device)
    index = (torch.bucketize(conf, edges[1:-1], right=False)).clamp(0, n_bins - 1)
    counts = torch.bincount(index, minlength=n_bins).double()
    conf_sum = torch.bincount(index, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(index, weights=correct, minlength=n_bins)
    safe = counts.clamp(min=1.0)
    nan = torch.full_like(counts, float("nan"))
    return {
        "bin_edges": edges.cpu().numpy(),
        "confidence": torch.where(counts > 0, conf_sum / safe, nan).cpu().numpy(),
        "accuracy": torch.where(counts > 0, acc_sum / safe, nan).cpu().numpy(),
        "counts": counts.long().cpu().numpy(),
    }


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """ECE ``Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|`` over equal-width confidence bins (Naeini et al. 2015)."""
    curve = reliability_curve(probs, labels, n_bins)
    counts = curve["counts"].astype(np.float64)
    if counts.sum() == 0:
        return float("nan")
    gap = np.nan_to_num(np.abs(curve["accuracy"] - curve["confidence"]))
    return float((counts * gap).sum() / counts.sum())


def histogram(values: np.ndarray | Tensor, bins: int, value_range: tuple[float, float]) -> dict[str, list]:
    """Bin edges and counts of ``values`` (JSON-ready), values outside the range clipped into the end bins."""
    values = np.asarray(torch.as_tensor(values).detach().cpu(), dtype=np.float64)
    values = np.clip(values, value_range[0], value_range[1])
    counts, edges = np.histogram(values, bins=bins, range=value_range)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """Logits ``[N, K]`` (float32, on ``x.device``) of ``model`` in eval mode, batch by batch."""
    with module_mode(model, False):
        return torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])


def adversarial_examples(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    eps_step: float | None = None,
    max_iter: int = 10,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
    desc: str = "PGD",
    norm: str = "inf",
) -> Tensor:
    """PGD-k examples in ``norm`` (``"inf"`` default, or ``"2"``; one-hot CE, random start, BN in eval mode; Eq. 2)
    from one seeded generator. ``eps_step`` default: art-adr's one rule ``min(ε, 2.5·ε/k)`` (ε/4 at k = 10)."""
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    step = default_eps_step(eps, max_iter) if eps_step is None else eps_step
    out = []
    for i in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False):
        out.append(
            pgd(model, x[i : i + batch_size], y[i : i + batch_size], eps=eps, eps_step=step,
                max_iter=max_iter, norm=norm, bn_mode="eval", generator=gen)
        )
    return torch.cat(out) if out else x.clone()


def robust_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    eps_step: float | None = None,
    max_iter: int = 10,
    batch_size: int = 256,
    seed: int = 0,
    norm: str = "inf",
) -> tuple[float, float]:
    """Mean one-hot CE and accuracy of ``model`` on its own PGD-k examples in ``norm`` (the y-axis of Fig. 4)."""
    x_adv = adversarial_examples(model, x, y, eps=eps, eps_step=eps_step, max_iter=max_iter,
                                 batch_size=batch_size, seed=seed, norm=norm)
    logits = predict_logits(model, x_adv, batch_size)
    loss = F.cross_entropy(logits.double(), y.long(), reduction="mean")
    return float(loss), float((logits.argmax(1) == y).double().mean())


def output_analysis(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    eps_step: float | None = None,
    max_iter: int = 10,
    x_ood: Tensor | None = None,
    n_bins: int = 15,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
    desc: str = "PGD",
    norm: str = "inf",
    examples: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> dict[str, Any]:
    """Entropies (OOD, correct/incorrect, clean/adversarial), clean↔adversarial JS divergence, ECE (§3.2,
    Fig. 1-2); the adversarial examples are PGD's in ``norm``, or ``examples(x, y)``'s when given (another
    attack of the registry, :func:`art_adr.analysis.pipeline.attack_examples`)."""
    probs = torch.softmax(predict_logits(model, x, batch_size), dim=1)
    x_adv = examples(x, y) if examples is not None else adversarial_examples(
        model, x, y, eps=eps, eps_step=eps_step, max_iter=max_iter, batch_size=batch_size, seed=seed,
        progress=progress, desc=desc, norm=norm)
    probs_adv = torch.softmax(predict_logits(model, x_adv, batch_size), dim=1)
    correct = probs.argmax(1) == y
    out: dict[str, Any] = {
        "num_classes": probs.shape[1],
        "n": len(y),
        "accuracy": float(correct.double().mean()),
        "adv_accuracy": float((probs_adv.argmax(1) == y).double().mean()),
        "entropy_clean": entropy(probs).cpu().numpy(),
        "entropy_adv": entropy(probs_adv).cpu().numpy(),
        "correct": correct.cpu().numpy(),
        "js": js_divergence(probs, probs_adv).cpu().numpy(),
        "ece_clean": expected_calibration_error(probs, y, n_bins),
        "ece_adv": expected_calibration_error(probs_adv, y, n_bins),
        "reliability_clean": reliability_curve(probs, y, n_bins),
        "reliability_adv": reliability_curve(probs_adv, y, n_bins),
    }
    if x_ood is not None:
        probs_ood = torch.softmax(predict_logits(model, x_ood, batch_size), dim=1)
        out["entropy_ood"] = entropy(probs_ood).cpu().numpy()
    return out

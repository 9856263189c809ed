"""Output-distribution, calibration and loss-landscape analyses (Wu et al. 2024, §3.2, §5.5, App. E)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .attacks import AttackSpec, default_eps_step, pgd
from .modes import module_mode

__all__ = [
    "entropy",
    "js_divergence",
    "expected_calibration_error",
    "reliability_curve",
    "histogram",
    "filter_normalized_direction",
    "perturbed_weights",
    "predict_logits",
    "adversarial_examples",
    "robust_loss",
    "weight_landscape",
    "input_landscape",
    "surface_gradient",
    "adapt_images",
    "digits_ood",
    "output_analysis",
    "analyze_models",
    "to_json",
    "plot_all",
]

_LOG_EPS = 1e-12


# ----------------------------------------------------------------------------------------------- maths


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


# ------------------------------------------------------------------------------------ model evaluation


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


# ---------------------------------------------------------------------------- weight loss landscape


def filter_normalized_direction(
    model: nn.Module, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Gaussian direction scaled per filter to the filter's norm, biases/BN zero (Li et al. 2018; Fig. 4).

    Every parameter with ≥ 2 dimensions (conv kernels, linear weights) is split into filters along its
    first (output) dimension and each random filter ``d_i`` becomes ``d_i / ‖d_i‖ · ‖w_i‖``.
    """
    direction: dict[str, Tensor] = {}
    for name, p in model.named_parameters():
        if p.dim() <= 1:
            direction[name] = torch.zeros_like(p)
            continue
        gen_device = generator.device if generator is not None else p.device
        d = torch.randn(p.shape, generator=generator, device=gen_device, dtype=torch.float32).to(p.device)
        shape = (-1,) + (1,) * (p.dim() - 1)
        d_norm = d.flatten(1).norm(dim=1).view(shape)
        w_norm = p.detach().float().flatten(1).norm(dim=1).view(shape)
        direction[name] = (d * w_norm / (d_norm + 1e-10)).to(p.dtype)
    return direction


@contextlib.contextmanager
def perturbed_weights(model: nn.Module, direction: Mapping[str, Tensor], alpha: float) -> Iterator[nn.Module]:
    """Temporarily set ``w ← w₀ + α·d`` (names from ``named_parameters``); restores ``w₀`` bit for bit."""
    params = dict(model.named_parameters())
    unknown = set(direction) - set(params)
    if unknown:
        raise ValueError(f"direction has parameters the model lacks: {sorted(unknown)[:3]}")
    saved = {name: params[name].detach().clone() for name in direction}
    try:
        with torch.no_grad():
            for name, d in direction.items():
                params[name].copy_(saved[name] + alpha * d.to(saved[name].device, saved[name].dtype))
        yield model
    finally:
        with torch.no_grad():
            for name, w in saved.items():
                params[name].copy_(w)


def weight_landscape(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    magnitudes: Sequence[float],
    *,
    direction: Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    eps: float = 8 / 255,
    eps_step: float | None = None,
    max_iter: int = 10,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
    desc: str = "weight landscape",
    norm: str = "inf",
) -> dict[str, list[float]]:
    """Robust loss along ``w + α·d`` with PGD-k examples regenerated for each perturbed model (§5.5, Fig. 4).

    Returns ``{"magnitudes", "losses", "accuracies"}``; the loss is one-hot CE on the adversarial
    examples, each attack seeded with ``seed``. The weights are restored exactly afterwards.
    """
    if direction is None:
        direction = filter_normalized_direction(model, generator)
    losses, accs = [], []
    for alpha in tqdm(list(magnitudes), desc=desc, disable=not progress, leave=False):
        with perturbed_weights(model, direction, float(alpha)):
            loss, acc = robust_loss(model, x, y, eps=eps, eps_step=eps_step, max_iter=max_iter,
                                    batch_size=batch_size, seed=seed, norm=norm)
        losses.append(loss)
        accs.append(acc)
    return {"magnitudes": [float(a) for a in magnitudes], "losses": losses, "accuracies": accs}


# ----------------------------------------------------------------------------- input loss landscape


def _grid_coords(grid: int | Sequence[float], radius: float) -> np.ndarray:
    if isinstance(grid, int):
        if grid < 2:
            raise ValueError(f"grid must have >= 2 points, got {grid}")
        return np.linspace(-radius, radius, grid)
    return np.asarray(list(grid), dtype=np.float64)


def input_landscape(
    model: nn.Module,
    x: Tensor,
    y: Tensor | int,
    grid: int | Sequence[float] = 21,
    *,
    radius: float = 16 / 255,
    generator: torch.Generator | None = None,
    r2: Tensor | None = None,
    clip_values: tuple[float, float] | None = None,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """CE loss over the plane ``x + a·sign(∇ₓ loss) + b·r₂``, ``r₂ ~ Rademacher`` (App. E, Fig. 7).

    ``x`` is one image ``[C, H, W]`` (or ``[1, C, H, W]``); ``grid`` the points per axis (an odd count holds
    the origin) over ``[−radius, radius]`` or explicit coordinates. Returns ``{"a", "b", "loss"}`` with
    ``loss[i, j]`` at ``(a[i], b[j])``. ``r2`` may be given to share it between models.
    """
    x = x.reshape(1, *x.shape[-3:]).detach()
    y_t = torch.as_tensor(y, device=x.device).reshape(1).long()
    coords = _grid_coords(grid, radius)
    with module_mode(model, False):
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            grad = torch.autograd.grad(F.cross_entropy(model(xg).float(), y_t), xg)[0]
        r1 = grad.sign()
        if r2 is None:
            gen_device = generator.device if generator is not None else x.device
            r2 = torch.randint(0, 2, x.shape, generator=generator, device=gen_device).to(x.device, x.dtype)
            r2 = 2 * r2 - 1
        r2 = r2.reshape(x.shape).to(x.device, x.dtype)
        aa, bb = np.meshgrid(coords, coords, indexing="ij")
        a_t = torch.as_tensor(aa.ravel(), dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        b_t = torch.as_tensor(bb.ravel(), dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        losses = []
        with torch.no_grad():
            for i in range(0, len(a_t), batch_size):
                pts = x + a_t[i : i + batch_size] * r1 + b_t[i : i + batch_size] * r2
                if clip_values is not None:
                    pts = pts.clamp(*clip_values)
                logits = model(pts).float()
                losses.append(F.cross_entropy(logits.double(), y_t.expand(len(pts)), reduction="none"))
    loss = torch.cat(losses).view(len(coords), len(coords)).cpu().numpy()
    return {"a": coords, "b": coords.copy(), "loss": loss}


def surface_gradient(loss: np.ndarray, a: np.ndarray, b: np.ndarray, unit: float = 1 / 255) -> np.ndarray:
    """Slope ``‖∇_{(a,b)} z‖`` of the landscape per ``unit`` step (Fig. 7's colour, before clipping)."""
    da, db = np.gradient(np.asarray(loss, dtype=np.float64), np.asarray(a) / unit, np.asarray(b) / unit)
    return np.sqrt(da**2 + db**2)


# ------------------------------------------------------------------------------------------- data


def adapt_images(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Resize ``[N, C, H, W]`` images in [0, 1] to ``(C', H', W')`` (bilinear; grey↔RGB by repeat/mean)."""
    c, h, w = (int(s) for s in shape)
    x = x.float()
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.repeat(1, c, 1, 1)
        elif c == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise ValueError(f"cannot map {x.shape[1]} channels to {c}")
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.clamp(0.0, 1.0)


def digits_ood(shape: Sequence[int], n: int | None = None, seed: int = 0) -> Tensor:
    """scikit-learn's bundled 8×8 digits in [0, 1], resized to ``shape`` — an offline OOD set (cf. Fig. 1)."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 16.0
    if n is not None and n < len(images):
        images = images[np.random.default_rng(seed).permutation(len(images))[:n]]
    return adapt_images(torch.from_numpy(images).unsqueeze(1), shape)


# ------------------------------------------------------------------------------------------ pipeline


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
) -> dict[str, Any]:
    """Entropies (OOD, correct/incorrect, clean/PGD), clean↔PGD JS divergence, ECE (§3.2, Fig. 1-2); PGD in
    ``norm``."""
    probs = torch.softmax(predict_logits(model, x, batch_size), dim=1)
    x_adv = adversarial_examples(model, x, y, eps=eps, eps_step=eps_step, max_iter=max_iter,
                                 batch_size=batch_size, seed=seed, progress=progress, desc=desc, norm=norm)
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


def analyze_models(
    models: Mapping[str, nn.Module],
    x: Tensor,
    y: Tensor,
    *,
    spec: AttackSpec | None = None,
    x_ood: Tensor | None = None,
    n_bins: int = 15,
    magnitudes: Sequence[float] = tuple(np.linspace(-1.0, 1.0, 11)),
    directions: int = 1,
    weight_examples: int = 256,
    input_examples: int = 3,
    grid: int = 21,
    radius: float | None = None,
    analyses: Sequence[str] = ("outputs", "weights", "inputs"),
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the chosen analyses on every model with the same examples, direction seeds and r₂ (comparable).

    ``spec``: the PGD attack of the output and weight-landscape analyses (default ``AttackSpec()``: PGD-10 L∞
    ε = 8/255, α = 2/255; ``art-adr analyze`` passes the run's own, as ``evaluate`` does)."""
    spec = spec if spec is not None else AttackSpec()
    if spec.loss != "ce" or spec.restarts != 1:
        raise ValueError(f"the analyses attack with one-start PGD (loss 'ce', restarts 1), got {spec.describe()}")
    eps, eps_step, max_iter, norm = spec.eps, spec.step_size, spec.steps, spec.norm
    results: dict[str, Any] = {
        "settings": {"eps": eps, "eps_step": eps_step, "max_iter": max_iter, "norm": spec.threat_model,
                     "attack": spec.describe(),
                     "n_examples": len(y), "n_ood": 0 if x_ood is None else len(x_ood), "n_bins": n_bins,
                     "magnitudes": [float(m) for m in magnitudes], "directions": directions,
                     "weight_examples": min(weight_examples, len(y)), "input_examples": input_examples,
                     "grid": grid, "radius": 2 * eps if radius is None else radius, "seed": seed},
        "models": {name: {} for name in models},
    }
    radius = results["settings"]["radius"]
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    idx = torch.randperm(len(y), generator=gen, device=x.device)
    r2 = (2 * torch.randint(0, 2, x.shape[1:], generator=gen, device=x.device) - 1).to(x.dtype)
    xw, yw = x[idx[:weight_examples]], y[idx[:weight_examples]]
    for name, model in models.items():
        res = results["models"][name]
        if "outputs" in analyses:
            res["outputs"] = output_analysis(model, x, y, eps=eps, eps_step=eps_step, max_iter=max_iter,
                                             x_ood=x_ood, n_bins=n_bins, batch_size=batch_size, seed=seed,
                                             progress=progress, desc=f"{name}: PGD-{max_iter}", norm=norm)
        if "weights" in analyses:
            res["weights"] = []
            for k in range(directions):
                dgen = torch.Generator(device="cpu")
                dgen.manual_seed(seed * 1000 + k)
                res["weights"].append(weight_landscape(
                    model, xw, yw, magnitudes, generator=dgen, eps=eps, eps_step=eps_step, max_iter=max_iter,
                    batch_size=batch_size, seed=seed, progress=progress, norm=norm,
                    desc=f"{name}: weight landscape {k + 1}/{directions}"))
        if "inputs" in analyses:
            res["inputs"] = []
            for j in tqdm(range(min(input_examples, len(y))), desc=f"{name}: input landscape",
                          disable=not progress, leave=False):
                i = int(idx[j])
                land = input_landscape(model, x[i], y[i], grid, radius=radius, r2=r2, batch_size=batch_size)
                land["index"] = i
                land["label"] = int(y[i])
                land["slope"] = surface_gradient(land["loss"], land["a"], land["b"])
                res["inputs"].append(land)
    return results


def to_json(obj: Any) -> Any:
    """Plain JSON types only: arrays and tensors to lists, NaN and infinities to ``None``."""
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, (np.ndarray, Tensor)):
        return to_json(np.asarray(torch.as_tensor(obj).detach().cpu()).tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj


def summarize(results: Mapping[str, Any], hist_bins: int = 30) -> dict[str, Any]:
    """JSON-ready summary: per-example entropies / JS as means, medians and histograms; landscapes in full."""
    out: dict[str, Any] = {"settings": dict(results["settings"]), "models": {}}
    for name, res in results["models"].items():
        m: dict[str, Any] = {}
        o = res.get("outputs")
        if o is not None:
            log_c = math.log(o["num_classes"])
            correct = np.asarray(o["correct"], dtype=bool)
            groups = {
                "clean": o["entropy_clean"], "adv": o["entropy_adv"],
                "correct": o["entropy_clean"][correct], "incorrect": o["entropy_clean"][~correct],
            }
            if "entropy_ood" in o:
                groups["ood"] = o["entropy_ood"]
            m["accuracy"], m["adv_accuracy"] = o["accuracy"], o["adv_accuracy"]
            m["ece_clean"], m["ece_adv"] = o["ece_clean"], o["ece_adv"]
            m["entropy"] = {
                k: {"n": int(len(v)), "mean": float(np.mean(v)) if len(v) else None,
                    "median": float(np.median(v)) if len(v) else None,
                    "hist": histogram(v, hist_bins, (0, log_c))}
                for k, v in groups.items()
            }
            m["entropy_max"] = log_c
            js = o["js"]
            m["js"] = {"mean": float(np.mean(js)), "median": float(np.median(js)),
                       "hist": histogram(js, hist_bins, (0, math.log(2)))}
            m["reliability_clean"], m["reliability_adv"] = o["reliability_clean"], o["reliability_adv"]
        if "weights" in res:
            m["weight_landscape"] = res["weights"]
        if "inputs" in res:
            m["input_landscape"] = [
                {"index": d["index"], "label": d["label"], "a": d["a"], "b": d["b"], "loss": d["loss"],
                 "mean_slope": float(np.mean(d["slope"]))} for d in res["inputs"]
            ]
        out["models"][name] = m
    return to_json(out)


# --------------------------------------------------------------------------------------------- plots


def _figure(nrows: int, ncols: int, w: float = 3.6, h: float = 3.0, **kw: Any) -> tuple[Any, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _save(fig: Any, path: Path, dpi: int = 110) -> Path:
    fig.savefig(path, dpi=dpi)
    return path


def _hist(ax: Any, values: np.ndarray, label: str, value_range: tuple[float, float], bins: int = 30) -> None:
    values = np.clip(np.asarray(values, dtype=np.float64), *value_range)
    if len(values) == 0:
        return
    weights = np.full(len(values), 1.0 / len(values))
    # outlines, not translucent fills: overlapping histograms make no mixed colour that the legend lacks
    ax.hist(values, bins=bins, range=value_range, weights=weights, label=f"{label} (n={len(values)})",
            histtype="step", linewidth=1.6)


def plot_entropy_ood(results: Mapping[str, Any], path: Path) -> Path:
    """Fig. 1: output-entropy histograms on OOD data, all models overlaid."""
    fig, axes = _figure(1, 1, 5.0, 3.4)
    ax = axes[0, 0]
    for name, res in results["models"].items():
        o = res["outputs"]
        label = f"{name} (mean {np.mean(o['entropy_ood']):.2f})"
        _hist(ax, o["entropy_ood"], label, (0, math.log(o["num_classes"])))
    ax.set(xlabel="output entropy (nats)", ylabel="fraction", title="Entropy on out-of-distribution data")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_entropy_pairs(results: Mapping[str, Any], path: Path, kind: str) -> Path:
    """Fig. 2a-b (``kind="correctness"``) or 2c-d (``"adversarial"``): entropy histograms per model."""
    names = list(results["models"])
    fig, axes = _figure(1, len(names), sharey=True)
    for ax, name in zip(axes[0], names):
        o = results["models"][name]["outputs"]
        rng = (0, math.log(o["num_classes"]))
        if kind == "correctness":
            correct = np.asarray(o["correct"], dtype=bool)
            _hist(ax, o["entropy_clean"][correct], "correct", rng)
            _hist(ax, o["entropy_clean"][~correct], "incorrect", rng)
        else:
            _hist(ax, o["entropy_clean"], "clean", rng)
            _hist(ax, o["entropy_adv"], f"PGD-{results['settings']['max_iter']}", rng)
        ax.set(xlabel="output entropy (nats)", title=name)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("fraction")
    title = "Entropy: correct vs misclassified" if kind == "correctness" else "Entropy: clean vs adversarial"
    fig.suptitle(title)
    return _save(fig, path)


def plot_js(results: Mapping[str, Any], path: Path) -> Path:
    """Fig. 2e: histograms of JS divergence between clean and PGD output distributions, models overlaid."""
    fig, axes = _figure(1, 1, 5.0, 3.4)
    ax = axes[0, 0]
    for name, res in results["models"].items():
        js = res["outputs"]["js"]
        _hist(ax, js, f"{name} (mean {np.mean(js):.3f})", (0, math.log(2)))
    ax.set(xlabel="JS divergence (nats)", ylabel="fraction",
           title=f"Output shift under PGD-{results['settings']['max_iter']}")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_calibration(results: Mapping[str, Any], path: Path) -> Path:
    """Reliability diagrams, clean (top) and PGD (bottom) per model, with ECE in the titles."""
    names = list(results["models"])
    fig, axes = _figure(2, len(names), 3.2, 3.0)
    for col, name in enumerate(names):
        o = results["models"][name]["outputs"]
        for row, key in enumerate(("clean", "adv")):
            ax = axes[row, col]
            curve = o[f"reliability_{key}"]
            edges = curve["bin_edges"]
            centers, width = 0.5 * (edges[1:] + edges[:-1]), edges[1] - edges[0]
            filled = curve["counts"] > 0
            acc, conf, centers = curve["accuracy"][filled], curve["confidence"][filled], centers[filled]
            ax.bar(centers, acc, width=width, edgecolor="black", linewidth=0.5, label="accuracy")
            ax.bar(centers, np.abs(conf - acc), bottom=np.minimum(acc, conf), width=width, color="none",
                   edgecolor="tab:red", hatch="//", linewidth=0.5, label="|gap| to confidence")
            ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
            label = "clean" if key == "clean" else f"PGD-{results['settings']['max_iter']}"
            ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{name}, {label}: ECE {o[f'ece_{key}']:.3f}",
                   xlabel="confidence", ylabel="accuracy")
            ax.title.set_fontsize(9)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_weight_landscape(results: Mapping[str, Any], path: Path) -> Path:
    """Fig. 4: robust (PGD) loss along filter-normalised random weight directions, models overlaid."""
    fig, axes = _figure(1, 1, 5.0, 3.6)
    ax = axes[0, 0]
    for n, (name, res) in enumerate(results["models"].items()):
        color = f"C{n}"
        curves = res["weights"]
        for k, c in enumerate(curves):
            ax.plot(c["magnitudes"], c["losses"], color=color, alpha=0.35 if len(curves) > 1 else 1.0,
                    marker="o", markersize=3, label=None if len(curves) > 1 or k else name)
        if len(curves) > 1:
            ax.plot(curves[0]["magnitudes"], np.mean([c["losses"] for c in curves], axis=0), color=color,
                    linewidth=2.2, label=f"{name} (mean of {len(curves)})")
    ax.set(xlabel="α (filter-normalised direction)", ylabel=f"PGD-{results['settings']['max_iter']} CE loss",
           title="Weight loss landscape")
    ax.legend(fontsize=7)
    return _save(fig, path)


def slope_norm(results: Mapping[str, Any]) -> Any:
    """The input-landscape colour scale: 0 to the 99th percentile of the slopes of every panel (Fig. 7's fixed
    [0, 1] is one flat colour when all slopes lie far below or above 1)."""
    from matplotlib.colors import Normalize

    slopes = np.concatenate([np.ravel(d["slope"]) for m in results["models"].values() for d in m["inputs"]])
    top = float(np.nanpercentile(slopes, 99)) if slopes.size else 1.0
    return Normalize(0.0, top if top > 0 else 1.0)


def plot_input_landscape(results: Mapping[str, Any], path: Path, style: str = "surface") -> Path:
    """Fig. 7: loss over ``x + a·sign(∇ₓ) + b·r₂``; rows models, columns examples, colour = slope, on a scale
    from 0 to the 99th percentile of the slopes shown."""
    from matplotlib import cm, colormaps

    names = list(results["models"])
    ncols = max(len(results["models"][n]["inputs"]) for n in names)
    kw = {"subplot_kw": {"projection": "3d"}} if style == "surface" else {}
    fig, axes = _figure(len(names), ncols, 3.4, 3.6 if style == "surface" else 3.0, **kw)
    norm = slope_norm(results)
    cmap = colormaps["viridis"]
    zmax = max(float(np.max(d["loss"])) for n in names for d in results["models"][n]["inputs"])
    for r, name in enumerate(names):
        for c in range(ncols):
            ax = axes[r, c]
            lands = results["models"][name]["inputs"]
            if c >= len(lands):
                ax.set_axis_off()
                continue
            d = lands[c]
            a, b = np.asarray(d["a"]) * 255, np.asarray(d["b"]) * 255
            aa, bb = np.meshgrid(a, b, indexing="ij")
            slope = np.clip(d["slope"], norm.vmin, norm.vmax)
            if style == "surface":
                ax.plot_surface(aa, bb, d["loss"], facecolors=cmap(norm(slope)), rstride=1, cstride=1,
                                linewidth=0, antialiased=False, shade=False)
                ax.set_zlim(0, zmax)
                ax.set_zlabel("loss", fontsize=7)
            else:
                cs = ax.contourf(aa, bb, d["loss"], levels=15, cmap="viridis")
                fig.colorbar(cs, ax=ax, shrink=0.8)
            ax.set_xlabel("a·255 (sign grad)", fontsize=7)
            ax.set_ylabel("b·255 (Rademacher)", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_title(f"{name}, example {d['index']} (y={d['label']})", fontsize=8)
    if style == "surface":
        fig.get_layout_engine().set(h_pad=0.25)
        sm = cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=0.5, location="bottom",
                     label=f"landscape slope |∇ loss| per 1/255 step (0 to {norm.vmax:.3g}, the 99th percentile)")
    fig.suptitle("Input loss landscape")
    return _save(fig, path)


def plot_all(results: Mapping[str, Any], out_dir: str | Path, style: str = "surface") -> list[Path]:
    """Write one PNG per analysis present in ``results`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = list(results["models"].values())
    paths: list[Path] = []
    if models and all("outputs" in m for m in models):
        if all("entropy_ood" in m["outputs"] for m in models):
            paths.append(plot_entropy_ood(results, out / "entropy_ood.png"))
        paths.append(plot_entropy_pairs(results, out / "entropy_correctness.png", "correctness"))
        paths.append(plot_entropy_pairs(results, out / "entropy_adversarial.png", "adversarial"))
        paths.append(plot_js(results, out / "js_divergence.png"))
        paths.append(plot_calibration(results, out / "calibration.png"))
    if models and all("weights" in m for m in models):
        paths.append(plot_weight_landscape(results, out / "weight_landscape.png"))
    if models and all(m.get("inputs") for m in models):
        paths.append(plot_input_landscape(results, out / "input_landscape.png", style))
    return paths

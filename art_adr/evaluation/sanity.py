"""Gradient-masking checks of ADR appendix E (after Carlini et al. 2019): accuracy against ε up to the unbounded
radius, and against the number of PGD steps, with their plots."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import AttackSpec, format_eps, get_attack, threat_model
from ..attacks.batches import correct_flags, percent, progress_bar
from ..checkpoint import atomic_write

__all__ = ["DEFAULT_SANITY_EPS", "DEFAULT_SANITY_STEPS", "unbounded_eps", "default_sanity_eps", "accuracy_vs_eps",
           "accuracy_vs_steps", "plot_curve", "sanity_checks", "write_sanity_plots"]

DEFAULT_SANITY_EPS = tuple(v / 255 for v in (0, 1, 2, 4, 8, 16, 32, 64, 128, 255))
DEFAULT_SANITY_STEPS = (1, 2, 4, 8, 16, 32, 64, 100)


def unbounded_eps(x: Tensor, norm: str = "inf") -> float:
    """The smallest ε whose ball holds the whole ``[0, 1]`` image box: 1 for L∞, √(C·H·W) for L2."""
    return 1.0 if threat_model(norm) == "Linf" else math.sqrt(x[0].numel())


def default_sanity_eps(eps: float, x: Tensor, norm: str = "inf") -> tuple[float, ...]:
    """ε values of the accuracy-vs-ε curve: ``DEFAULT_SANITY_EPS`` (0 … 255/255) for L∞; for L2 0, ε/8 … 8ε
    (doubling) and the unbounded radius √(C·H·W)."""
    if threat_model(norm) == "Linf":
        return DEFAULT_SANITY_EPS
    top = unbounded_eps(x, norm)
    return (0.0, *sorted({min(top, eps * 2.0 ** k) for k in range(-3, 4)}), top)


def accuracy_vs_eps(
    model: nn.Module, x: Tensor, y: Tensor, *, eps_values: Sequence[float] = DEFAULT_SANITY_EPS,
    steps: int = 100, restarts: int = 1, seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "cpu", progress: bool = False, norm: str = "inf",
) -> list[float]:
    """PGD-``steps`` robust accuracy (%) at each ε (ε = 0: clean) in ``norm`` — ADR appendix E, Figure 6a.
    The step at each ε is the default rule ``min(ε, 2.5·ε/steps)``."""
    model = model.to(device).eval()
    clean = correct_flags(model, x, y, batch_size=batch_size, device=device)
    out = []
    for eps in progress_bar(list(eps_values), progress, "sanity: eps"):
        if eps <= 0:
            out.append(percent(clean, len(y)))
            continue
        spec = AttackSpec(norm=norm, eps=float(eps), steps=int(steps), restarts=restarts)
        flags = get_attack("pgd").run(model, x, y, spec=spec, seed=seed, batch_size=batch_size, device=device,
                                       start_flags=clean)
        out.append(percent(flags, len(y)))
    return out


def accuracy_vs_steps(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps_values: Sequence[int] = DEFAULT_SANITY_STEPS,
    restarts: int = 1, seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu",
    progress: bool = False, norm: str = "inf",
) -> list[float]:
    """PGD-k robust accuracy (%) at fixed ε for each k in ``norm`` (step ``min(ε, 2.5·ε/k)``) — ADR appendix E,
    Figure 6b."""
    model = model.to(device).eval()
    clean = correct_flags(model, x, y, batch_size=batch_size, device=device)
    pgd = get_attack("pgd")
    return [percent(pgd.run(model, x, y, spec=AttackSpec(norm=norm, eps=eps, steps=int(k), restarts=restarts),
                            seed=seed, batch_size=batch_size, device=device, start_flags=clean), len(y))
            for k in progress_bar(list(steps_values), progress, "sanity: steps")]


def plot_curve(xs: Sequence[float], ys: Sequence[float], *, xlabel: str, title: str, path: str | Path,
               xlog: bool = False) -> Path:
    """Line plot of robust accuracy (%) against ``xs``, saved atomically as PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    ax.plot(list(xs), list(ys), marker="o")
    if xlog:
        ax.set_xscale("symlog", linthresh=1)
    ax.set(xlabel=xlabel, ylabel="robust accuracy (%)", title=title, ylim=(-2, 102))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def sanity_checks(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float = 8 / 255,
    eps_values: Sequence[float] | None = None, steps_values: Sequence[int] = DEFAULT_SANITY_STEPS,
    eps_curve_steps: int = 100, tolerance: float = 1.0, seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "cpu", out_dir: str | Path | None = None, name: str = "model",
    progress: bool = False, norm: str = "inf",
) -> dict[str, Any]:
    """Gradient-masking checks of ADR appendix E (after Carlini et al. 2019).

    Passes when PGD at the largest ε (unbounded: ε ≥ 1 for L∞, ε ≥ √(C·H·W) for L2, see
    :func:`unbounded_eps`) drives accuracy to 0 %, and robust accuracy vs PGD steps has converged: the last two
    points differ by at most ``tolerance`` percentage points. ``eps_values`` default:
    :func:`default_sanity_eps` (``DEFAULT_SANITY_EPS`` for L∞). ``norm``: ``"inf"`` (default) or ``"2"``. With
    ``out_dir``, writes ``sanity_<name>_eps.png`` and ``sanity_<name>_steps.png``.
    """
    kw = dict(seed=seed, batch_size=batch_size, device=device, progress=progress, norm=norm)
    eps_values = tuple(eps_values) if eps_values is not None else default_sanity_eps(eps, x, norm)
    eps_acc = accuracy_vs_eps(model, x, y, eps_values=eps_values, steps=eps_curve_steps, **kw)
    steps_acc = accuracy_vs_steps(model, x, y, eps=eps, steps_values=steps_values, **kw)
    top = max(range(len(eps_values)), key=lambda i: eps_values[i])
    unbounded = eps_values[top] >= unbounded_eps(x, norm) - 1e-9 and eps_acc[top] == 0.0
    converged = len(steps_acc) < 2 or abs(steps_acc[-1] - steps_acc[-2]) <= tolerance
    passed = bool(unbounded and converged)
    last = " → ".join(f"PGD-{k}: {a:.2f}%" for k, a in list(zip(steps_values, steps_acc))[-2:])
    summary = (f"{'PASS' if passed else 'FAIL'}: accuracy at ε={format_eps(eps_values[top])} "
               f"{eps_acc[top]:.2f}% ({'reaches' if unbounded else 'does NOT reach'} 0 %); {last} "
               f"({'converged' if converged else 'NOT converged'}, tolerance {tolerance} pp)")
    result: dict[str, Any] = {
        "passed": passed, "summary": summary, "unbounded_zero": bool(unbounded), "converged": bool(converged),
        "norm": threat_model(norm),
        "eps_curve": {"eps": [float(e) for e in eps_values], "accuracy": eps_acc, "steps": eps_curve_steps},
        "steps_curve": {"steps": [int(k) for k in steps_values], "accuracy": steps_acc, "eps": eps},
        "tolerance": float(tolerance), "plots": {},
    }
    if out_dir is not None:
        write_sanity_plots(result, out_dir, name)
    return result


def write_sanity_plots(result: dict[str, Any], out_dir: str | Path, name: str = "model") -> dict[str, str]:
    """Write ``sanity_<name>_eps.png`` and ``sanity_<name>_steps.png``; records their paths in ``result``
    (none, with a one-line note, when matplotlib is not installed: the report holds the curves' numbers)."""
    from ..runs.curves import have_matplotlib

    if not have_matplotlib():
        print(f"note: the sanity plots of {name} are not drawn: matplotlib is not installed (the report has the "
              f"numbers)", file=sys.stderr)
        return result["plots"]
    out = Path(out_dir)
    eps_values, eps_acc = result["eps_curve"]["eps"], result["eps_curve"]["accuracy"]
    steps_values, steps_acc = result["steps_curve"]["steps"], result["steps_curve"]["accuracy"]
    eps, eps_curve_steps = result["steps_curve"]["eps"], result["eps_curve"]["steps"]
    sym = "L∞" if result.get("norm", "Linf") == "Linf" else "L2"
    result["plots"]["eps"] = str(plot_curve(
        [e * 255 for e in eps_values], eps_acc, xlabel=f"{sym} ε (×1/255)", xlog=True,
        path=out / f"sanity_{name}_eps.png", title=f"{name}: {sym} PGD-{eps_curve_steps} vs ε"))
    result["plots"]["steps"] = str(plot_curve(
        steps_values, steps_acc, xlabel="PGD steps", xlog=True, path=out / f"sanity_{name}_steps.png",
        title=f"{name}: {sym} PGD vs steps, ε={format_eps(eps)}"))
    return result["plots"]

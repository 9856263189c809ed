"""A run's ``curves.png``: clean and robust validation accuracy of student and teacher per epoch, loss, τ and λ."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write
from ..config import RunConfig

__all__ = ["plot_curves", "curves_figure", "plot_run", "have_matplotlib"]


def have_matplotlib() -> bool:
    """Whether matplotlib is installed (the GPU suite's wheel set leaves it out: runs there draw no curves)."""
    return importlib.util.find_spec("matplotlib") is not None


def plot_curves(history: list[dict[str, Any]], path: str | os.PathLike, title: str = "", attack: str = "pgd",
                attack_label: str = "PGD-10") -> None:
    """Clean and robust (validation ``attack``, e.g. ``"apgd"``, named ``attack_label``) accuracy in % of student
    and teacher per epoch (the robust-overfitting picture), plus loss, τ, λ (:func:`curves_figure`)."""
    import matplotlib.pyplot as plt

    fig = curves_figure(history, title, attack, attack_label)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def curves_figure(history: list[dict[str, Any]], title: str = "", attack: str = "pgd",
                  attack_label: str = "PGD-10") -> Any:
    """The figure of :func:`plot_curves`: accuracy in % (as the tables) on a fixed 0–100 scale, whole-epoch
    ticks, the validation attack
    named with its step count (``attack_label``, e.g. ``"APGD-CE+T-10"``), both panels titled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label, style in (("clean_acc", "student clean", "C0-"),
                              (f"{attack}_acc", f"student {attack_label}", "C1-"),
                              ("teacher_clean_acc", "teacher (WA) clean", "C0--"),
                              (f"teacher_{attack}_acc", f"teacher (WA) {attack_label}", "C1--")):
        pts = [(r["epoch"], 100 * r[key]) for r in history if key in r]
        if pts:
            ax.plot(*zip(*pts), style, marker="o", ms=3, label=label)
    ax.plot(epochs, [100 * r["train_robust_acc"] for r in history], "C2:", label="train adversarial")
    best = [r.get("best_epoch") for r in history if r.get("best_epoch")]
    if best:
        ax.axvline(best[-1], color="grey", lw=0.8, ls=":", label=f"best epoch {best[-1]}")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title=(title + ": " if title else "") + "validation accuracy",
           ylim=(0, 100))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax2.plot(epochs, [r["loss"] for r in history], "k-", marker="o", ms=3, label="train loss")
    ax2.set(xlabel="epoch", ylabel="loss", title="training loss" + (" and ADR schedules" if all(
        "tau" in r for r in history) else ""))
    handles, labels = ax2.get_legend_handles_labels()
    if all("tau" in r for r in history):  # ADR runs: the annealing schedules
        ax3 = ax2.twinx()
        ax3.plot(epochs, [r["tau"] for r in history], "C3--", label="τ (temperature)")
        ax3.plot(epochs, [r["lambda"] for r in history], "C4--", label="λ (interpolation)")
        ax3.set_ylabel("τ, λ")
        h2, l2 = ax3.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax2.legend(handles, labels, fontsize=8)
    for a in (ax, ax2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: tick 1 only
    fig.tight_layout()
    return fig


def plot_run(out: Path, history: list[dict[str, Any]], config: RunConfig) -> None:
    """A run's ``curves.png``: its validation attack, named with its steps (skipped, with a one-line note, when
    matplotlib is not installed; the metrics files hold the same numbers)."""
    if not have_matplotlib():
        print(f"note: {out / 'curves.png'} not drawn: matplotlib is not installed (metrics.jsonl has the numbers)",
              file=sys.stderr)
        return
    from ..attacks import AttackSpec, get_attack

    label = get_attack(config.val_attack, targets=config.val_targets).describe(AttackSpec(steps=config.eval_max_iter))
    plot_curves(history, out / "curves.png", title=config.recipe or f"{config.dataset} {config.method}",
                attack=config.val_attack, attack_label=label)

"""The analyses' figures: entropy histograms (Fig. 1-2), JS divergence, reliability diagrams, the weight landscape
(Fig. 4) and the input landscape (Fig. 7), one PNG each."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["step_histogram", "plot_entropy_ood", "plot_entropy_pairs", "plot_js", "plot_calibration",
           "plot_weight_landscape", "slope_norm", "plot_input_landscape", "plot_all"]


def _adversarial(results: Mapping[str, Any]) -> str:
    """The adversarial outputs' attack, for titles and legends (``output_attack``; PGD-k for older results)."""
    settings = results["settings"]
    return settings.get("output_attack") or f"PGD-{settings['max_iter']}"


def _figure(nrows: int, ncols: int, w: float = 3.6, h: float = 3.0, **kw: Any) -> tuple[Any, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _save(fig: Any, path: Path, dpi: int = 110) -> Path:
    fig.savefig(path, dpi=dpi)
    return path


def step_histogram(ax: Any, values: np.ndarray, label: str, value_range: tuple[float, float], bins: int = 30) -> None:
    """A histogram of ``values`` (fractions, clipped into ``value_range``) as an outline on ``ax``, labelled with n."""
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
        step_histogram(ax, o["entropy_ood"], label, (0, math.log(o["num_classes"])))
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
            step_histogram(ax, o["entropy_clean"][correct], "correct", rng)
            step_histogram(ax, o["entropy_clean"][~correct], "incorrect", rng)
        else:
            step_histogram(ax, o["entropy_clean"], "clean", rng)
            step_histogram(ax, o["entropy_adv"], _adversarial(results), rng)
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
        step_histogram(ax, js, f"{name} (mean {np.mean(js):.3f})", (0, math.log(2)))
    ax.set(xlabel="JS divergence (nats)", ylabel="fraction",
           title=f"Output shift under {_adversarial(results)}")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_calibration(results: Mapping[str, Any], path: Path) -> Path:
    """Reliability diagrams, clean (top) and PGD (bottom) per model, with ECE in the titles
    (:func:`calibration_figure`)."""
    return _save(calibration_figure(results), path)


def calibration_figure(results: Mapping[str, Any]) -> Any:
    """The figure of :func:`plot_calibration`; its legend sits below the panels, off the bars."""
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
            ax.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect calibration")
            label = "clean" if key == "clean" else _adversarial(results)
            ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{name}, {label}\nECE {o[f'ece_{key}']:.3f}",
                   xlabel="confidence", ylabel="accuracy")
            ax.title.set_fontsize(9)
    # one legend below the panels, never over the bars
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8,
               frameon=False)
    return fig


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

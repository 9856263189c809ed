"""The paper's Table 1 (and Table 2 with +WA/+AWP) as one resumable experiment: train, evaluate, tabulate."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import atomic_write, load_model
from .config import ConfigError, RunConfig, recipe_path, resolve_config
from .loader import to_unit_float
from .runs import RunError, load_run_config, train_run, write_csv

__all__ = ["PAPER_TABLE1", "METHODS", "plan_runs", "method_label", "evaluate_run", "run_benchmark", "write_table"]

METHODS = ("at", "at-adr", "trades", "trades-adr")

# Wu et al. 2024, Table 1 (ResNet-18): AutoAttack best/final and clean best/final, in %
PAPER_TABLE1: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "cifar10": {"AT": (48.81, 43.19, 82.52, 83.77), "AT + ADR": (50.38, 47.18, 82.41, 85.08),
                "TRADES": (50.10, 48.17, 82.95, 82.42), "TRADES + ADR": (51.02, 50.40, 83.40, 83.76)},
    "cifar100": {"AT": (24.95, 19.66, 55.81, 56.58), "AT + ADR": (26.87, 24.23, 56.10, 56.95),
                 "TRADES": (24.71, 23.78, 56.37, 56.01), "TRADES + ADR": (26.42, 25.15, 56.54, 54.42)},
    "tinyimagenet": {"AT": (18.06, 15.86, 45.87, 49.35), "AT + ADR": (19.46, 18.83, 48.19, 47.65),
                     "TRADES": (17.35, 16.40, 48.49, 47.62), "TRADES + ADR": (19.17, 18.86, 51.82, 50.87)},
}

# the embedded CPU-sized default (README's main command): ≤ 15 minutes on 2 cores
CPU_DEFAULTS = {"fashion-mnist": {"epochs": 4, "subset": 8000, "val_size": 500, "n_eval": 100}}
AWP_RHO = {"cifar10": 0.005, "cifar100": 0.005, "tinyimagenet": 0.001}


@dataclass
class PlannedRun:
    """One method of the benchmark: its label, the recipe it starts from, the resolved config."""

    method: str
    label: str
    config: RunConfig


def method_label(config: RunConfig) -> str:
    """``AT``, ``TRADES + ADR + WA + AWP``, ... from a run's config (WA = the EMA teacher is the reported model)."""
    parts = ["AT" if config.method == "at" else "TRADES"]
    if config.adr:
        parts.append("ADR")
    if config.best_metric == "teacher_pgd_acc":
        parts.append("WA")
    if config.awp_rho > 0:
        parts.append("AWP")
    return " + ".join(parts)


def _recipe_exists(name: str) -> bool:
    try:
        recipe_path(name)
        return True
    except ConfigError:
        return False


def plan_runs(dataset: str, methods: Sequence[str] = METHODS, wa: bool = False, awp: bool = False,
              overrides: dict[str, Any] | None = None) -> list[PlannedRun]:
    """Resolve each method's recipe (``<dataset>-<method>[-wa][-awp]``), applying budget overrides."""
    plans = []
    for method in methods:
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        base = f"{dataset}-{method}"
        if not _recipe_exists(base):
            raise ConfigError(f"no recipe {base!r}: the benchmark supports datasets with recipes "
                              "(cifar10, cifar100, tinyimagenet, fashion-mnist)")
        suffix = "-wa-awp" if awp else "-wa" if wa else ""
        name = base + suffix if _recipe_exists(base + suffix) else base
        extra: dict[str, Any] = {}
        if name == base and (wa or awp):
            extra["best_metric"] = "teacher_pgd_acc"
            if awp:
                extra["awp_rho"] = AWP_RHO.get(dataset, 0.005)
        config = resolve_config(name, {**extra, **(overrides or {})})
        plans.append(PlannedRun(method, method_label(config), config))
    return plans


def _ensure_trained(plan: PlannedRun, run_dir: Path, verbose: bool) -> Path:
    """Train, resume an interrupted run, or reuse a finished one (``checkpoints/final.pt`` present)."""
    if (run_dir / "checkpoints" / "final.pt").is_file():
        saved = load_run_config(run_dir)
        if saved.to_dict() != plan.config.to_dict():
            raise RunError(f"{run_dir} holds a finished run with other options; use another --out")
        return run_dir
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    return train_run(plan.config, run_dir, resume=resume, verbose=verbose, command="art-adr benchmark")


def _test_set(config: RunConfig, n_eval: int | None):
    from .data import load_dataset

    test = load_dataset(config.dataset, "test", config.data_dir, config.download, **config.dataset_kwargs)
    return test.subset(n_eval) if n_eval and n_eval < len(test) else test


def evaluate_run(run_dir: str | os.PathLike, n_eval: int | None, attacks: Sequence[str] = ("clean", "aa"),
                 version: str = "standard", seed: int = 0, device: str = "cpu", batch_size: int = 256,
                 progress: bool = True) -> dict[str, Any]:
    """AutoAttack (or PGD) and clean accuracy of a run's best and final checkpoints, cached in the run dir.

    The reported model is the EMA teacher when the run selects by ``teacher_pgd_acc`` (+WA), else the student.
    """
    from .evaluation import evaluate_model

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    which = "teacher" if config.best_metric == "teacher_pgd_acc" else "student"
    key = f"eval-{which}-n{n_eval or 'all'}-{'-'.join(attacks)}-{version}-s{seed}.json"
    cache = run_dir / key
    if cache.is_file():
        return json.loads(cache.read_text())
    test = _test_set(config, n_eval)
    x, y = to_unit_float(torch.as_tensor(test.x)), torch.as_tensor(test.y)
    out: dict[str, Any] = {"which": which, "n_examples": len(test), "attacks": list(attacks), "version": version}
    for tag in ("best", "final"):
        model, ckpt = load_model(run_dir / "checkpoints" / f"{tag}.pt", which=which, device=device)
        entry = evaluate_model(model, x, y, attacks=attacks, eps=config.eps, version=version, seed=seed,
                               batch_size=batch_size, device=device, progress=progress)
        out[tag] = {"epoch": int(ckpt["epoch"]), **entry["results"]}
        if "autoattack" in entry:
            out[tag]["autoattack_warnings"] = entry["autoattack"]["warnings"]
    atomic_write(cache, lambda tmp: Path(tmp).write_text(json.dumps(out, indent=1)))
    return out


def _row(label: str, ev: dict[str, Any], robust_key: str, paper: tuple[float, ...] | None) -> dict[str, Any]:
    b, f = ev["best"], ev["final"]
    row = {"method": label, "robust_attack": robust_key, "robust_best": b[robust_key], "robust_final": f[robust_key],
           "robust_diff": b[robust_key] - f[robust_key], "clean_best": b["clean"], "clean_final": f["clean"],
           "clean_diff": b["clean"] - f["clean"], "best_epoch": b["epoch"], "final_epoch": f["epoch"],
           "n_eval": ev["n_examples"], "model": ev["which"]}
    if paper:
        row.update(paper_aa_best=paper[0], paper_aa_final=paper[1], paper_clean_best=paper[2],
                   paper_clean_final=paper[3])
    return row


def format_markdown(rows: list[dict[str, Any]], dataset: str) -> str:
    """Table-1-style Markdown: robust and clean accuracy, best / final / diff per method (paper beside)."""
    attack = "AutoAttack" if rows and rows[0]["robust_attack"] == "aa" else "PGD"
    has_paper = any("paper_aa_best" in r for r in rows)
    head = ["Method", f"{attack} best", "final", "diff", "Clean best", "final", "diff", "best epoch"]
    if has_paper:
        head += ["paper AA best", "final", "paper clean best", "final"]
    lines = [f"Table 1 reproduction on {dataset} (n = {rows[0]['n_eval'] if rows else 0} test images, %)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"]] + [f"{r[k]:.2f}" for k in ("robust_best", "robust_final", "robust_diff", "clean_best",
                                                          "clean_final", "clean_diff")] + [str(r["best_epoch"])]
        if has_paper:
            cells += [f"{r[k]:.2f}" if k in r else "" for k in ("paper_aa_best", "paper_aa_final",
                                                                  "paper_clean_best", "paper_clean_final")]
        lines.append("| " + " | ".join(cells) + " |")
    if has_paper:
        lines += ["", "Paper: Wu, Wang & Chen (ICLR 2024), Table 1, ResNet-18, full test set."]
    return "\n".join(lines) + "\n"


def plot_methods(histories: dict[str, list[dict[str, Any]]], path: str | os.PathLike, title: str) -> None:
    """Per-epoch validation PGD and clean accuracy of every method (solid student, dashed teacher)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (label, hist) in enumerate(histories.items()):
        color = f"C{i}"
        for ax, key in zip(axes, ("pgd_acc", "clean_acc")):
            pts = [(r["epoch"], 100 * r[key]) for r in hist if key in r]
            tpts = [(r["epoch"], 100 * r["teacher_" + key]) for r in hist if "teacher_" + key in r]
            if pts:
                ax.plot(*zip(*pts), "-", color=color, marker="o", ms=3, label=f"{label}")
            if tpts:
                ax.plot(*zip(*tpts), "--", color=color, lw=1, label=f"{label} (teacher)")
    axes[0].set(title=f"{title}: PGD validation accuracy", xlabel="epoch", ylabel="%")
    axes[1].set(title="clean validation accuracy", xlabel="epoch", ylabel="%")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def write_table(rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]], out: Path,
                dataset: str, meta: dict[str, Any]) -> dict[str, Path]:
    """``table1.md``, ``table1.csv``, ``table1.json`` and ``curves.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    md = format_markdown(rows, dataset)
    atomic_write(out / "table1.md", lambda tmp: Path(tmp).write_text(md))
    write_csv(out / "table1.csv", rows)
    payload = {"dataset": dataset, **meta, "rows": rows}
    atomic_write(out / "table1.json", lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1)))
    plot_methods(histories, out / "curves.png", dataset)
    return {k: out / f"table1.{k}" for k in ("md", "csv", "json")} | {"png": out / "curves.png"}


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def run_benchmark(dataset: str | None, out: str | os.PathLike, *, methods: Sequence[str] = METHODS,
                  wa: bool = False, awp: bool = False, runs: Sequence[str] = (),
                  overrides: dict[str, Any] | None = None,
                  n_eval: int | None = None, attacks: Sequence[str] = ("clean", "aa"), version: str = "standard",
                  device: str = "cpu", seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    """Train (or reuse) each method's run under ``out/runs``, evaluate best and final, write the tables."""
    out = Path(out)
    if runs:
        run_dirs = [Path(r) for r in runs]
        labels = [method_label(load_run_config(r)) for r in run_dirs]
        datasets = {load_run_config(r).dataset for r in run_dirs}
        if len(datasets) != 1:
            raise RunError(f"--runs mixes datasets: {sorted(datasets)}")
        dataset = datasets.pop()
    else:
        if dataset is None:
            raise ConfigError("give --dataset or --runs")
        plans = plan_runs(dataset, methods, wa=wa, awp=awp, overrides=overrides)
        run_dirs, labels = [], []
        for plan in plans:
            run_dir = out / "runs" / (plan.config.recipe or plan.method)
            if verbose:
                print(f"== {plan.label}: {run_dir}")
            run_dirs.append(_ensure_trained(plan, run_dir, verbose))
            labels.append(plan.label)
    robust_key = "aa" if "aa" in attacks else "pgd"
    rows, histories = [], {}
    for label, run_dir in zip(labels, run_dirs):
        if verbose:
            print(f"== evaluating {label} (best and final, {robust_key})")
        ev = evaluate_run(run_dir, n_eval, attacks=attacks, version=version, seed=seed, device=device,
                          progress=verbose)
        paper = PAPER_TABLE1.get(dataset, {}).get(label)
        rows.append(_row(label, ev, robust_key, paper))
        histories[label] = _history(run_dir)
    meta = {"n_eval": n_eval, "attacks": list(attacks), "autoattack_version": version, "seed": seed,
            "runs": [str(r) for r in run_dirs]}
    files = write_table(rows, histories, out, dataset, meta)
    return {"rows": rows, "files": files, "markdown": format_markdown(rows, dataset)}

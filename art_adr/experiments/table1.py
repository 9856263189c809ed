"""The paper's Table 1 (and Table 2 with +WA/+AWP) as one resumable experiment: train, evaluate, tabulate."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..attacks import ATTACKS, get_attack, robust_attack_names, validating_attack_names
from ..budget import format_eps
from ..checkpoint import atomic_write
from ..config import ConfigError, RunConfig, recipe_path, resolve_config, selected_model
from ..console import say
from ..methods import METHODS as REGISTERED_METHODS
from ..methods import get_method
from ..runs import RunError, holding_lock, load_run_config, write_csv
from ..tables import markdown_table
from .common import PlannedRun, log_table, mean_std, read_history, train_planned

__all__ = ["PAPER_TABLE1", "METHODS", "DEFAULT_METHODS", "CPU_DEFAULTS", "AWP_RHO", "plan_runs",
           "method_label", "evaluate_run", "run_benchmark", "write_table", "aggregate_rows", "format_markdown",
           "mean_history", "plot_methods", "seed_run_dir", "reported_model"]





# benchmark methods: every registered training method (art_adr.methods) with and without ADR; the default is
# the paper's Table 1 (AT, TRADES)
METHODS = tuple(f"{m}{adr}" for m in REGISTERED_METHODS.names() for adr in ("", "-adr"))


DEFAULT_METHODS = ("at", "at-adr", "trades", "trades-adr")


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
CPU_DEFAULTS = {"fashion-mnist": {"epochs": 4, "subset": 8000, "val_size": 500, "n_examples": 100}}


AWP_RHO = {"cifar10": 0.005, "cifar100": 0.005, "tinyimagenet": 0.001}


def method_label(config: RunConfig) -> str:
    """``AT``, ``TRADES + ADR + WA + AWP``, ... from a run's config (WA = the EMA teacher is the reported model)."""
    parts = [get_method(config.method).label]
    if config.adr:
        parts.append("ADR")
    if selected_model(config) == "teacher":
        parts.append("WA")
    if config.awp_rho > 0:
        parts.append("AWP")
    return " + ".join(parts) + _schedule_note(config)


def _schedule_note(config: RunConfig) -> str:
    """`` (τ 2→1.5, λ 0.5→0.8)`` for an ADR run whose τ/λ are not its recipe's (``--set temperature=...``), so
    such a row never passes for the recipe's (or the paper's) ADR; empty otherwise."""
    if not config.adr:
        return ""
    try:
        ref = resolve_config(config.recipe) if config.recipe else RunConfig()
    except ConfigError:
        ref = RunConfig()
    def text(value: Any) -> str:
        return "auto" if isinstance(value, str) else f"{value[0]:g}→{value[1]:g}"

    if (text(config.temperature), text(config.interpolation)) == (text(ref.temperature), text(ref.interpolation)):
        return ""
    return f" (τ {text(config.temperature)}, λ {text(config.interpolation)})"


def _recipe_exists(name: str) -> bool:
    try:
        recipe_path(name)
        return True
    except ConfigError:
        return False


def plan_runs(dataset: str | None, methods: Sequence[str] = DEFAULT_METHODS, wa: bool = False, awp: bool = False,
              overrides: dict[str, Any] | None = None, recipes: Sequence[str] = (),
              recipe_prefix: str | None = None) -> list[PlannedRun]:
    """Resolve each method's recipe (``<dataset>-<method>[-wa][-awp]``), applying budget overrides.

    ``recipe_prefix`` replaces ``<dataset>`` in the names (``fashion-mnist-ro`` → ``fashion-mnist-ro-at``, ...);
    ``recipes`` names the recipes outright (``methods`` is then ignored; ``wa``/``awp`` still add +WA/+AWP).
    """
    plans = []
    for name in recipes:
        if not _recipe_exists(name):
            raise ConfigError(f"no recipe {name!r}; `art-adr recipes` lists them")
        base_cfg = resolve_config(name)
        extra: dict[str, Any] = {}
        if wa or awp:
            extra["best_metric"] = "teacher_robust_acc"
        if awp and base_cfg.awp_rho == 0:
            extra["awp_rho"] = AWP_RHO.get(base_cfg.dataset, 0.005)
        config = resolve_config(name, {**extra, **(overrides or {})})
        plans.append(PlannedRun(name, method_label(config), config))
    if recipes:
        return plans
    prefix = recipe_prefix or dataset
    for method in methods:
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        base = f"{prefix}-{method}"
        if not _recipe_exists(base):
            from ..data import dataset_names

            have = [d for d in dataset_names() if _recipe_exists(f"{d}-{method}")]
            raise ConfigError(f"no recipe {base!r}: the benchmark supports datasets with recipes "
                              f"({', '.join(have)}) or --recipe-prefix/--recipes")
        suffix = "-wa-awp" if awp else "-wa" if wa else ""
        name = base + suffix if _recipe_exists(base + suffix) else base
        extra: dict[str, Any] = {}
        if name == base and (wa or awp):
            extra["best_metric"] = "teacher_robust_acc"
            if awp:
                extra["awp_rho"] = AWP_RHO.get(dataset or "", 0.005)
        config = resolve_config(name, {**extra, **(overrides or {})})
        plans.append(PlannedRun(method, method_label(config), config))
    return plans


def warm_evaluations(tasks: Sequence[dict[str, Any]], jobs: int, verbose: bool = True) -> None:
    """Run :func:`evaluate_run` on every ``tasks`` entry (its keyword arguments) ``jobs`` at a time in CPU worker
    processes (:func:`art_adr.launch.job_threads` threads each): the results land in each run's evaluation cache,
    where the caller's own :func:`evaluate_run` finds them. An evaluation's error is raised here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    from ..launch import job_threads

    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=context, initializer=_cpu_worker,
                             initargs=(job_threads(jobs),)) as pool:
        futures = [pool.submit(evaluate_run, **task, progress=False) for task in tasks]
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"evaluations ({jobs} at a time)",
                           unit="model", disable=not verbose):
            future.result()


def _cpu_worker(threads: int) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    torch.set_num_threads(threads)


def reported_model(config: RunConfig) -> str:
    """The model a run reports in the paper's tables: the EMA teacher for +WA (a ``teacher_…`` best_metric), else
    the student."""
    return selected_model(config)


def evaluate_run(run_dir: str | os.PathLike, n_examples: int | None, attacks: Sequence[str] = ("clean", "aa"),
                 version: str = "standard", seed: int = 0, device: str = "auto", batch_size: int = 256,
                 progress: bool = True, which: str | None = None) -> dict[str, Any]:
    """Clean and robust accuracy (each attack in ``attacks``) of a run's best and final checkpoints, through
    :func:`art_adr.evaluation.evaluate_checkpoint` in the run's own threat model (norm, ε, step of its config;
    PGD/CW 10 steps).

    Args:
        run_dir: a finished run directory (``config.yaml``, ``checkpoints/{best,final}.pt``).
        n_examples: first N test images (``None``: all). attacks: registered attacks (default clean, aa).
        version: AutoAttack version (default ``standard``). seed: PGD starts / AutoAttack (default 0).
        device: default ``auto``. batch_size: default 256. progress: tqdm bars (default True).
        which: ``"student"``, ``"teacher"`` (the EMA model) or ``None`` (default): the run's reported model (the
            teacher when it selects by ``teacher_pgd_acc``, i.e. +WA).

    Each (model, attack) pair is cached as JSON in the run directory, with the checkpoints' epochs, SHA-256,
    norm and ε, so adding an attack later evaluates only that attack and a changed checkpoint is re-evaluated.
    """
    from ..evaluation import cached_evaluation

    which = which or reported_model(load_run_config(run_dir))
    return cached_evaluation(run_dir, which=which, attacks=attacks, n_examples=n_examples, version=version, seed=seed,
                             device=device, batch_size=batch_size, progress=progress)


_METRICS = ("best", "final", "diff")


def _row(label: str, ev: dict[str, Any], robust_key: str, paper: tuple[float, ...] | None, *, recipe: str = "",
         seed: int | None = None, run_dir: str = "") -> dict[str, Any]:
    """One per-seed table row: robust (``robust_key``, and every attack evaluated) and clean, best/final/diff."""
    b, f = ev["best"], ev["final"]
    row: dict[str, Any] = {
        "method": label, "recipe": recipe, "which": ev["which"], "seed": seed, "kind": "seed",
        "robust_attack": robust_key, "robust_best": b[robust_key], "robust_final": f[robust_key],
        "robust_diff": b[robust_key] - f[robust_key], "clean_best": b["clean"], "clean_final": f["clean"],
        "clean_diff": b["clean"] - f["clean"]}
    for a in robust_attack_names():  # the registry as it is now (an attack registered later is a column too)
        if a in b:
            row.update({f"{a}_best": b[a], f"{a}_final": f[a], f"{a}_diff": b[a] - f[a]})
    row.update(best_epoch=b["epoch"], final_epoch=f["epoch"], n_examples=ev["n_examples"], run=run_dir)
    if "norm" in b:  # the threat model evaluated (caches of earlier versions: L∞ at the run's ε)
        row.update(norm=b["norm"], eps=b["eps"])
    if paper:
        row.update(paper_aa_best=paper[0], paper_aa_final=paper[1], paper_clean_best=paper[2],
                   paper_clean_final=paper[3])
    return row


def aggregate_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of every numeric column, one row per (method, recipe, model) in first-seen order.

    ``<metric>`` holds the mean and ``<metric>_std`` the population std; ``n_seeds``, ``seeds`` and
    ``best_epochs`` (per seed) say what was averaged.
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r.get("recipe", ""), r["which"]), []).append(r)
    out = []
    for (label, recipe, which), members in groups.items():
        first = members[0]
        agg: dict[str, Any] = {"method": label, "recipe": recipe, "which": which, "kind": "aggregate",
                               "n_seeds": len(members), "seeds": ",".join(str(m.get("seed")) for m in members),
                               "robust_attack": first["robust_attack"]}
        for key in [k for k in first if k.startswith(("robust_", "clean_", *(f"{a}_" for a in robust_attack_names())))
                    and isinstance(first[k], (int, float)) and not isinstance(first[k], bool)]:
            agg[key], agg[f"{key}_std"] = mean_std([float(m[key]) for m in members])
        agg["best_epoch"], agg["best_epoch_std"] = mean_std([float(m["best_epoch"]) for m in members])
        agg["best_epochs"] = ",".join(str(m["best_epoch"]) for m in members)
        agg["final_epoch"], agg["n_examples"] = first["final_epoch"], first["n_examples"]
        if "norm" in first:
            agg["norm"], agg["eps"] = first["norm"], first["eps"]
        for key in ("paper_aa_best", "paper_aa_final", "paper_clean_best", "paper_clean_final"):
            if key in first:
                agg[key] = first[key]
        out.append(agg)
    # the same label from two recipes (--recipes / --runs): name the recipe so the rows can be told apart
    seen: dict[str, set[str]] = {}
    for r in out:
        seen.setdefault(r["method"], set()).add(r["recipe"])
    for r in out:
        if len(seen[r["method"]]) > 1:
            r["method"] = f"{r['method']} ({r['recipe']})"
    return out


def _cell(row: dict[str, Any], key: str) -> str:
    if key not in row:
        return "–"
    if row.get("n_seeds", 1) > 1 and f"{key}_std" in row:
        return f"{row[key]:.2f} ± {row[key + '_std']:.2f}"
    return f"{row[key]:.2f}"


def format_markdown(rows: list[dict[str, Any]], dataset: str, version: str = "standard") -> str:
    """Table-1-style Markdown: robust (each attack) and clean accuracy, best / final / diff per method and model.

    ``rows`` are aggregate rows (``aggregate_rows``; per-seed rows are aggregated here); with more than one
    seed every cell is ``mean ± std`` (paper Table 7 style), and the paper's numbers stand beside (+WA: teacher).
    """
    if rows and any(r.get("kind", "seed") == "seed" for r in rows):
        rows = aggregate_rows(rows)
    norms = {r["norm"] for r in rows if "norm" in r}
    settings = {"pgd_steps": 10, "cw_steps": 10, "norm": norms.pop() if len(norms) == 1 else "Linf",
                "aa_version": None if version == "standard" else version}
    names = {a: get_attack(a).column(settings) for a in robust_attack_names()}
    robust = [a for a in robust_attack_names() if rows and f"{a}_best" in rows[0]]
    if rows and not robust:  # rows of an older layout: only robust_*
        robust = [rows[0]["robust_attack"]]
    has_paper = any("paper_aa_best" in r for r in rows)
    n_seeds = max((r.get("n_seeds", 1) for r in rows), default=1)
    head = ["Method", "model", "seeds"]
    for a in robust:
        head += [f"{names.get(a, a)} best", "final", "diff"]
    head += ["Clean best", "final", "diff", "best epoch"]
    if has_paper:
        head += ["paper AA best", "final", "paper clean best", "final"]
    seeds_text = f"mean ± std over {n_seeds} seeds, population std as in the paper's Table 7; " if n_seeds > 1 else ""
    threats = sorted({f"{'L∞' if r['norm'] == 'Linf' else 'L2'} ε = {format_eps(r['eps'])}" for r in rows
                      if "norm" in r})
    threat_text = ", ".join(threats) + ", " if threats else ""
    what = f"Table 1 reproduction on {dataset}" if dataset in PAPER_TABLE1 else \
        f"Table-1-style comparison on {dataset} (the paper reports no {dataset} results)"
    lines = [f"{what} (n = {rows[0]['n_examples'] if rows else 0} test images, "
             f"{threat_text}{seeds_text}%; diff = best − final)", ""]
    body = []
    for r in rows:
        cells = [r["method"], r.get("which", ""), str(r.get("n_seeds", 1))]
        for a in robust:
            key = "robust" if f"{a}_best" not in r else a
            cells += [_cell(r, f"{key}_{m}") for m in _METRICS]
        cells += [_cell(r, f"clean_{m}") for m in _METRICS]
        cells.append(str(r.get("best_epochs", r.get("best_epoch", ""))).replace(",", ", "))
        if has_paper:
            cells += [f"{r[k]:.2f}" if k in r else "" for k in ("paper_aa_best", "paper_aa_final",
                                                                  "paper_clean_best", "paper_clean_final")]
        body.append(cells)
    lines += markdown_table(head, body)
    if has_paper:
        lines += ["", "Paper: Wu, Wang & Chen (ICLR 2024), Table 1, ResNet-18, full test set, one run."]
    return "\n".join(lines) + "\n"


def mean_history(histories: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-epoch mean over seeds of the numeric metrics (epochs that every seed reached)."""
    if len(histories) == 1:
        return list(histories[0])
    by_epoch = [{r["epoch"]: r for r in h} for h in histories if h]
    if not by_epoch:
        return []
    epochs = sorted(set.intersection(*(set(h) for h in by_epoch)))
    out = []
    for e in epochs:
        recs = [h[e] for h in by_epoch]
        keys = [k for k, v in recs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and all(k in r for r in recs)]
        out.append({k: sum(float(r[k]) for r in recs) / len(recs) for k in keys} | {"epoch": e})
    return out


def _selecting_key(history: list[dict[str, Any]]) -> str | None:
    """The history key of the run's validation attack when it is not PGD (``apgd_acc``, ``margin_acc``)."""
    keys = {k for r in history for k in r if k.endswith("_acc") and not k.startswith(("teacher_", "train_"))
            and k not in ("clean_acc", "pgd_acc")}
    return min(keys) if keys else None


def plot_methods(histories: dict[str, list[dict[str, Any]]], path: str | os.PathLike, title: str) -> None:
    """Per-epoch validation accuracy of every method (solid student, dashed teacher): under the runs' validation
    attack when it is not PGD (what selects ``best.pt``), under PGD-10, and clean (:func:`methods_figure`)."""
    import matplotlib.pyplot as plt

    fig = methods_figure(histories, title)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def methods_figure(histories: dict[str, list[dict[str, Any]]], title: str) -> Any:
    """The figure of :func:`plot_methods`: whole-epoch ticks and a fixed 0–100 % scale on every panel (runs of
    one epoch included)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    selecting = {label: _selecting_key(h) for label, h in histories.items()}
    panels = (["selecting"] if any(selecting.values()) else []) + ["pgd_acc", "clean_acc"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for i, (label, hist) in enumerate(histories.items()):
        for ax, panel in zip(axes[0], panels):
            key = selecting[label] if panel == "selecting" else panel
            _plot_history(ax, hist, key, f"C{i}", label)
    validating = validating_attack_names()
    names = sorted({ATTACKS[k[:-4]].label if k[:-4] in validating else k[:-4] for k in selecting.values() if k})
    titles = {"selecting": f"validation attack ({', '.join(names)}; selects best.pt)",
              "pgd_acc": "PGD-10 validation accuracy", "clean_acc": "clean validation accuracy"}
    for ax, panel in zip(axes[0], panels):
        ax.set(title=titles[panel], xlabel="epoch", ylabel="%", ylim=(0, 100))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: tick 1 only
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _plot_history(ax: Any, history: list[dict[str, Any]], key: str | None, color: str, label: str) -> None:
    if key is None:
        return
    pts = [(r["epoch"], 100 * r[key]) for r in history if key in r]
    tpts = [(r["epoch"], 100 * r["teacher_" + key]) for r in history if "teacher_" + key in r]
    if pts:
        ax.plot(*zip(*pts), "-", color=color, marker="o", ms=3, label=f"{label}")
    if tpts:
        ax.plot(*zip(*tpts), "--", color=color, lw=1, marker="s", ms=2, label=f"{label} (teacher)")


def write_table(rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]], out: Path,
                dataset: str, meta: dict[str, Any], aggregate: list[dict[str, Any]] | None = None,
                title: str | None = None) -> dict[str, Path]:
    """``table1.md`` (aggregate rows), ``table1.csv`` (per-seed rows, then the aggregate rows),
    ``table1.json`` (``rows``: per seed, ``aggregate``: mean ± std) and ``curves.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    aggregate = aggregate if aggregate is not None else aggregate_rows(rows)
    md = format_markdown(aggregate, dataset, meta.get("autoattack_version", "standard"))
    atomic_write(out / "table1.md", lambda tmp: Path(tmp).write_text(md))
    write_csv(out / "table1.csv", [*rows, *aggregate])
    payload = {"dataset": dataset, **meta, "rows": rows, "aggregate": aggregate}
    atomic_write(out / "table1.json", lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1)))
    from ..runs.curves import have_matplotlib

    written = {k: out / f"table1.{k}" for k in ("md", "csv", "json")}
    if not have_matplotlib():
        print(f"note: {out / 'curves.png'} not drawn: matplotlib is not installed (table1.json has the numbers)",
              file=sys.stderr)
        return written
    plot_methods(histories, out / "curves.png", title or dataset)
    return written | {"png": out / "curves.png"}


def seed_run_dir(out: Path, name: str, seed: int, config: RunConfig | None = None) -> Path:
    """``out/runs/<recipe>-s<seed>``; a run directory of the single-seed layout (``out/runs/<recipe>``) is used in
    place when it holds this very run (same resolved config, seed included), so earlier benchmarks are reused."""
    legacy = out / "runs" / name
    if config is not None and (legacy / "config.yaml").is_file():
        try:
            if load_run_config(legacy).to_dict() == config.to_dict():
                return legacy
        except (RunError, ConfigError):
            pass
    return out / "runs" / f"{name}-s{seed}"


# one (label, recipe, run directory, config) per run of the table
Entry = tuple[str, str, Path, RunConfig]


@holding_lock("benchmark", ("table1.md", "table1.csv", "table1.json", "curves.png"))  # one per output directory
def run_benchmark(dataset: str | None, out: str | os.PathLike, *, methods: Sequence[str] = DEFAULT_METHODS,
                  wa: bool = False, awp: bool = False, runs: Sequence[str] = (),
                  overrides: dict[str, Any] | None = None,
                  n_examples: int | None = None, attacks: Sequence[str] = ("clean", "aa"), version: str = "standard",
                  device: str = "cpu", seed: int = 0, seeds: Sequence[int] | None = None,
                  recipes: Sequence[str] = (), recipe_prefix: str | None = None,
                  models: Sequence[str] = ("student", "teacher"), verbose: bool = True, launcher: Any = None,
                  loggers: Sequence[str] = ()) -> dict[str, Any]:
    """Train (or reuse) each method × seed under ``out/runs/<recipe>-s<seed>``, evaluate the best and final
    checkpoints of every model in ``models`` (student, EMA teacher) under every attack, write the tables.

    Each run is attacked with its own training seed (PGD starts, AutoAttack). ``recipes`` (explicit names) or
    ``recipe_prefix`` (``<prefix>-<method>``) replace the ``<dataset>-<method>`` recipes. ``launcher``
    (:class:`art_adr.launch.Launcher`) trains the runs as parallel jobs (local GPUs, CPU jobs, SLURM; with
    ``jobs``, the evaluations run that many at a time too); one that does not wait
    returns ``{"unfinished": [run dirs], ...}`` without evaluating while runs are left. ``loggers``
    (:data:`art_adr.loggers.LOGGERS`) follow every run and get the table.
    """
    out = Path(out)
    seed_list = list(seeds) if seeds else [seed]
    bad = [m for m in models if m not in ("student", "teacher")]
    if bad or not models:
        raise ConfigError(f"models must be student and/or teacher, got {list(models)}")
    if runs:
        entries, dataset = existing_entries(runs)
    else:
        entries, dataset, planned = planned_entries(dataset, out, seed_list, methods=methods, wa=wa, awp=awp,
                                                    overrides=overrides, recipes=recipes, recipe_prefix=recipe_prefix)
        unfinished = train_planned(planned, out, launcher=launcher, loggers=loggers, verbose=verbose)
        if unfinished:
            return {"unfinished": unfinished, "rows": [], "aggregate": [], "files": {}, "markdown": None}
    robust = [a for a in dict.fromkeys(attacks) if a != "clean"] or ["pgd"]
    rows, grouped = evaluate_entries(entries, dataset, models, robust, n_examples=n_examples, version=version,
                                     device=device, verbose=verbose, jobs=getattr(launcher, "jobs", 0))
    clash = {lab for lab, _ in grouped if sum(k[0] == lab for k in grouped) > 1}
    histories = {(lab if lab not in clash else f"{lab} ({rec})"): mean_history(hs)
                 for (lab, rec), hs in grouped.items()}
    aggregate = aggregate_rows(rows)
    used_seeds = sorted({e[3].seed for e in entries})
    meta = {"n_examples": n_examples, "attacks": ["clean", *robust], "autoattack_version": version, "seeds": used_seeds,
            "n_seeds": len(seed_list) if not runs else max(len(h) for h in grouped.values()),
            "models": list(models), "std": "population (ddof=0), as the paper's Table 7",
            "eval_seed": "each run's training seed", "runs": [str(e[2]) for e in entries]}
    title = dataset + (f" (mean of {meta['n_seeds']} seeds)" if meta["n_seeds"] > 1 else "")
    files = write_table(rows, histories, out, dataset, meta, aggregate=aggregate, title=title)
    markdown = format_markdown(aggregate, dataset, version)
    if runs and loggers:
        from ..loggers import sync_run

        for _, _, run_dir, config in entries:
            sync_run(run_dir, loggers, config.to_dict())
    log_table(out, loggers, "table1", markdown, aggregate, meta)
    return {"rows": rows, "aggregate": aggregate, "files": files, "markdown": markdown, "unfinished": []}


def existing_entries(runs: Sequence[str]) -> tuple[list[Entry], str]:
    """The entries of finished run directories (``--runs``) and their one dataset (``RunError`` when they mix)."""
    entries: list[Entry] = []
    for r in runs:
        cfg = load_run_config(r)
        entries.append((method_label(cfg), cfg.recipe or Path(r).name, Path(r), cfg))
    datasets = {e[3].dataset for e in entries}
    if len(datasets) != 1:
        raise RunError(f"--runs mixes datasets: {sorted(datasets)}")
    return entries, datasets.pop()


def planned_entries(dataset: str | None, out: Path, seeds: Sequence[int], *, methods: Sequence[str], wa: bool,
                    awp: bool, overrides: dict[str, Any] | None, recipes: Sequence[str],
                    recipe_prefix: str | None) -> tuple[list[Entry], str, list[tuple[PlannedRun, Path, str]]]:
    """The entries of the planned runs (every method × seed), their one dataset, and what to train."""
    if dataset is None and not recipes and not recipe_prefix:
        raise ConfigError("give --dataset, --recipes, --recipe-prefix or --runs")
    plans = plan_runs(dataset, methods, wa=wa, awp=awp, overrides=overrides, recipes=recipes,
                      recipe_prefix=recipe_prefix)
    datasets = {p.config.dataset for p in plans}
    if len(datasets) != 1:
        raise ConfigError(f"the recipes mix datasets: {sorted(datasets)}")
    entries: list[Entry] = []
    planned: list[tuple[PlannedRun, Path, str]] = []
    for plan in plans:
        for s in seeds:
            config = dataclasses.replace(plan.config, seed=int(s)).validate()
            name = plan.config.recipe or plan.method
            run_dir = seed_run_dir(out, name, int(s), config)
            planned.append((PlannedRun(plan.method, plan.label, config), run_dir,
                            f"== {plan.label}, seed {s}: {run_dir}"))
            entries.append((plan.label, name, run_dir, config))
    return entries, datasets.pop(), planned


def evaluate_entries(entries: Sequence[Entry], dataset: str, models: Sequence[str], robust: Sequence[str], *,
                     n_examples: int | None, version: str, device: str, verbose: bool,
                     jobs: int = 0) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[list[dict[str, Any]]]]]:
    """Per-seed rows (every run × model, best and final under every attack) and, per ``(label, recipe)``, the
    runs' histories; ``jobs`` > 1 on the CPU: the evaluations ``jobs`` at a time (:func:`warm_evaluations`)."""
    robust_key = "aa" if "aa" in robust else robust[0]
    rows: list[dict[str, Any]] = []
    grouped: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}  # (label, recipe) -> per-seed histories

    def header(label: str, which: str, config: RunConfig) -> None:
        if verbose:
            say(f"== evaluating {label} ({which}, seed {config.seed}; best and final: clean, {', '.join(robust)})")

    warm = jobs > 1 and device == "cpu"
    if warm:  # the headers first, then the one bar of the evaluations running `jobs` at a time
        for label, _, _, config in entries:
            for which in models:
                header(label, which, config)
        warm_evaluations([{"run_dir": str(run_dir), "n_examples": n_examples, "attacks": ("clean", *robust),
                           "version": version, "seed": config.seed, "device": device, "which": which}
                          for _, _, run_dir, config in entries for which in models], jobs, verbose)
    for label, recipe, run_dir, config in entries:
        for which in models:
            if not warm:  # (warmed: said above, before the bar)
                header(label, which, config)
            ev = evaluate_run(run_dir, n_examples, attacks=("clean", *robust), version=version, seed=config.seed,
                              device=device, progress=verbose, which=which)
            paper = PAPER_TABLE1.get(dataset, {}).get(label) if which == reported_model(config) else None
            rows.append(_row(label, ev, robust_key, paper, recipe=recipe, seed=config.seed, run_dir=str(run_dir)))
        grouped.setdefault((label, recipe), []).append(read_history(run_dir))
    return rows, grouped

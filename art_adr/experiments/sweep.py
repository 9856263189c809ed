"""The τ × λ grid of ADR (Wu et al. 2024, §5.6 and Fig. 5) as one resumable experiment, selected on a hold-out.

``run_sweep`` trains one run per grid cell (× seed) with :func:`art_adr.runs.train_run`, reusing finished runs and
resuming interrupted ones exactly as ``art-adr benchmark`` does, then selects the cell on the **validation
hold-out of the training set** (``val_split: holdout``), never on test images.

Grid. Every cell sets the *start* values τ_s (``temperatures``) and λ_s (``interpolations``); the end values of
the cosine schedules follow ``ends``:

- ``"gap"`` (default): keep the recipe's start → end differences, τ_e = τ_s + (τ_e⁰ − τ_s⁰) and
  λ_e = λ_s + (λ_e⁰ − λ_s⁰) (recipe values ⁰), with τ_e clipped to ≥ 0.1 and λ_e to [0, 1];
- ``"constant"``: τ_e = τ_s and λ_e = λ_s, no annealing (the paper's Fig. 5 grid);
- ``temperature_end`` / ``interpolation_end``, when given, fix that end value for every cell (overriding the rule).

Selection. The score of a cell is, averaged over its seeds, the hold-out robust accuracy of the model the runs
select by (``model``: the student, ``robust_acc``, or the EMA teacher, ``teacher_robust_acc``; every run's
``best_metric`` is set to it) at the ``epoch`` ``"best"`` (the best validation epoch, the run's ``best.pt``) or
``"final"`` (``final.pt``), under ``attack`` ``"val"`` (the runs' own per-epoch validation attack, ``val_attack``
at ``eval_max_iter`` iterations — APGD-CE+T by default, see :mod:`art_adr.attacks`) or a registered attack
(:mod:`art_adr.attacks`; ``"aa"``: AutoAttack) on the first ``n_examples`` hold-out images, that checkpoint. Ties go
to the higher hold-out clean accuracy, then to the first cell in grid order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write
from ..config import ConfigError, RunConfig, resolve_config, selected_model
from ..defaults import is_auto
from ..runs import RunError, holding_lock
from ..tables import markdown_table
from ..validation import resolve_best_metric
from .common import PlannedRun, log_table, mean_std, read_history, train_planned

__all__ = ["END_RULES", "grid_configs", "cell_name", "score_run", "select_cell", "run_sweep", "plot_heatmap",
           "heatmap_figure", "format_sweep", "sweep_summary"]

END_RULES = ("gap", "constant")


MIN_TEMPERATURE = 0.1


def _ends(start: float, base: tuple[float, float], rule: str, fixed: float | None, lo: float,
          hi: float | None) -> float:
    if fixed is not None:
        return float(fixed)
    end = start if rule == "constant" else start + (base[1] - base[0])
    end = max(lo, end)
    return min(hi, end) if hi is not None else end


def _check_gap_ends(recipe: str, base: RunConfig, ends: str, temperature_end: float | None,
                    interpolation_end: float | None) -> None:
    """``ends="gap"`` keeps the recipe's start → end gap: a recipe whose τ or λ is ``auto`` has none."""
    for name, value, end in (("temperature", base.temperature, temperature_end),
                             ("interpolation", base.interpolation, interpolation_end)):
        if ends == "gap" and end is None and is_auto(value):
            raise ConfigError(f"recipe {recipe!r} sets {name}: auto, so it has no start → end gap for --ends gap: "
                              f"give --ends constant or a fixed --{name}-end")


def grid_configs(recipe: str, temperatures: Sequence[float], interpolations: Sequence[float], *,
                 ends: str = "gap", temperature_end: float | None = None, interpolation_end: float | None = None,
                 seeds: Sequence[int] = (0,), model: str | None = None,
                 overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The grid's cells in order (τ outer, λ inner): ``{"temperature": (τ_s, τ_e), "interpolation": (λ_s, λ_e),
    "configs": [RunConfig per seed]}``. ``ConfigError`` unless the recipe is an ADR recipe validated on a hold-out."""
    if ends not in END_RULES:
        raise ConfigError(f"ends must be one of {', '.join(END_RULES)}, got {ends!r}")
    if not temperatures or not interpolations or not seeds:
        raise ConfigError("give at least one temperature, one interpolation and one seed")
    extra = dict(overrides or {})
    if model is not None:
        if model not in ("student", "teacher"):
            raise ConfigError(f"model must be student or teacher, got {model!r}")
        extra["best_metric"] = "teacher_robust_acc" if model == "teacher" else "robust_acc"
    base = resolve_config(recipe, extra)
    if not base.adr:
        raise ConfigError(f"recipe {recipe!r} does not use ADR (adr: false): τ and λ have no effect")
    if base.val_split != "holdout" or base.val_size <= 0:
        raise ConfigError("the sweep selects on a validation hold-out of the training set: it needs "
                          "val_split=holdout and val_size > 0 (never the test images)")
    _check_gap_ends(recipe, base, ends, temperature_end, interpolation_end)
    cells = []
    for tau in temperatures:
        for lam in interpolations:
            t = (float(tau), _ends(float(tau), base.temperature, ends, temperature_end, MIN_TEMPERATURE, None))
            i = (float(lam), _ends(float(lam), base.interpolation, ends, interpolation_end, 0.0, 1.0))
            configs = [resolve_config(recipe, {**extra, "temperature": list(t), "interpolation": list(i),
                                               "seed": int(s)}) for s in seeds]
            cells.append({"temperature": t, "interpolation": i, "configs": configs})
    return cells


def cell_name(temperature: tuple[float, float], interpolation: tuple[float, float], seed: int) -> str:
    """Run directory name of one cell and seed, e.g. ``tau2-1.5_lam0.7-0.9_s0`` (start-end of each schedule)."""
    return f"tau{temperature[0]:g}-{temperature[1]:g}_lam{interpolation[0]:g}-{interpolation[1]:g}_s{seed}"


def score_run(run_dir: str | os.PathLike, config: RunConfig, *, epoch: str = "best", attack: str = "val",
              n_examples: int | None = None, aa_version: str = "standard", device: str = "cpu",
              progress: bool = False) -> dict[str, Any]:
    """Hold-out scores of one finished run at the best (or final) epoch from ``metrics.jsonl``: ``val_robust``
    (the runs' validation attack, ``val_attack``, of the selected model — the metric ``best_metric`` names;
    ``val_metric`` says which), ``val_pgd`` (its PGD-k, logged beside it) and ``val_clean``; with a registered
    ``attack`` also ``val_<attack>`` (e.g. ``val_aa``: AutoAttack) and ``val_<attack>_clean`` on ``n_examples``
    hold-out images of ``checkpoints/<epoch>.pt`` through
    :func:`art_adr.evaluation.evaluate_checkpoint`, in the run's threat model, cached in the run directory with
    the checkpoint's SHA-256). A run from before ``val_attack`` existed has only PGD: it is scored by PGD, and
    ``val_metric`` says so. Accuracies in %."""
    run_dir = Path(run_dir)
    hist = read_history(run_dir)
    if not hist:
        raise RunError(f"{run_dir} has no metrics.jsonl")
    which = selected_model(config)
    prefix = "teacher_" if which == "teacher" else ""
    key = resolve_best_metric(config.best_metric, config.val_attack)
    if not any(key in r for r in hist):  # an old run: its validation computed PGD only
        key = prefix + "pgd_acc"
    scored = [r for r in hist if key in r]
    rec = (max(scored, key=lambda r: r[key]) if scored else hist[-1]) if epoch == "best" else hist[-1]

    def pct(r: dict[str, Any], k: str) -> float:
        return 100.0 * float(r.get(k, float("nan")))

    out: dict[str, Any] = {"which": which, "epoch": int(rec["epoch"]), "val_metric": key,
                           "val_robust": pct(rec, key), "val_pgd": pct(rec, prefix + "pgd_acc"),
                           "val_clean": pct(rec, prefix + "clean_acc"), "val_robust_final": pct(hist[-1], key),
                           "val_robust_best": 100.0 * float(max((r[key] for r in scored), default=float("nan")))}
    if attack != "val":
        from ..evaluation import cached_evaluation

        ev = cached_evaluation(run_dir, which=which, attacks=("clean", attack), n_examples=n_examples,
                               version=aa_version, seed=config.seed, split="holdout", tags=(epoch,), device=device,
                               progress=progress)
        out.update({f"val_{attack}": ev[epoch][attack], f"val_{attack}_clean": ev[epoch]["clean"],
                    "n_examples": ev["n_examples"], f"{attack}_epoch": ev[epoch]["epoch"]})
    return out


def _cell_summary(cell: dict[str, Any], scores: list[dict[str, Any]], run_dirs: list[Path]) -> dict[str, Any]:
    summary: dict[str, Any] = {"temperature": list(cell["temperature"]), "interpolation": list(cell["interpolation"]),
                               "seeds": [c.seed for c in cell["configs"]], "runs": [str(r) for r in run_dirs],
                               "which": scores[0]["which"], "epochs": [s["epoch"] for s in scores],
                               "per_seed": scores}
    summary["val_metric"] = scores[0]["val_metric"]
    keys = ("val_robust", "val_pgd", "val_clean", "val_robust_best", "val_robust_final")
    for key in keys + tuple(k for k in scores[0] if k.startswith("val_") and k not in (*keys, "val_metric")):
        if all(key in s for s in scores):
            summary[key], summary[f"{key}_std"] = mean_std([s[key] for s in scores])
    return summary


def select_cell(cells: list[dict[str, Any]], attack: str = "val") -> int:
    """Index of the cell with the highest hold-out score (``val_<attack>``, e.g. ``val_aa``, or ``val_robust``: the
    runs' validation attack); ties: higher hold-out clean accuracy, then grid order."""
    key, clean = ("val_robust", "val_clean") if attack == "val" else (f"val_{attack}", f"val_{attack}_clean")
    return max(range(len(cells)), key=lambda i: (round(cells[i][key], 9), round(cells[i].get(clean, 0.0), 9), -i))


def plot_heatmap(summary: dict[str, Any], path: str | os.PathLike) -> Path:
    """τ (rows) × λ (columns) heat map of the hold-out score (the validation attack's accuracy; AutoAttack when
    evaluated), selected cell framed; the numbers are written in the cells (:func:`heatmap_figure`)."""
    import matplotlib.pyplot as plt

    fig = heatmap_figure(summary)
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return out


def heatmap_figure(summary: dict[str, Any]) -> Any:
    """The figure of :func:`plot_heatmap`: one panel per score, sized so titles, tick labels and colour bars
    never overlap (constrained layout), even for 1 × 2 or 2 × 2 grids; colours on a fixed 0–100 % scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    taus, lams = summary["grid"]["temperatures"], summary["grid"]["interpolations"]
    cells = summary["cells"]
    attack = _scored_attack(summary)
    keys = [("val_robust", _metric_label(cells[0]["val_metric"]))] + (
        [(f"val_{attack}", _attack_title(attack, summary["selection"].get("aa_version")))] if attack else [])
    panel_w, height = max(3.6, 1.9 + 1.1 * len(lams)), max(3.0, 1.9 + 0.7 * len(taus))
    fig, axes = plt.subplots(1, len(keys), figsize=(panel_w * len(keys), height), squeeze=False,
                             layout="constrained")
    sel = summary["selected"]["index"]
    for ax, (key, name) in zip(axes[0], keys):
        grid = np.array([c[key] for c in cells], dtype=float).reshape(len(taus), len(lams))
        lo, hi = 0.0, 100.0  # a fixed accuracy scale: sweeps compare by colour, and no bar spans −0.5…0.5 %
        im = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower", vmin=lo, vmax=hi)
        for k, c in enumerate(cells):
            r, q = divmod(k, len(lams))
            text = f"{c[key]:.1f}" + (f"\n±{c[key + '_std']:.1f}" if len(c["seeds"]) > 1 else "")
            ax.text(q, r, text, ha="center", va="center", fontsize=8,
                    color="white" if c[key] < (lo + hi) / 2 else "black")
        r, q = divmod(sel, len(lams))
        ax.add_patch(plt.Rectangle((q - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=2))
        ax.set_xticks(range(len(lams)), [f"{v:g}→{cells[i]['interpolation'][1]:g}" for i, v in enumerate(lams)])
        ax.set_yticks(range(len(taus)), [f"{v:g}→{cells[i * len(lams)]['temperature'][1]:g}"
                                         for i, v in enumerate(taus)])
        ax.set_xlabel("λ (interpolation) start→end", fontsize=9)
        ax.set_ylabel("τ (temperature) start→end", fontsize=9)
        ax.set_title(f"hold-out {name}\n{summary['selection']['model']} @ {summary['selection']['epoch']} "
                     "(red: selected)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.08, pad=0.03).set_label("accuracy (%)", fontsize=8)
    fig.suptitle(f"{summary['recipe']}: ADR τ × λ sweep ({len(summary['seeds'])} seed"
                 f"{'s' if len(summary['seeds']) > 1 else ''})", fontsize=10)
    return fig


def _metric_label(key: str) -> str:
    """``"teacher_apgd_acc"`` → ``"APGD-CE+T"`` (the validation attack's label; ``"PGD"`` for PGD)."""
    from ..attacks import ATTACKS, validating_attack_names

    name = key.removeprefix("teacher_").removesuffix("_acc")
    return ATTACKS[name].label if name in validating_attack_names() else name


def _scored_attack(summary: dict[str, Any]) -> str | None:
    """The registered attack a sweep scored its cells with besides the runs' validation (``None``: none)."""
    attack = summary["selection"].get("attack") or ("aa" if "val_aa" in summary["cells"][0] else "val")
    return attack if attack != "val" and f"val_{attack}" in summary["cells"][0] else None


def _attack_title(attack: str, aa_version: str | None) -> str:
    """``"AutoAttack (standard)"``, or the attack's label (``"Margin-PGD"``)."""
    from ..attacks import ATTACKS

    if attack == "aa":
        return f"AutoAttack ({aa_version})"
    return ATTACKS[attack].label if attack in ATTACKS else attack


def format_sweep(summary: dict[str, Any]) -> str:
    """Markdown: one row per cell (hold-out scores, mean ± std over seeds), the selected cell marked."""
    attack = _scored_attack(summary)
    extra = (["hold-out AutoAttack", "AA clean"] if attack == "aa" else
             [f"hold-out {_attack_title(attack, None)}", f"{attack} clean"] if attack else [])
    multi = len(summary["seeds"]) > 1

    def cell(c: dict[str, Any], key: str) -> str:
        return f"{c[key]:.2f} ± {c[key + '_std']:.2f}" if multi else f"{c[key]:.2f}"

    sel = summary["selection"]
    name = _metric_label(summary["cells"][0]["val_metric"])
    head = ["τ start→end", "λ start→end", f"hold-out {name} ({sel['epoch']})", "hold-out PGD", "hold-out clean",
            f"{name} at best epoch", f"{name} at final epoch"] + extra + ["selected"]
    lines = [f"ADR sweep of {summary['recipe']} ({sel['model']}, seeds {', '.join(map(str, summary['seeds']))}; "
             f"% on the validation hold-out of the training set)", ""]
    body = []
    for k, c in enumerate(summary["cells"]):
        row = [f"{c['temperature'][0]:g}→{c['temperature'][1]:g}",
               f"{c['interpolation'][0]:g}→{c['interpolation'][1]:g}", cell(c, "val_robust"), cell(c, "val_pgd"),
               cell(c, "val_clean"), cell(c, "val_robust_best"), cell(c, "val_robust_final")]
        if attack:
            row += [cell(c, f"val_{attack}"), cell(c, f"val_{attack}_clean")]
        row.append("**←**" if k == summary["selected"]["index"] else "")
        body.append(row)
    lines += markdown_table(head, body) + ["", f"Selection: {sel['rule']}"]
    return "\n".join(lines) + "\n"


@holding_lock("sweep", ("sweep.json", "sweep.md", "sweep.png"))  # one sweep per output directory
def run_sweep(recipe: str, out: str | os.PathLike, *, temperatures: Sequence[float],
              interpolations: Sequence[float], ends: str = "gap", temperature_end: float | None = None,
              interpolation_end: float | None = None, seeds: Sequence[int] = (0,), model: str | None = None,
              epoch: str = "best", attack: str = "val", n_examples: int | None = None, aa_version: str = "standard",
              overrides: dict[str, Any] | None = None, device: str = "cpu",
              verbose: bool = True, launcher: Any = None, loggers: Sequence[str] = ()) -> dict[str, Any]:
    """Train (or reuse) every cell × seed under ``out/runs/<cell>``, score each on the hold-out, select, and write
    ``sweep.json``, ``sweep.md`` and ``sweep.png``; returns the summary (``sweep.json``'s content). ``launcher`` and
    ``loggers`` as in :func:`art_adr.experiments.run_benchmark` (``{"unfinished": [...]}`` while runs are left)."""
    if epoch not in ("best", "final"):
        raise ConfigError(f"epoch must be best or final, got {epoch!r}")
    from ..attacks import robust_attack_names

    if attack != "val" and attack not in robust_attack_names():
        raise ConfigError(f"attack must be val or one of {', '.join(robust_attack_names())}, got {attack!r}")
    out = Path(out)
    cells = grid_configs(recipe, temperatures, interpolations, ends=ends, temperature_end=temperature_end,
                         interpolation_end=interpolation_end, seeds=seeds, model=model, overrides=overrides)
    planned = [(PlannedRun("sweep", recipe, config), _run_dir(out, cell, config),
                f"== cell {k + 1}/{len(cells)}: τ {cell['temperature']}, λ {cell['interpolation']}, "
                f"seed {config.seed}: {_run_dir(out, cell, config)}")
               for k, cell in enumerate(cells) for config in cell["configs"]]
    unfinished = train_planned(planned, out, launcher=launcher, loggers=loggers, verbose=verbose,
                               command="art-adr sweep")
    if unfinished:
        return {"unfinished": unfinished, "files": {}, "markdown": None}
    summaries = [_score_cell(out, cell, epoch=epoch, attack=attack, n_examples=n_examples, aa_version=aa_version,
                             device=device, verbose=verbose) for cell in cells]
    grid = {"temperatures": [float(t) for t in temperatures], "interpolations": [float(v) for v in interpolations],
            "ends": ends, "temperature_end": temperature_end, "interpolation_end": interpolation_end,
            "end_rule": _END_TEXT[ends]}
    summary = sweep_summary(recipe, cells, summaries, grid, seeds=seeds, overrides=overrides, epoch=epoch,
                            attack=attack, aa_version=aa_version, n_examples=n_examples)
    return _write_sweep(out, summary, loggers)


def _score_cell(out: Path, cell: dict[str, Any], *, epoch: str, attack: str, n_examples: int | None, aa_version: str,
                device: str, verbose: bool) -> dict[str, Any]:
    """One cell's summary: every seed's run scored (:func:`score_run`), mean ± std over them."""
    run_dirs, scores = [], []
    for config in cell["configs"]:
        run_dir = _run_dir(out, cell, config)
        run_dirs.append(run_dir)
        scores.append(score_run(run_dir, config, epoch=epoch, attack=attack, n_examples=n_examples,
                                aa_version=aa_version, device=device, progress=verbose))
    return _cell_summary(cell, scores, run_dirs)


def sweep_summary(recipe: str, cells: list[dict[str, Any]], summaries: list[dict[str, Any]], grid: dict[str, Any], *,
                  seeds: Sequence[int], overrides: dict[str, Any] | None, epoch: str, attack: str, aa_version: str,
                  n_examples: int | None) -> dict[str, Any]:
    """``sweep.json``'s content: the grid, the selection rule, every cell's scores and the selected cell."""
    index = select_cell(summaries, attack)
    base = cells[0]["configs"][0]
    which = summaries[0]["which"]
    n_examples_scored = summaries[0]["per_seed"][0].get("n_examples")
    score = f"{_attack_title(attack, aa_version)} on the first {n_examples_scored} hold-out images" \
        if attack != "val" else (f"{_metric_label(summaries[0]['val_metric'])}-{base.eval_max_iter} (the runs' "
                                 f"per-epoch validation, {summaries[0]['val_metric']})")
    rule = (f"highest mean over seeds of the {which}'s {score} accuracy at the {epoch} checkpoint "
            f"({'best validation epoch by ' + summaries[0]['val_metric'] if epoch == 'best' else 'last epoch'}), "
            "on the "
            f"validation hold-out of the training set (val_size {base.val_size}, never test images); ties: higher "
            "hold-out clean accuracy, then grid order")
    return {
        "format": "art-adr-sweep", "version": 1, "recipe": recipe, "dataset": base.dataset,
        "grid": grid,
        "seeds": [int(s) for s in seeds], "overrides": {k: v for k, v in (overrides or {}).items()},
        "selection": {"model": which, "metric": summaries[0]["val_metric"], "epoch": epoch, "attack": attack,
                      "aa_version": aa_version if attack == "aa" else None, "n_examples": n_examples,
                      "split": "holdout", "val_size": base.val_size, "rule": rule},
        "cells": summaries,
        "selected": {"index": index, "temperature": summaries[index]["temperature"],
                     "interpolation": summaries[index]["interpolation"],
                     "score": summaries[index]["val_robust" if attack == "val" else f"val_{attack}"]},
    }


def _write_sweep(out: Path, summary: dict[str, Any], loggers: Sequence[str]) -> dict[str, Any]:
    """``sweep.json``, ``sweep.md``, ``sweep.png`` and the table to the loggers; the summary with its Markdown and
    files."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "sweep.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1, default=str)))
    md = format_sweep(summary)
    atomic_write(out / "sweep.md", lambda tmp: Path(tmp).write_text(md))
    plot_heatmap(summary, out / "sweep.png")
    log_table(out, loggers, "sweep", md, [_flat(c) for c in summary["cells"]], summary["selection"])
    summary["markdown"] = md
    summary["files"] = {"json": out / "sweep.json", "md": out / "sweep.md", "png": out / "sweep.png"}
    summary["unfinished"] = []
    return summary


def _run_dir(out: Path, cell: dict[str, Any], config: RunConfig) -> Path:
    return out / "runs" / cell_name(cell["temperature"], cell["interpolation"], config.seed)


def _flat(cell: dict[str, Any]) -> dict[str, Any]:
    """A cell of ``sweep.json`` as one table row (τ, λ as start→end text, the scores)."""
    row: dict[str, Any] = {"temperature": "{:g}→{:g}".format(*cell["temperature"]),
                           "interpolation": "{:g}→{:g}".format(*cell["interpolation"])}
    return row | {k: v for k, v in cell.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


_END_TEXT = {
    "gap": "end = start + the recipe's (end − start), τ_end ≥ 0.1, λ_end clipped to [0, 1]",
    "constant": "end = start (no annealing, as in the paper's Fig. 5)",
}

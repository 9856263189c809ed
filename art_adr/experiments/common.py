"""What the experiments share: a planned run and its training (in process or through a launcher, finished runs
reused, interrupted ones resumed), a run's history, mean ± population std, seed lists, tables to the loggers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig, parse_seeds  # parse_seeds: in config, which the CLI reads before torch
from ..console import say
from ..runs import RunError, config_diff, load_run_config, train_run

__all__ = ["PlannedRun", "is_finished", "ensure_trained", "train_planned", "log_table", "read_history", "mean_std",
           "parse_seeds"]


@dataclass
class PlannedRun:
    """One method of the benchmark: its label, the recipe it starts from, the resolved config."""

    method: str
    label: str
    config: RunConfig


def is_finished(plan: PlannedRun, run_dir: Path) -> bool:
    """``checkpoints/final.pt`` is there, of this very run (``RunError`` when it was trained with other options)."""
    if not (run_dir / "checkpoints" / "final.pt").is_file():
        return False
    if config_diff(load_run_config(run_dir).to_dict(), plan.config.to_dict()):
        raise RunError(f"{run_dir} holds a finished run with other options; use another --out")
    return True


def ensure_trained(plan: PlannedRun, run_dir: Path, verbose: bool, command: str = "art-adr benchmark",
                    loggers: Sequence[str] = ()) -> Path:
    """Train, resume an interrupted run, or reuse a finished one (``checkpoints/final.pt`` present)."""
    if is_finished(plan, run_dir):
        return run_dir
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    return train_run(plan.config, run_dir, resume=resume, verbose=verbose, command=command, loggers=loggers)


def train_planned(planned: Sequence[tuple[PlannedRun, Path, str]], out: Path, *, launcher: Any = None,
                  loggers: Sequence[str] = (), verbose: bool = True, command: str = "art-adr benchmark") -> list[Path]:
    """Train every planned ``(run, run dir, what to print)``: in this process one after another (no launcher, or
    ``local`` without GPUs), else through :func:`art_adr.launch.launch_runs` (one job per unfinished run); then
    bring the ``loggers`` of every run up to its ``metrics.jsonl``. Returns the runs left unfinished (only with a
    launcher that does not wait)."""
    if launcher is None or launcher.in_process:
        for plan, run_dir, text in planned:
            if verbose:
                say(text)
            ensure_trained(plan, run_dir, verbose, command, loggers)
        unfinished: list[Path] = []
    else:
        from ..launch import launch_runs

        todo = [(run_dir, plan.config) for plan, run_dir, _ in planned if not is_finished(plan, run_dir)]
        if verbose:
            say(f"== {len(planned) - len(todo)} of {len(planned)} runs finished already")
        unfinished = launch_runs(todo, launcher, out, loggers=loggers, verbose=verbose, command=command,
                                 name=f"art-adr-{out.resolve().name}") if todo else []
    if loggers:
        from ..loggers import sync_run

        for plan, run_dir, _ in planned:
            if run_dir not in unfinished:
                sync_run(run_dir, loggers, plan.config.to_dict())
    return unfinished


def log_table(out: Path, loggers: Sequence[str], name: str, markdown: str, rows: Sequence[dict[str, Any]],
              meta: dict[str, Any] | None = None) -> None:
    """The evaluation table of a benchmark or sweep to its loggers (TensorBoard: text in ``out/tb/``)."""
    if not loggers:
        return
    from ..loggers import open_loggers

    with open_loggers(loggers, out, meta, name=f"{out.resolve().name}-{name}") as view:
        view.log_table(name, markdown, rows)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run directory's ``metrics.jsonl`` (empty when it has none)."""
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof = 0, as the paper's Table 7 reports it)."""
    n = len(values)
    mean = sum(values) / n
    return mean, (sum((v - mean) ** 2 for v in values) / n) ** 0.5



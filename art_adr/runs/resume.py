"""Resuming a run from ``checkpoints/last.pt``: the checkpoint checked against the config, loaded into the trainer,
and the metrics, plot and ``best.pt`` rebuilt from it (the checkpoint is the single source of truth)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError, atomic_write, load_checkpoint, non_finite_weights
from ..config import RunConfig
from ..distributed import DistInfo
from ..validation import resolve_best_metric
from .build import upgrade_scheduler_state
from .curves import plot_run
from .files import RunError, config_diff, write_metrics

__all__ = ["resume_state", "resume_trainer", "rebuild_outputs"]


def resume_state(last: Path, config: RunConfig) -> dict[str, Any]:
    """``last.pt`` loaded on the CPU (its RNG states must stay CPU tensors; ``load_state_dict`` moves the weights
    and optimizer state to the run's device) and checked against the run's config; non-finite weights are
    refused (``CheckpointError``), as ``evaluate`` refuses them."""
    state = load_checkpoint(last)
    bad = non_finite_weights(state)
    if bad:
        raise CheckpointError(f"{last} holds non-finite weights (NaN/inf in {', '.join(bad[:3])}"
                              f"{' ...' if len(bad) > 3 else ''}): it cannot be resumed; start a new run with other "
                              f"options (e.g. a lower --lr) and another --out")
    diff = config_diff(state.get("config") or {}, config.to_dict())
    if diff:
        raise RunError(f"the checkpoint was trained with different options ({', '.join(diff)})")
    epoch, history = state.get("epoch"), state.get("history")
    if not isinstance(epoch, int) or not isinstance(history, list) or len(history) != epoch \
            or not 0 < epoch <= config.epochs or any(not isinstance(r, dict) for r in history):
        raise CheckpointError(f"{last} is inconsistent (epoch {epoch!r}, "
                              f"{len(history) if isinstance(history, list) else 'no'} history records, "
                              f"{config.epochs} epochs planned); it cannot be resumed")
    return state


def resume_trainer(trainer: Any, last: Path, config: RunConfig, steps: int, scheduler: Any,
                   dist: DistInfo, state: dict[str, Any] | None = None) -> None:
    """Load ``last.pt`` (``state``: its :func:`resume_state`, when already read) into ``trainer``
    (``CheckpointError`` when it does not fit); rank 0 rebuilds the metrics, plot and ``best.pt`` from it."""
    state = resume_state(last, config) if state is None else state
    state["scheduler"] = upgrade_scheduler_state(state.get("scheduler"), config, steps, trainer.optimizer)
    try:
        trainer.load_state_dict(state, scheduler=scheduler)
    except (KeyError, IndexError, RuntimeError, TypeError, ValueError) as exc:
        text = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{last} does not fit this run ({type(exc).__name__}: {text}); it cannot be "
                              f"resumed") from None
    if dist.is_main:
        rebuild_outputs(out=last.parent.parent, config=config, last=last, state=state)


def rebuild_outputs(out: Path, config: RunConfig, last: Path, state: dict[str, Any]) -> None:
    """The checkpoint is the single source of truth: on resume, ``metrics.{jsonl,csv}`` and ``curves.png`` are
    rewritten from its history, and ``best.pt`` from ``last.pt`` when the best epoch is the checkpoint's own (a
    kill between ``last.pt`` and ``best.pt`` or before the metrics loses nothing)."""
    history = state["history"]
    write_metrics(out, history)
    plot_run(out, history, config)
    key = resolve_best_metric(config.best_metric, config.val_attack)
    scored = [r for r in history if r.get(key) is not None]
    if scored and max(scored, key=lambda r: r[key])["epoch"] == state["epoch"]:
        atomic_write(last.parent / "best.pt", lambda tmp: shutil.copyfile(last, tmp))

"""Training runs (``art-adr train``): data, model, trainer, per-epoch metrics, plots, atomic checkpoints, exact
resume, DDP.

- :mod:`~art_adr.runs.files`: the run directory: its lock (:class:`RunLock`), killed writes' temp files,
  ``config.yaml`` (:func:`write_config`, :func:`load_run_config`, :func:`config_diff`), metrics files.
- :mod:`~art_adr.runs.signals`: how a run stops: :class:`RunInterrupted` (SIGTERM), :class:`RunStopped`, and the
  kill hook of the recovery tests (``ART_ADR_KILL_AT``, :data:`KILL_POINTS`).
- :mod:`~art_adr.runs.build`: the device, the LR schedulers (:func:`build_scheduler`), SGD's parameter groups and
  the trainer (:func:`build_trainer`; :func:`trainer_arguments` maps the config onto it by name).
- :mod:`~art_adr.runs.data`: a run's sets (:func:`load_data`) and where they live (:func:`place_data`).
- :mod:`~art_adr.runs.resume`: resuming from ``last.pt`` (the metrics, plot and ``best.pt`` rebuilt from it).
- :mod:`~art_adr.runs.curves`: ``curves.png`` (:func:`plot_curves`, :func:`curves_figure`).
- :mod:`~art_adr.runs.train`: :func:`train_run`, the run itself.

The process group of ``torchrun`` (:class:`DistInfo`, :func:`init_distributed`) lives in
:mod:`art_adr.distributed`, with the trainers' other DDP pieces.
"""

from __future__ import annotations

from ..distributed import DistInfo, init_distributed, replicas_in_sync
from .build import (
    RUN_FIELDS,
    TRAINER_ONLY_ARGS,
    WARMUP_LR_INIT,
    WarmupCosineLR,
    WarmupMultiStepLR,
    build_scheduler,
    build_trainer,
    fused_sgd_supported,
    parameter_groups,
    pick_device,
    trainer_arguments,
    upgrade_scheduler_state,
)
from .curves import curves_figure, plot_curves
from .data import load_data, place_data
from .files import (
    ADR_ONLY_FIELDS,
    CHECKPOINT_FILES,
    CONFIG_FILE,
    RUN_OUTPUTS,
    RunError,
    RunLock,
    config_diff,
    epoch_checkpoint,
    holding_lock,
    load_run_config,
    remove_leftover_tmp,
    resume_hint,
    write_config,
    write_csv,
)
from .signals import KILL_ENV, KILL_POINTS, RunInterrupted, RunStopped
from .train import train_run

__all__ = ["train_run", "RunError", "RunStopped", "RunInterrupted", "RunLock", "resume_hint", "load_run_config",
           "build_scheduler", "plot_curves", "curves_figure", "upgrade_scheduler_state", "holding_lock",
           "remove_leftover_tmp", "CONFIG_FILE", "RUN_OUTPUTS", "CHECKPOINT_FILES", "ADR_ONLY_FIELDS", "KILL_ENV",
           "KILL_POINTS", "DistInfo", "init_distributed", "pick_device", "replicas_in_sync", "WARMUP_LR_INIT",
           "WarmupCosineLR", "WarmupMultiStepLR",
           "write_config", "write_csv", "config_diff", "epoch_checkpoint", "load_data", "place_data",
           "parameter_groups", "fused_sgd_supported", "RUN_FIELDS", "TRAINER_ONLY_ARGS", "trainer_arguments",
           "build_trainer"]

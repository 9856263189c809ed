"""``art-adr train``: one run from its directory check to ``final.pt`` — data, trainer, batches, the epochs with
their checkpoints, metrics and plot (rank 0), exact resume, SIGTERM and DDP."""

from __future__ import annotations

import os
import platform
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..checkpoint import save_checkpoint
from ..config import RunConfig
from ..console import say
from ..distributed import DistInfo, init_distributed, leave_together, replicas_in_sync, together
from .build import build_scheduler, build_trainer, model_desc, pick_device
from .curves import plot_run
from .data import place_data, placed_tensors, run_data
from .files import (
    CHECKPOINT_FILES,
    CONFIG_FILE,
    RUN_OUTPUTS,
    RunError,
    RunLock,
    check_layout,
    check_not_foreign,
    config_diff,
    epoch_checkpoint,
    git_commit,
    load_run_config,
    remove_leftover_tmp,
    write_config,
    write_metrics,
)
from .resume import resume_state, resume_trainer
from .signals import KillHook, RunInterrupted, RunStopped, StopOnSigterm

__all__ = ["train_run", "check_run_dir", "run_checkpoint", "open_view", "TrainingRun"]


def train_run(
    config: RunConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    verbose: bool = True,
    command: str | None = None,
    loggers: Sequence[str] = (),
) -> Path:
    """Run ``art-adr train``: writes ``config.yaml``, ``metrics.{jsonl,csv}``, ``curves.png`` and
    ``checkpoints/{last,best,final}.pt`` under ``out_dir``; ``resume=True`` continues from ``last.pt``
    bit-for-bit (CPU, fixed seed). Under ``torchrun`` every rank trains a shard of each batch and rank 0 writes.

    One process per run directory (``RunLock``; ``RunError`` when another one holds it). A run killed before its
    first checkpoint starts again from scratch (``resume=True``, or the same options again). On resume the
    metrics, plot and ``best.pt`` are rebuilt from ``last.pt``. SIGTERM stops after the running step (after the
    epoch's checkpoint when it comes during validation) with ``RunInterrupted``. ``loggers``
    (:data:`art_adr.loggers.LOGGERS`) follow the history live, each epoch written once (resumes included).
    """
    if stop_after_epochs is not None and (isinstance(stop_after_epochs, bool) or not isinstance(stop_after_epochs, int)
                                          or stop_after_epochs < 1):
        raise RunError(f"stop_after_epochs must be an integer >= 1 (or None), got {stop_after_epochs!r}")
    out = Path(out_dir)
    dist = init_distributed(config.device)
    if loggers:
        from ..loggers import check_loggers, parse_loggers

        loggers = parse_loggers(loggers)
        check_loggers(loggers)
    hook = KillHook()
    # under DDP, an error on one rank (a GPU missing, rank 0's lock or checks) ends every rank with it
    device = together(lambda: (config.validate(), pick_device(config.device, dist))[1], dist.world_size, RunError)
    lock = together(lambda: RunLock(out, "train") if dist.is_main else None, dist.world_size, RunError)
    try:
        hook("locked", 0)
        run = TrainingRun(config, out, dist, device, resume=resume, stop_after_epochs=stop_after_epochs,
                          verbose=verbose, command=command, hook=hook, loggers=loggers)
        return run.run()
    finally:
        if lock is not None:
            lock.release()  # a run that failed before writing anything leaves no directory


def check_run_dir(config: RunConfig, out: Path, dist: DistInfo, resume: bool, verbose: bool) -> bool:
    """Whether ``out`` holds a checkpoint to resume; ``RunError`` when the directory and ``resume`` disagree
    (rank 0 also looks at a run stopped before its first checkpoint and removes a killed write's temp files)."""
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.pt"
    check_layout(out)
    if dist.is_main and not resume:
        check_not_foreign(out)
    if dist.is_main and (out / CONFIG_FILE).is_file():  # only in a run directory, only our own temp files
        remove_leftover_tmp(out, RUN_OUTPUTS)
        remove_leftover_tmp(ckpt_dir, CHECKPOINT_FILES)
    have_ckpt = last.is_file()
    if have_ckpt and not resume:
        raise RunError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if not have_ckpt and dist.is_main:
        if (out / CONFIG_FILE).is_file():  # stopped before its first checkpoint: start it again
            if not resume:
                diff = config_diff(load_run_config(out).to_dict(), config.to_dict())
                if diff:
                    raise RunError(f"{out} holds a run that stopped before its first checkpoint, with other "
                                   f"options ({', '.join(diff)}); start it again with --resume, or choose "
                                   f"another --out")
            if verbose:
                print(f"{out} has no checkpoint yet (a new run, or one stopped in its first epoch): training it "
                      "from the first epoch")
        elif resume:
            raise RunError(f"nothing to resume: {out} holds no run ({CONFIG_FILE} and {last} do not exist)")
    if config.batch_size % dist.world_size:
        raise RunError(f"batch_size {config.batch_size} is not divisible by {dist.world_size} processes")
    return have_ckpt


def run_checkpoint(trainer: Any, config: RunConfig, desc: dict[str, Any], record: dict[str, Any] | None) -> dict:
    """What ``last.pt`` / ``best.pt`` / ``final.pt`` hold: the model's description, the config, the trainer's
    state and the epoch's metrics."""
    return {"model": desc, "config": config.to_dict(), **trainer.state_dict(), "metrics": record or {}}


def open_view(loggers: Sequence[str], out: Path, config: RunConfig) -> Any:
    """The run's loggers (:mod:`art_adr.loggers`), or ``None`` without any."""
    if not loggers:
        return None
    from ..loggers import open_loggers

    return open_loggers(loggers, out, config.to_dict())


class TrainingRun:
    """One invocation of a run with its directory locked: the directory checked, the data, the trainer and its
    batches (a new ``config.yaml`` or the resumed state), the epochs (each one's checkpoints, metrics and plot
    written by rank 0), then ``final.pt``. Every step before the first collective agrees on errors across ranks."""

    def __init__(self, config: RunConfig, out: Path, dist: DistInfo, device: torch.device, *, resume: bool,
                 stop_after_epochs: int | None, verbose: bool, command: str | None, hook: KillHook,
                 loggers: Sequence[str] = ()) -> None:
        self.config, self.out, self.dist, self.device = config, out, dist, device
        self.resume, self.stop_after_epochs, self.verbose, self.command = resume, stop_after_epochs, verbose, command
        self.hook, self.loggers = hook, loggers
        self.ckpt_dir = out / "checkpoints"
        self.last = self.ckpt_dir / "last.pt"
        self.trainer: Any = None
        self.desc: dict[str, Any] = {}
        self.view: Any = None
        self.stop: StopOnSigterm | None = None
        self.started_at = 0

    def _say(self, text: str, flush: bool = False) -> None:
        if self.verbose and self.dist.is_main:
            say(text)  # in order with the progress bars (flushed)

    def run(self) -> Path:
        """Train the run to its last epoch (or to ``stop_after_epochs``); returns the run directory."""
        config, out, dist = self.config, self.out, self.dist
        # every step before the first collective (the DDP constructor in build_trainer) agrees on errors
        have_ckpt = together(lambda: check_run_dir(config, out, dist, self.resume, self.verbose), dist.world_size,
                             RunError)
        # last.pt checked (options, consistency, finite weights) before any work
        state = together(lambda: resume_state(self.last, config), dist.world_size, RunError) if have_ckpt else None
        if state is not None and (self.ckpt_dir / "final.pt").is_file() and state["epoch"] == config.epochs:
            # finished: its files (and their hashes, which caches key on) stay as they are
            self._say(f"{out} is a finished run ({config.epochs} epochs); nothing to do")
            return out
        self._say(f"loading {config.dataset} ...", flush=True)
        train, val, _test, extra = together(lambda: run_data(config), dist.world_size, RunError)
        self._say(f"training {config.recipe or config.dataset + ' ' + config.method}: {config.arch} on "
                  f"{self.device}, {len(train)} training and {len(val)} validation images, {config.epochs} epochs "
                  f"-> {out}", flush=True)
        self.trainer = build_trainer(config, train.num_classes, train.shape, self.device, verbose=self.verbose)
        self.desc = model_desc(config, train.num_classes, train.shape)
        batches, steps, scheduler = together(lambda: self._batches_and_state(train, val, extra, state),
                                             dist.world_size, RunError)
        state = None  # loaded into the trainer: not kept in memory while training
        self.hook("config", 0)
        return self._fit(batches, steps, scheduler, val)

    def _batches_and_state(self, train: Any, val: Any, extra: Any, state: dict[str, Any] | None
                           ) -> tuple[Any, int, Any]:
        """Batches, scheduler, and the resumed ``state`` (of ``last.pt``) or a new ``config.yaml`` (errors agreed
        across ranks)."""
        from ..loader import DeviceBatches, MixedBatches

        config, device, dist, trainer = self.config, self.device, self.dist, self.trainer
        train_here, extra_here = place_data(train.x, None if extra is None else extra.x, device)
        xs, ys = placed_tensors(train.x, train.y, device, train_here)
        main = DeviceBatches(xs, ys, config.batch_size, shuffle=True, augment=trainer.augment, seed=config.seed,
                             drop_last=config.drop_last, device=device, channels_last=config.channels_last,
                             rank=dist.rank, world_size=dist.world_size, stream=not train_here)
        batches: Any = main
        if extra is not None:
            batches = MixedBatches(main, *placed_tensors(extra.x, extra.y, device, extra_here), config.extra_fraction,
                                   stream_extra=not extra_here, sampling=config.extra_sampling)
        steps = len(batches)
        scheduler = build_scheduler(trainer.optimizer, config, steps)
        trainer.scheduler = scheduler
        if state is not None:
            resume_trainer(trainer, self.last, config, steps, scheduler, dist, state)
        elif dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_config(self.out, config, self._meta(len(train), len(val)))
        return batches, steps, scheduler

    def _meta(self, n_train: int, n_val: int) -> dict[str, Any]:
        """The header of a new ``config.yaml``: what ran, where, when."""
        device = self.device
        return {"art_adr": __version__, "torch": torch.__version__, "python": platform.python_version(),
                "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                "world_size": self.dist.world_size, "git_commit": git_commit(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": self.command or "train_run()",
                "train_examples": n_train, "val_examples": n_val, "val_split": self.config.val_split}

    def _fit(self, batches: Any, steps: int, scheduler: Any, val: Any) -> Path:
        """The epochs left, then ``final.pt``."""
        config, trainer, dist = self.config, self.trainer, self.dist
        self.view = open_view(self.loggers, self.out, config) if dist.is_main else None
        if self.view is not None:
            self.view.log_history(trainer.history)  # a resumed run: the epochs its loggers lack
        self.started_at = trainer.epoch
        trainer.set_plan(0, config.epochs * steps)  # τ/λ anneal over the whole run, whatever epoch it resumes at
        self.stop = StopOnSigterm(dist.world_size, self.device)
        if self.hook.point == "validation":  # test hook: die as validation starts
            trainer.before_validation.append(lambda tr: self.hook("validation", tr.epoch))
        try:
            trainer.fit_batches(lambda epoch: self._epoch_batches(batches, epoch), steps,
                                config.epochs - trainer.epoch, (val.x, val.y), scheduler, [self._on_epoch_end])
        except RunStopped:
            self._say(f"stopped after epoch {trainer.epoch}; continue with: art-adr train --out {self.out} --resume")
            leave_together(dist.world_size)
            return self.out
        finally:
            self.stop.restore()
            if self.view is not None:
                self.view.close()
        self._finish()
        return self.out

    def _epoch_batches(self, batches: Any, epoch: int) -> Any:
        for i, batch in enumerate(batches.epoch(epoch)):
            if i:
                self.hook("step", epoch + 1)
            if self.stop.now():  # SIGTERM came during the last step: stop; the epoch is trained again on resume
                raise RunInterrupted(self.out, self.stop.signum or signal.SIGTERM)
            yield batch

    def _on_epoch_end(self, tr: Any, record: dict[str, Any]) -> None:
        self.hook("epoch-end", tr.epoch)
        attack_ranks: list[Any] = [None] * self.dist.world_size
        if self.dist.world_size > 1:  # ranks seed their attack generators apart: keep every rank's for exact resume
            torch.distributed.all_gather_object(attack_ranks, tr.generator.get_state())
        if self.dist.is_main:
            self._save_epoch(tr, record, attack_ranks)
        if self.stop.at_epoch_end():  # also in the last epoch: the signal is honoured, --resume writes final.pt
            raise RunInterrupted(self.out, self.stop.signum or signal.SIGTERM)
        if self.stop_after_epochs is not None and tr.epoch - self.started_at >= self.stop_after_epochs \
                and tr.epoch < self.config.epochs:
            raise RunStopped

    def _save_epoch(self, tr: Any, record: dict[str, Any], attack_ranks: list[Any]) -> None:
        """Rank 0 at an epoch's end: ``last.pt``, ``best.pt`` when this epoch is the best, the ``save_every``
        checkpoint, the metrics (and loggers) and the plot, in that order (the kill points between them)."""
        config, hook, ckpt_dir = self.config, self.hook, self.ckpt_dir
        ckpt = run_checkpoint(tr, config, self.desc, record)
        if self.dist.world_size > 1:
            ckpt["rng"]["attack_ranks"] = attack_ranks
        save_checkpoint(self.last, ckpt, before_replace=lambda: hook("last-tmp", tr.epoch))
        hook("after-last", tr.epoch)
        if tr.best_epoch == tr.epoch:  # the trainer's best (by config.best_metric) is this epoch
            save_checkpoint(ckpt_dir / "best.pt", ckpt, before_replace=lambda: hook("best-tmp", tr.epoch))
            hook("after-best", tr.epoch)
        if config.save_every and tr.epoch % config.save_every == 0:  # kept for checkpoint studies
            save_checkpoint(epoch_checkpoint(ckpt_dir, tr.epoch), ckpt)
        write_metrics(self.out, tr.history)
        if self.view is not None:
            self.view.log_history(tr.history)
        hook("after-metrics", tr.epoch)
        plot_run(self.out, tr.history, config)
        hook("after-plot", tr.epoch)

    def _finish(self) -> None:
        """``final.pt`` (and ``best.pt`` when no epoch was validated), replicas checked under DDP."""
        trainer, dist = self.trainer, self.dist
        if dist.world_size > 1:
            replicas_in_sync(trainer.student_module)
        if dist.is_main:
            final = run_checkpoint(trainer, self.config, self.desc, trainer.history[-1])
            save_checkpoint(self.ckpt_dir / "final.pt", final,
                            before_replace=lambda: self.hook("final-tmp", trainer.epoch))
            self.hook("after-final", trainer.epoch)
            if not (self.ckpt_dir / "best.pt").exists():
                save_checkpoint(self.ckpt_dir / "best.pt", final)
        leave_together(dist.world_size)

"""The epoch loop of the ADR trainers, an object the trainer holds: batches, progress, divergence checks,
validation, history and the best epoch.

:class:`EpochLoop` reaches its trainer only through :class:`LoopHost` (the members it declares); the τ/λ plan is a
:class:`art_adr.rectification.RectificationSchedule`, the validation a :class:`art_adr.validator.Validator`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .checkpoint import non_finite_tensors
from .distributed import all_reduce_max, all_reduce_sum, sync_buffers
from .ema import EMATeacher
from .rectification import RectificationSchedule
from .snapshot import HostStateCopies
from .validation import metric_name, selective_plan, validation_at
from .validator import Validator

__all__ = ["BestEpoch", "Callback", "EpochLoop", "LoopHost", "TrainingDivergedError", "format_record"]

logger = logging.getLogger(__name__)

Callback = Callable[[Any, dict[str, Any]], None]


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite (``.reason``: what happened, without the restore note)."""

    reason: str | None = None


class LoopHost(Protocol):
    """What the loop uses of its trainer."""

    device: torch.device
    rank: int
    world_size: int
    verbose: bool
    step: int
    optimizer: torch.optim.Optimizer
    teacher: EMATeacher

    @property
    def student_module(self) -> nn.Module: ...

    def train_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], scheduler: Any = None) -> None: ...


@dataclass
class BestEpoch:
    """One notion of "best": the epoch with the highest ``metric`` (a history key; the first wins ties)."""

    metric: str
    epoch: int | None = None
    value: float = -1.0

    def consider(self, record: dict[str, Any]) -> None:
        value = record.get(self.metric)
        if value is not None and value > self.value:
            self.value, self.epoch = float(value), int(record["epoch"])

    def restore(self, state: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """A checkpoint's best epoch; re-selected from ``history`` when it was chosen by another metric."""
        same_metric = state.get("best_metric", "pgd_acc") == self.metric
        self.epoch = state.get("best_epoch")
        self.value = float(state.get("best_value", state.get("best_robust_acc", -1.0))) if same_metric else -1.0
        if not same_metric:
            self.epoch = None
            for record in history:
                self.consider(record)


class EpochLoop:
    """Epochs over device batches with the τ/λ plan, validation every ``eval_every`` epochs, the history and the
    best epoch ("best" is :class:`BestEpoch` over ``best.metric``: ``record["best_epoch"]``, the trainer's
    ``best_epoch``/``best_value`` and ``art-adr train``'s ``best.pt`` all use it)."""

    def __init__(self, host: LoopHost, schedule: RectificationSchedule, validator: Validator, best: BestEpoch, *,
                 adr: bool, eval_every: int, log_every: int, scheduler_interval: str, val_full_every: int = 1) -> None:
        self.host, self.schedule, self.validator, self.best = host, schedule, validator, best
        self.adr, self.eval_every, self.log_every = adr, eval_every, log_every
        self.val_full_every = val_full_every  # every k-th validation (and a call's last) measures everything
        self.scheduler_interval = scheduler_interval
        self.scheduler: Any = None
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.host_copies = HostStateCopies()  # the last finite state (buffers reused across epochs and calls)
        # fn(trainer) called as each validation starts (after the epoch's training; art-adr train's kill hook)
        self.before_validation: list[Callable[[Any], None]] = []

    def values(self) -> tuple[float, float]:
        """``(τ, λ)`` at the host's current iteration."""
        return self.schedule.values(self.host.step)

    def fit_batches(self, epoch_batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]], steps_per_epoch: int,
                    nb_epochs: int, val: tuple[Tensor, Tensor] | None, scheduler: Any,
                    callbacks: Iterable[Callback]) -> list[dict[str, Any]]:
        """Train ``nb_epochs`` more epochs; ``epoch_batches(epoch)`` yields device batches ``(x in [0,1], y)``;
        ``val`` is the hold-out on the device.

        On :class:`TrainingDivergedError` the host's state (weights, teacher, optimizer, scheduler, scaler,
        counters, RNG) is first restored to the start of the last epoch whose weights were finite (a host copy
        taken at every epoch start, asynchronously into reused pinned buffers on CUDA), so the caller can lower
        the learning rate and call ``fit`` again.
        """
        self.host_copies.clear()
        try:
            return self._fit_epochs(epoch_batches, steps_per_epoch, nb_epochs, val, scheduler, list(callbacks))
        except TrainingDivergedError as exc:
            error = TrainingDivergedError(f"{exc}. {self.restore_last_finite()}")
            error.reason = str(exc)  # without the API's restore note (art-adr train words its own)
            raise error from None
        finally:
            self.host_copies.clear()

    def snapshot_if_finite(self) -> None:
        """Copy the host's state to the host memory; it is the one a divergence restores when the student's and
        teacher's tensors are all finite (checked on the device: no host synchronisation but the previous
        epoch's flag, and no synchronous device-to-host copy)."""
        state = self.host.state_dict()
        state["rng"]["attack_rank"] = self.host.rank  # this rank's own generator state (no rank-0 fallback)
        tensors = [t for part in ("student", "teacher") for t in state[part].values()
                   if isinstance(t, Tensor) and t.is_floating_point()]
        self.host_copies.take(state, tensors)

    def restore_last_finite(self) -> str:
        """Load the last finite snapshot into the host; say what was done."""
        state = self.host_copies.latest()
        if state is None:
            return ("The model was NOT restored (no finite state was seen in this call); rebuild the classifier "
                    "or load_state_dict() a checkpoint before training again")
        self.host.load_state_dict(state)
        return (f"The model, teacher, optimizer, scheduler and RNG states were restored to the start of epoch "
                f"{int(state['epoch']) + 1} (iteration {int(state['step'])}); lower the learning rate (or "
                f"avoid fp16) and call fit() again with the epochs that remain to continue from there (on the same "
                f"τ/λ schedule)")

    def _fit_epochs(self, epoch_batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]], steps_per_epoch: int,
                    nb_epochs: int, val: tuple[Tensor, Tensor] | None, scheduler: Any,
                    callbacks: list[Callback]) -> list[dict[str, Any]]:
        end_epoch = self._start_fit(steps_per_epoch, nb_epochs, val, scheduler)
        show = self.host.verbose and self.host.rank == 0
        while self.epoch < end_epoch:
            self.snapshot_if_finite()
            t0 = time.perf_counter()
            temperature0, interpolation0 = self.values()
            lr = float(self.host.optimizer.param_groups[0]["lr"])  # the rate this epoch starts with
            loss_sum, correct, seen = self._train_epoch(epoch_batches(self.epoch), steps_per_epoch, end_epoch, show)
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
            self.epoch += 1
            record: dict[str, Any] = {
                "epoch": self.epoch, "step": self.host.step, "loss": float(loss_sum.item()) / max(seen, 1),
                "train_robust_acc": float(correct.item()) / max(seen, 1), "lr": lr,
            }
            if self.adr:  # τ, λ where the epoch ends (what the bar showed last; the last epoch's is the end value)
                temperature1, interpolation1 = self.values()  # (the history's keys are metrics.jsonl's columns)
                record.update({"tau": temperature1, "lambda": interpolation1, "tau_start": temperature0,
                               "lambda_start": interpolation0})
            record["train_seconds"] = time.perf_counter() - t0
            record["images_per_s"] = seen / record["train_seconds"]
            kind = validation_at(self.epoch, end_epoch, self.eval_every, self.val_full_every)
            if val is not None and kind is not None:
                self._validate_epoch(val, record, kind == "full")
            record["seconds"] = time.perf_counter() - t0
            self.history.append(record)
            if show:  # a message: through logging (the CLI prints it with tqdm.write, above the bars)
                logger.info(format_record(record, end_epoch))
            for cb in callbacks:
                cb(self.host, record)
        return self.history

    def _start_fit(self, steps_per_epoch: int, nb_epochs: int, val: Any, scheduler: Any) -> int:
        """Check and install ``scheduler``, plan this call's iterations; the end epoch."""
        if scheduler is not None and not callable(getattr(scheduler, "step", None)):
            raise ValueError("scheduler must have a .step() method")
        self.scheduler = scheduler if scheduler is not None else self.scheduler
        self.schedule.begin_call(self.host.step, nb_epochs * steps_per_epoch)
        if val is None and self.schedule.auto.active:
            raise ValueError("temperature='auto' / interpolation='auto' need validation_data: they are set from "
                             "the hold-out at every validation")
        return self.epoch + nb_epochs

    def _train_epoch(self, batches: Iterable[tuple[Tensor, Tensor]], steps_per_epoch: int, end_epoch: int,
                     show: bool) -> tuple[Tensor, Tensor, int]:
        """One epoch of training steps (progress bar, divergence checks, DDP-summed statistics, synced buffers):
        the summed loss, the adversarially correct count and the images seen."""
        from tqdm.auto import tqdm

        host, epoch = self.host, self.epoch
        loss_sum = torch.zeros((), device=host.device)
        correct = torch.zeros((), device=host.device, dtype=torch.long)
        seen = 0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{end_epoch}", disable=not show, leave=False)
        for i, (xb, yb) in enumerate(batches):
            loss, corr = host.train_step(xb, yb)
            loss_sum += loss.float() * yb.shape[0]
            correct += corr
            seen += yb.shape[0]
            if (i + 1) % self.log_every == 0 or i + 1 == steps_per_epoch:
                self.check_finite(loss_sum, epoch, i)
                if show:
                    temperature, interpolation = self.values()
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", adv_acc=f"{correct.item() / seen:.3f}",
                                    **({"tau": f"{temperature:.3f}", "lam": f"{interpolation:.3f}"} if self.adr
                                       else {}))
            bar.update(1)
        bar.close()
        self.check_finite(loss_sum, epoch, steps_per_epoch)
        self._check_finite_weights(epoch)
        if host.world_size > 1:
            stats = all_reduce_sum(
                torch.stack([loss_sum, correct.float(), torch.tensor(float(seen), device=host.device)]),
                host.world_size)
            loss_sum, correct, seen = stats[0], stats[1], int(stats[2].item())
        sync_buffers(host.student_module, host.teacher.module, host.world_size)
        return loss_sum, correct, seen

    def _validate_epoch(self, val: tuple[Tensor, Tensor], record: dict[str, Any], full: bool = True) -> None:
        """Validate into ``record`` (a progress bar on rank 0 when verbose) — student and teacher, or, when not
        ``full``, what selects (:func:`art_adr.validation.selective_plan`) — update the best epoch and the
        automatic τ/λ."""
        for hook in self.before_validation:
            hook(self.host)
        bar = f"validation {record['epoch']}" if self.host.verbose and self.host.rank == 0 else None
        auto = self.schedule.auto
        auto_active = self.adr and auto.active
        plan = None if full or not self.validator.robust else selective_plan(self.best.metric,
                                                                             self.validator.attack.name, auto_active)
        record.update(self.validator.evaluate(val[0], val[1], None, self.validator.robust, progress=bar, plan=plan))
        self.best.consider(record)
        record["best_epoch"] = self.best.epoch
        if auto_active:  # every rank on the whole hold-out, so all ranks agree
            logits = self.validator.teacher_adversarial_logits(*val) if auto.auto_temperature else None
            auto.update(logits, val[1], record[metric_name(self.validator.attack.name, "teacher")])

    def check_finite(self, loss_sum: Tensor, epoch: int, iteration: int) -> None:
        """``TrainingDivergedError`` when the loss sum is NaN/inf — on every DDP rank at once (the flag is
        all-reduced), so one rank's divergence never leaves the others waiting in a collective."""
        world_size = self.host.world_size
        bad = all_reduce_max((~torch.isfinite(loss_sum.detach())).float().reshape(1), world_size)
        if bool(bad.item()):
            where = f" on at least one of {world_size} processes" if world_size > 1 else ""
            raise TrainingDivergedError(
                f"training loss became non-finite{where} in epoch {epoch + 1} "
                f"(by iteration {iteration + 1}); lower the learning rate, check the data, or avoid fp16"
            )

    def _check_finite_weights(self, epoch: int) -> None:
        """``TrainingDivergedError`` when a parameter or buffer of the student or teacher is NaN/inf at the end
        of an epoch (a finite loss can leave ``inf`` in BatchNorm's ``running_var``): such a state is never
        validated, recorded or checkpointed (all ranks agree, as in :meth:`check_finite`)."""
        host = self.host
        bad_names = non_finite_tensors(host.student_module.state_dict()) + [
            "teacher." + n for n in non_finite_tensors(host.teacher.module.state_dict())]
        flag = torch.tensor([float(bool(bad_names))], device=host.device)
        if bool(all_reduce_max(flag, host.world_size).item()):
            where = ", ".join(bad_names[:3]) + (" ..." if len(bad_names) > 3 else "") if bad_names else \
                f"on another of {host.world_size} processes"
            raise TrainingDivergedError(
                f"weights became non-finite in epoch {epoch + 1} ({where}) although the loss stayed finite; "
                f"lower the learning rate, check the data, or avoid fp16")

    def state(self) -> dict[str, Any]:
        """The loop's part of a checkpoint: ``epoch``, ``plan``, the best epoch, ``history``, ``auto``."""
        return {"epoch": self.epoch, "plan": list(self.schedule.plan), "best_metric": self.best.metric,
                "best_epoch": self.best.epoch, "best_value": self.best.value, "history": list(self.history),
                "auto": self.schedule.auto.state_dict() if self.schedule.auto.active else None}

    def restore(self, state: dict[str, Any], step: int) -> None:
        """The loop's part of a checkpoint (``step``: the host's restored iteration)."""
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history", []))
        self.schedule.restore(state.get("plan"), state.get("auto"), step)
        self.best.restore(state, self.history)


def format_record(r: dict[str, Any], nb_epochs: int) -> str:
    """An epoch's summary line (the history record ``r`` of ``nb_epochs``): what its validation measured."""
    s = f"epoch {r['epoch']}/{nb_epochs} loss {r['loss']:.4f} adv_acc {r['train_robust_acc']:.3f} "
    if "tau" in r:
        s += f"tau {r['tau']:.3f} lambda {r['lambda']:.3f} "
    s += f"lr {r['lr']:.4g} {r['seconds']:.1f}s"
    for who, prefix in (("val", ""), ("teacher", "teacher_")):
        kinds = [k[len(prefix) : -len("_acc")] for k in r if k.endswith("_acc") and k.startswith(prefix)
                 and not k.startswith("train_") and (prefix or not k.startswith("teacher_"))]
        if kinds:
            s += f" | {who} " + " ".join(f"{k} {r[prefix + k + '_acc']:.3f}" for k in kinds)
    return s

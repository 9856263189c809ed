"""The epoch loop of the ADR trainers: batches, progress, divergence checks, validation, history, the best
epoch and the checkpoint state (weights, teacher, optimizer, scheduler, scaler, counters, RNG).

:class:`EpochLoop` is a mixin: the trainer provides ``train_step(x, y) -> (loss, #correct)``,
``_evaluate_tensors(x, y, batch_size, adversarial) -> dict`` and the attributes set in its ``__init__``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from .checkpoint import non_finite_tensors, non_finite_weights
from .checks import integer
from .distributed import all_reduce_max, all_reduce_sum, sync_buffers
from .functional import cosine_schedule
from .snapshot import HostStateCopies


def _check_state(state: dict[str, Any]) -> None:
    """``ValueError`` for a state no trainer could have saved: non-finite student/teacher weights, a negative
    or non-integer ``step``/``epoch``."""
    bad = non_finite_weights(state)
    if bad:
        raise ValueError(f"state holds non-finite weights (NaN/inf in {', '.join(bad[:3])}"
                         f"{' ...' if len(bad) > 3 else ''}); nothing was changed")
    for key in ("step", "epoch"):
        integer(state[key], f"state[{key!r}]", 0)


def _cpu_copy(obj: Any) -> Any:
    """A deep copy of a state dict with every tensor cloned to the CPU (``load_state_dict``'s undo copy)."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj

__all__ = ["Callback", "EpochLoop", "TrainingDivergedError"]

logger = logging.getLogger(__name__)

Callback = Callable[[Any, dict[str, Any]], None]


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite (``.reason``: what happened, without the restore note)."""

    reason: str | None = None


class EpochLoop:
    """Epochs over device batches, with the τ/λ plan, validation, history and one notion of "best".

    The τ/λ cosine *plan* spans the iterations of one :meth:`fit_batches` call (ART semantics: each ``fit`` call
    trains ``nb_epochs`` more epochs and anneals over them), unless :meth:`load_state_dict` restored a plan that
    is not finished: then the call continues that plan, so a resumed run anneals exactly as the uninterrupted one
    (``art-adr train`` sets the plan to the whole run explicitly with :meth:`set_plan`).

    "Best" is the epoch with the highest ``best_metric`` (a history key; default the validation attack's accuracy
    of the student, e.g. ``"apgd_acc"``; ``"teacher_…"`` selects by the EMA teacher, the +WA model);
    ``record["best_epoch"]``, ``best_epoch``/``best_value`` and ``art-adr train``'s ``best.pt`` all use it.
    """

    # set by the trainer's __init__
    device: torch.device
    rank: int
    world_size: int
    verbose: bool
    log_every: int
    eval_every: int
    adr: bool
    best_metric: str
    auto: Any  # art_adr.auto_schedule.AutoRectification
    scheduler: Any
    scheduler_interval: str

    def _init_loop(self) -> None:
        self.step = 0
        self.epoch = 0
        self.plan: tuple[int, int] = (0, 0)  # (first iteration, iterations) of the τ/λ cosine schedules
        self._plan_pinned = False
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_value = -1.0
        self._host_copies = HostStateCopies()  # the last finite state (buffers reused across epochs and calls)
        # fn(trainer) called as each validation starts (after the epoch's training; art-adr train's kill hook)
        self.before_validation: list[Callable[[Any], None]] = []

    # ------------------------------------------------------------------ the τ/λ plan
    def set_plan(self, first_step: int, total_steps: int) -> None:
        """Anneal τ/λ from iteration ``first_step`` over ``total_steps`` iterations; the next fit call keeps this
        plan (``art-adr train`` pins the whole run's plan this way, whatever epoch it resumes at)."""
        self.plan = (int(first_step), int(total_steps))
        self._plan_pinned = True

    def schedule(self, step: int | None = None) -> tuple[float, float]:
        """``(τ, λ)`` at iteration ``step`` (default: the current one) of the plan's cosine schedules."""
        step = self.step if step is None else step
        first, total = self.plan
        done = min(max(step - first, 0), max(total, 1))
        temperature = cosine_schedule(self.temperature[0], self.temperature[1], done, max(total, 1))
        interpolation = cosine_schedule(self.interpolation[0], self.interpolation[1], done, max(total, 1))
        auto = getattr(self, "auto", None)
        if auto is not None:  # "auto" τ/λ: the values the last validation set (art_adr.auto_schedule)
            temperature = auto.temperature if auto.auto_temperature else temperature
            interpolation = auto.interpolation if auto.auto_interpolation else interpolation
        return temperature, interpolation

    # ------------------------------------------------------------------ the loop
    def fit_batches(
        self,
        epoch_batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]],
        steps_per_epoch: int,
        nb_epochs: int,
        validation_data: Any,
        scheduler: Any,
        callbacks: Iterable[Callback],
    ) -> list[dict[str, Any]]:
        """Train ``nb_epochs`` more epochs; ``epoch_batches(epoch)`` yields device batches ``(x in [0,1], y)``.

        On :class:`TrainingDivergedError` the student, teacher, optimizer, scheduler, scaler, counters and RNG
        states are first restored to the start of the last epoch whose weights were finite (a host copy taken at
        every epoch start, asynchronously into reused pinned buffers on CUDA), so the caller can lower the
        learning rate and call ``fit`` again.
        """
        self._host_copies.clear()
        try:
            return self._fit_epochs(epoch_batches, steps_per_epoch, nb_epochs, validation_data, scheduler,
                                    callbacks)
        except TrainingDivergedError as exc:
            error = TrainingDivergedError(f"{exc}. {self._restore_last_finite()}")
            error.reason = str(exc)  # without the API's restore note (art-adr train words its own)
            raise error from None
        finally:
            self._host_copies.clear()

    def _snapshot_if_finite(self) -> None:
        """Copy the training state to the host; it is the one a divergence restores when the student's and
        teacher's tensors are all finite (checked on the device: no host synchronisation but the previous
        epoch's flag, and no synchronous device-to-host copy)."""
        state = self.state_dict()
        state["rng"]["attack_rank"] = self.rank  # this rank's own generator state (no rank-0 fallback)
        tensors = [t for part in ("student", "teacher") for t in state[part].values()
                   if isinstance(t, Tensor) and t.is_floating_point()]
        self._host_copies.take(state, tensors)

    def _restore_last_finite(self) -> str:
        """Load the last finite snapshot into the live model/teacher/optimizer; say what was done."""
        state = self._host_copies.latest()
        if state is None:
            return ("The model was NOT restored (no finite state was seen in this call); rebuild the classifier "
                    "or load_state_dict() a checkpoint before training again")
        self.load_state_dict(state)
        return (f"The model, teacher, optimizer, scheduler and RNG states were restored to the start of epoch "
                f"{int(state['epoch']) + 1} (iteration {int(state['step'])}); lower the learning rate (or "
                f"avoid fp16) and call fit() again with the epochs that remain to continue from there (on the same "
                f"τ/λ schedule)")

    def _fit_epochs(
        self,
        epoch_batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]],
        steps_per_epoch: int,
        nb_epochs: int,
        validation_data: Any,
        scheduler: Any,
        callbacks: Iterable[Callback],
    ) -> list[dict[str, Any]]:

        end_epoch, val = self._start_fit(steps_per_epoch, nb_epochs, validation_data, scheduler)
        callbacks = list(callbacks)
        show = self.verbose and self.rank == 0
        while self.epoch < end_epoch:
            self._snapshot_if_finite()
            t0 = time.perf_counter()
            temperature0, interpolation0 = self.schedule()
            lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this epoch starts with
            loss_sum, correct, seen = self._train_epoch(epoch_batches(self.epoch), steps_per_epoch, end_epoch, show)
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
            self.epoch += 1
            record: dict[str, Any] = {
                "epoch": self.epoch, "step": self.step, "loss": float(loss_sum.item()) / max(seen, 1),
                "train_robust_acc": float(correct.item()) / max(seen, 1), "lr": lr,
            }
            if self.adr:  # τ, λ where the epoch ends (what the bar showed last; the last epoch's is the end value)
                temperature1, interpolation1 = self.schedule()  # (the history's keys are metrics.jsonl's columns)
                record.update({"tau": temperature1, "lambda": interpolation1, "tau_start": temperature0,
                               "lambda_start": interpolation0})
            record["train_seconds"] = time.perf_counter() - t0
            record["images_per_s"] = seen / record["train_seconds"]
            if val is not None and (self.epoch % self.eval_every == 0 or self.epoch == end_epoch):
                self._validate_epoch(val, record)
            record["seconds"] = time.perf_counter() - t0
            self.history.append(record)
            if show:  # a message: through logging (the CLI prints it with tqdm.write, above the bars)
                logger.info(self._format_record(record, end_epoch))
            for cb in callbacks:
                cb(self, record)
        return self.history

    def _start_fit(self, steps_per_epoch: int, nb_epochs: int, validation_data: Any,
                   scheduler: Any) -> tuple[int, Any]:
        """Check and install ``scheduler``, plan this call's iterations; the end epoch and the device hold-out."""
        if scheduler is not None and not callable(getattr(scheduler, "step", None)):
            raise ValueError("scheduler must have a .step() method")
        self.scheduler = scheduler if scheduler is not None else self.scheduler
        if not self._plan_pinned:  # a new plan over this call's iterations
            self.plan = (self.step, nb_epochs * steps_per_epoch)
        self._plan_pinned = False
        if validation_data is None and getattr(self, "auto", None) is not None and self.auto.active:
            raise ValueError("temperature='auto' / interpolation='auto' need validation_data: they are set from "
                             "the hold-out at every validation")
        val = self._device_data(*validation_data, name="validation x") if validation_data is not None else None
        return self.epoch + nb_epochs, val

    def _train_epoch(self, batches: Iterable[tuple[Tensor, Tensor]], steps_per_epoch: int, end_epoch: int,
                     show: bool) -> tuple[Tensor, Tensor, int]:
        """One epoch of training steps (progress bar, divergence checks, DDP-summed statistics, synced buffers):
        the summed loss, the adversarially correct count and the images seen."""
        from tqdm.auto import tqdm

        epoch = self.epoch
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{end_epoch}", disable=not show, leave=False)
        for i, (xb, yb) in enumerate(batches):
            loss, corr = self.train_step(xb, yb)
            loss_sum += loss.float() * yb.shape[0]
            correct += corr
            seen += yb.shape[0]
            if (i + 1) % self.log_every == 0 or i + 1 == steps_per_epoch:
                self._check_finite(loss_sum, epoch, i)
                if show:
                    temperature, interpolation = self.schedule()
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", adv_acc=f"{correct.item() / seen:.3f}",
                                    **({"tau": f"{temperature:.3f}", "lam": f"{interpolation:.3f}"} if self.adr
                                       else {}))
            bar.update(1)
        bar.close()
        self._check_finite(loss_sum, epoch, steps_per_epoch)
        self._check_finite_weights(epoch)
        if self.world_size > 1:
            stats = all_reduce_sum(
                torch.stack([loss_sum, correct.float(), torch.tensor(float(seen), device=self.device)]),
                self.world_size)
            loss_sum, correct, seen = stats[0], stats[1], int(stats[2].item())
        sync_buffers(self._raw, self.teacher.module, self.world_size)
        return loss_sum, correct, seen

    def _validate_epoch(self, val: Any, record: dict[str, Any]) -> None:
        """Validate student and teacher into ``record`` (a progress bar on rank 0 when verbose), update the best
        epoch and the automatic τ/λ."""
        for hook in self.before_validation:
            hook(self)
        self._validation_bar = f"validation {record['epoch']}" if self.verbose and self.rank == 0 else None
        robust = getattr(self, "validation", "robust") != "clean"
        try:
            record.update(self._evaluate_tensors(val[0], val[1], None, robust))
        finally:
            self._validation_bar = None
        self._consider_best(record)
        record["best_epoch"] = self.best_epoch
        if self.adr and self.auto.active:
            self._update_auto(val, record)

    def _validation_batches(self, starts: range) -> Iterable[int]:
        """The batch starts of a validation, through a tqdm bar (stderr, closed when done) while
        :meth:`_validate_epoch` asks for one; unchanged otherwise (``evaluate()``, other ranks, not verbose)."""
        desc = getattr(self, "_validation_bar", None)
        if not desc:
            return starts
        from tqdm.auto import tqdm

        return tqdm(starts, desc=desc, unit="batch", leave=False, dynamic_ncols=True)

    def _consider_best(self, record: dict[str, Any]) -> None:
        """Make ``record``'s epoch the best one when its ``best_metric`` beats ``best_value`` (first wins ties)."""
        value = record.get(self.best_metric)
        if value is not None and value > self.best_value:
            self.best_value, self.best_epoch = float(value), int(record["epoch"])

    def _check_finite(self, loss_sum: Tensor, epoch: int, iteration: int) -> None:
        """``TrainingDivergedError`` when the loss sum is NaN/inf — on every DDP rank at once (the flag is
        all-reduced), so one rank's divergence never leaves the others waiting in a collective."""
        bad = all_reduce_max((~torch.isfinite(loss_sum.detach())).float().reshape(1), self.world_size)
        if bool(bad.item()):
            where = f" on at least one of {self.world_size} processes" if self.world_size > 1 else ""
            raise TrainingDivergedError(
                f"training loss became non-finite{where} in epoch {epoch + 1} "
                f"(by iteration {iteration + 1}); lower the learning rate, check the data, or avoid fp16"
            )

    def _check_finite_weights(self, epoch: int) -> None:
        """``TrainingDivergedError`` when a parameter or buffer of the student or teacher is NaN/inf at the end
        of an epoch (a finite loss can leave ``inf`` in BatchNorm's ``running_var``): such a state is never
        validated, recorded or checkpointed (all ranks agree, as in :meth:`_check_finite`)."""
        bad_names = non_finite_tensors(self._raw.state_dict()) + [
            "teacher." + n for n in non_finite_tensors(self.teacher.module.state_dict())]
        flag = torch.tensor([float(bool(bad_names))], device=self.device)
        if bool(all_reduce_max(flag, self.world_size).item()):
            where = ", ".join(bad_names[:3]) + (" ..." if len(bad_names) > 3 else "") if bad_names else \
                f"on another of {self.world_size} processes"
            raise TrainingDivergedError(
                f"weights became non-finite in epoch {epoch + 1} ({where}) although the loss stayed finite; "
                f"lower the learning rate, check the data, or avoid fp16")

    @staticmethod
    def _format_record(r: dict[str, Any], nb_epochs: int) -> str:
        s = f"epoch {r['epoch']}/{nb_epochs} loss {r['loss']:.4f} adv_acc {r['train_robust_acc']:.3f} "
        if "tau" in r:
            s += f"tau {r['tau']:.3f} lambda {r['lambda']:.3f} "
        s += f"lr {r['lr']:.4g} {r['seconds']:.1f}s"
        if "clean_acc" in r and "pgd_acc" not in r:  # validation="clean"
            s += f" | val clean {r['clean_acc']:.3f} | teacher clean {r['teacher_clean_acc']:.3f}"
        if "pgd_acc" in r:
            extra = [k[: -len("_acc")] for k in r if k.endswith("_acc") and not k.startswith(("teacher_", "train_"))
                     and k not in ("clean_acc", "pgd_acc")]
            for who, prefix in (("val", ""), ("teacher", "teacher_")):
                s += f" | {who} clean {r[prefix + 'clean_acc']:.3f} pgd {r[prefix + 'pgd_acc']:.3f}"
                s += "".join(f" {k} {r[prefix + k + '_acc']:.3f}" for k in extra if prefix + k + "_acc" in r)
        return s

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed for an exact resume: weights, teacher, optimizer, scheduler, step, RNG states."""
        return {
            "student": self._raw.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if hasattr(self.scheduler, "state_dict") else None,
            "scaler": self.precision.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "plan": list(self.plan),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "history": list(self.history),
            "auto": self.auto.state_dict() if self.auto.active else None,
            "rng": {  # CPU ByteTensors; "cuda" is indexed by device (empty for a CPU trainer)
                "attack": self.generator.get_state(),
                "attack_device": self.generator.device.type,
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            },
        }

    STATE_KEYS = ("student", "teacher", "optimizer", "step", "epoch")

    def load_state_dict(self, state: dict[str, Any], scheduler: Any = None) -> None:
        """Restore a :meth:`state_dict` (pass the run's scheduler to restore its state too); all or nothing: a
        state that is not a mapping, lacks a part, or does not fit raises ``ValueError`` and leaves the trainer
        exactly as it was."""
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        missing = [k for k in self.STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"state lacks {missing}: pass a dict from state_dict() (or an art-adr checkpoint)")
        _check_state(state)
        saved = _cpu_copy(self.state_dict())
        saved_scheduler = self.scheduler
        try:
            self._load_state(state, scheduler)
        except Exception as exc:
            self.scheduler = saved_scheduler
            self._load_state(saved, None)
            if isinstance(exc, ValueError):
                raise
            text = " ".join(str(exc).split())[:300]
            raise ValueError(f"state does not fit this trainer ({type(exc).__name__}: {text}); nothing was "
                             f"changed") from None

    def _load_state(self, state: dict[str, Any], scheduler: Any) -> None:
        self._raw.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            self.scheduler = scheduler
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state.get("scaler") or {})
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        if state.get("plan") is not None:  # an unfinished plan is continued by the next fit call
            first, total = (int(v) for v in state["plan"])
            self.plan = (first, total)
            self._plan_pinned = self.step < first + total
        self.best_epoch = state.get("best_epoch")
        same_metric = state.get("best_metric", "pgd_acc") == self.best_metric
        self.best_value = float(state.get("best_value", state.get("best_robust_acc", -1.0))) if same_metric else -1.0
        self.history = list(state.get("history", []))
        self.auto.load_state_dict(state.get("auto"))
        if not same_metric:  # re-select the best epoch by this trainer's metric from the saved history
            self.best_epoch = None
            for r in self.history:
                self._consider_best(r)
        self._load_rng(state.get("rng") or {})

    def _load_rng(self, rng: dict[str, Any]) -> None:
        # RNG states are CPU ByteTensors whatever map_location the checkpoint was loaded with. A state restores
        # only into a generator of the device type it came from (a CPU Mersenne-Twister state and a CUDA Philox
        # state are different things) and only this device's CUDA state; otherwise (a run saved on CPU and
        # resumed on a GPU, or on fewer GPUs) the run continues, re-seeded, with a warning.
        notes = []
        if rng.get("attack") is not None:
            attack = rng["attack"]
            ranks = list(rng.get("attack_ranks") or [])  # every DDP rank's state (art-adr train adds them)
            saved = max(len(ranks), 1)
            if rng.get("attack_rank") == self.rank:  # a state this rank took itself (the last-finite restore)
                pass
            elif self.world_size > 1 and len(ranks) == self.world_size:
                attack = ranks[self.rank]
            elif saved != self.world_size:  # resumed by another number of processes (e.g. on fewer GPUs)
                if self.rank < len(ranks):
                    attack = ranks[self.rank]
                notes.append(f"attack generator states were saved for {saved} process(es), this run has "
                             f"{self.world_size}" + (f" (rank {self.rank} continues from rank 0's)"
                                                     if self.rank >= saved else ""))
            attack = torch.as_tensor(attack).detach().to("cpu", torch.uint8)
            kind = rng.get("attack_device") or (
                "cpu" if attack.numel() == torch.Generator().get_state().numel() else "cuda")
            if kind == self.generator.device.type:
                self.generator.set_state(attack)
            else:
                self.generator.manual_seed(self.seed + self.step)
                notes.append(f"the attack generator state was saved on {kind}, this run's generator is on "
                             f"{self.generator.device.type} (re-seeded with seed + step)")
        if rng.get("torch") is not None:
            torch.set_rng_state(torch.as_tensor(rng["torch"]).detach().to("cpu", torch.uint8))
        if self.device.type == "cuda":
            cuda_states = list(rng.get("cuda") or [])
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            if index < len(cuda_states):
                torch.cuda.set_rng_state(torch.as_tensor(cuda_states[index]).detach().to("cpu", torch.uint8),
                                         index)
            else:
                notes.append(f"no CUDA RNG state was saved for cuda:{index} (saved for {len(cuda_states)} GPUs)")
        if notes:
            warnings.warn("resuming on another device: " + "; ".join(notes) + ". Training continues, but not "
                          "bit-for-bit as an uninterrupted run would have.", RuntimeWarning, stacklevel=3)

"""How a run stops: SIGTERM (after the running step, ranks agreeing at the epoch's end), ``stop_after_epochs``, and
the kill hook of the recovery tests (``ART_ADR_KILL_AT``)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import torch

from .files import RunError, resume_hint

__all__ = ["RunStopped", "RunInterrupted", "KILL_ENV", "KILL_POINTS", "KillHook", "StopOnSigterm"]


class RunStopped(Exception):
    """Raised internally to stop a run cleanly after ``stop_after_epochs`` epochs of this invocation."""


class RunInterrupted(Exception):
    """The run stopped on SIGTERM (after the running step, or after the epoch's checkpoint when the signal came
    during validation or checkpointing); ``checkpoints/last.pt`` holds the last finished epoch and ``--resume``
    continues bit-for-bit (the unfinished epoch is trained again). ``.out``: the run directory."""

    def __init__(self, out: Path, signum: int = signal.SIGTERM) -> None:
        self.out, self.signum = Path(out), int(signum)
        super().__init__(f"stopped by {signal.Signals(signum).name}; {resume_hint(out)}")


KILL_ENV = "ART_ADR_KILL_AT"


KILL_POINTS = ("locked", "config", "step", "validation", "epoch-end", "last-tmp", "after-last", "best-tmp",
               "after-best", "after-metrics", "after-plot", "final-tmp", "after-final")


class KillHook:
    """TEST HOOK for the kill harness (tests/test_recovery.py); never set it for real runs.

    ``ART_ADR_KILL_AT=<point>[:<epoch>[:<SIGNAL>]]`` makes the process send itself ``SIGNAL`` (``KILL`` by
    default; ``TERM``, ``INT`` ...) once, when the run reaches ``point`` (one of ``KILL_POINTS``, in run order:
    lock taken, config.yaml written, after an epoch's first step, start of validation, epoch end before any file,
    last.pt written to its temp file, after last.pt, best.pt temp file, after best.pt, after metrics, after the
    plot, final.pt temp file, after final.pt) in epoch ``epoch`` (any epoch when left out)."""

    def __init__(self) -> None:
        parts = os.environ.get(KILL_ENV, "").split(":")
        self.point = parts[0]
        if self.point and self.point not in KILL_POINTS:
            raise RunError(f"{KILL_ENV}: unknown point {self.point!r} (one of {', '.join(KILL_POINTS)})")
        self.epoch = int(parts[1]) if len(parts) > 1 and parts[1] else None
        self.signum = getattr(signal, "SIG" + parts[2]) if len(parts) > 2 else signal.SIGKILL

    def __call__(self, point: str, epoch: int) -> None:
        if point == self.point and (self.epoch is None or epoch == self.epoch):
            self.point = ""  # once
            os.kill(os.getpid(), self.signum)


class StopOnSigterm:
    """SIGTERM (SLURM, Kubernetes) sets a flag: one process stops before its next step; under DDP the ranks
    agree at the epoch's end (one all-reduce per epoch), so no rank is left waiting in a collective."""

    def __init__(self, world_size: int, device: torch.device) -> None:
        self.signum: int | None = None
        self.world_size, self.device = world_size, device
        self._old: Any = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def now(self) -> bool:
        return self.world_size == 1 and self.signum is not None

    def at_epoch_end(self) -> bool:
        if self.world_size == 1:
            return self.signum is not None
        flag = torch.tensor([float(self.signum is not None)], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old if self._old is not None else signal.SIG_DFL)

"""The submitit job of one run: ``art-adr train --out RUN_DIR --resume``, requeued through submitit's checkpointing
protocol (``submitit.helpers.Checkpointable``) when it is preempted or reaches its time limit.

Imported only by :mod:`art_adr.launch` when submitit is asked for (``--launcher slurm``), and by the job itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit

__all__ = ["TrainJob"]


class TrainJob(submitit.helpers.Checkpointable):
    """``art-adr train --out RUN_DIR`` (``--resume`` once the run directory has its ``config.yaml``, which the
    launcher writes before submitting) in a child process, so the job's run directory, lock, checkpoints and resume
    are exactly those of a single run.

    Stopping: SIGTERM (SLURM sends it to the job's processes on preemption; this process forwards it) makes the
    child stop after its running step, ``checkpoints/last.pt`` holding the last finished epoch (exit 143); the job
    then raises submitit's preemption signal on itself, whose handler calls :meth:`checkpoint` and requeues it.
    At the time limit submitit's signal (USR2, ``signal_delay_s`` before it) calls :meth:`checkpoint` directly, which
    stops the child the same way first. Either way the requeued job continues with ``--resume``, bit-for-bit on CPU.
    """

    def __init__(self, run_dir: str | os.PathLike, args: Sequence[str] = (),
                 command: Sequence[str] | None = None) -> None:
        self.run_dir = str(run_dir)
        self.args = list(args)
        self.command = list(command) if command else [sys.executable, "-m", "art_adr.cli", "train"]
        self._proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        """The job's command: ``python -m art_adr.cli train --out RUN_DIR [--resume] [args]`` (``command``
        replaces ``python -m art_adr.cli train``)."""
        cmd = [*self.command, "--out", self.run_dir]
        if (Path(self.run_dir) / "config.yaml").is_file():
            cmd.append("--resume")
        return cmd + self.args

    def _finished(self) -> bool:
        return (Path(self.run_dir) / "checkpoints" / "final.pt").is_file()

    def __call__(self) -> str:
        if self._finished():  # a duplicate, or a requeue after the run ended: nothing to do
            return self.run_dir
        requeue_signal = submitit.JobEnvironment._usr_sig()
        previous = signal.signal(signal.SIGTERM, self._forward)
        try:  # the child ignores submitit's signal (SLURM may send it to every process): this job stops it
            self._proc = subprocess.Popen(self.argv(), preexec_fn=lambda: signal.signal(requeue_signal, signal.SIG_IGN))
            code = self._proc.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
        self._proc = None
        if code == 0 and self._finished():
            return self.run_dir
        if code == 128 + signal.SIGTERM:  # stopped at a checkpoint: submitit's handler checkpoints and requeues
            os.kill(os.getpid(), requeue_signal)
            raise RuntimeError(f"{self.run_dir}: the run stopped on SIGTERM and was not requeued (not a submitit job)")
        raise RuntimeError(f"art-adr train --out {self.run_dir} exited with code {code}; see this job's log")

    def _forward(self, signum: int, frame: Any) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Stop the child at its next step (SIGTERM; it keeps ``last.pt``), then resubmit the run with ``--resume``."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        return submitit.helpers.DelayedSubmission(TrainJob(self.run_dir, self.args, self.command))

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._proc = None

"""Many runs at once: the runs of ``art-adr benchmark`` and ``art-adr sweep`` as ``art-adr train --out RUN_DIR
--resume`` jobs, one run per local GPU (subprocesses with ``CUDA_VISIBLE_DEVICES``), ``jobs`` CPU subprocesses at
a time (the cores shared out between them) or one SLURM job per run through submitit (requeued with ``--resume``
after preemption or its time limit: :mod:`art_adr.submitit_job`).

Every run directory gets its resolved ``config.yaml`` first (under the run's lock), so the job trains exactly the
run the in-process benchmark would, and its directory, lock, checkpoints and resume are a single run's. The parent
follows the run directories: a run is finished when ``checkpoints/final.pt`` exists; a run whose lock another
process holds (a job of an earlier, killed invocation) is waited for, never started twice.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig
from .console import say
from .registry import Registry

if TYPE_CHECKING:
    from .runs import RunLock

__all__ = ["LAUNCHERS", "Launcher", "LaunchError", "LaunchInterrupted", "launch_runs", "prepare_run", "train_args",
           "make_executor", "TRAIN_COMMAND", "parse_gpus", "check_gpus", "gpu_count", "job_threads"]

# how a job runs `art-adr train` (the interpreter of this process; tests may wrap it)
TRAIN_COMMAND = [sys.executable, "-m", "art_adr.cli", "train"]


class LaunchError(ValueError):
    """Launcher options that do not fit together, or a missing package (submitit)."""


# the registry: each launcher's backend ``(launcher, out, args, name) -> backend`` registered at its definition with
# a one-line ``help`` (``--launcher``'s) and, when it needs one, the ``package`` and the ``install`` command that
# brings it; a backend ``adopt``s, ``submit``s, ``poll``s, says whether a job is ``alive``, its ``failure`` and
# ``stop``s. This module imports no torch (the command line's options read the registry).
LAUNCHERS: Registry[Any] = Registry("launcher", error=LaunchError)


class LaunchInterrupted(Exception):
    """The parent got SIGTERM / Ctrl-C while its local jobs ran: they were stopped at their checkpoints."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"stopped by {signal.Signals(signum).name}: every running job stopped at its checkpoint; "
                         f"rerun the same command to go on (finished runs are kept, the others resume)")


@dataclass(frozen=True)
class Launcher:
    """Where the runs of a benchmark or sweep train.

    ``kind="local"`` without ``gpus``: in this process, one after another (the default, today's behaviour); with
    ``gpus`` (device ids for ``CUDA_VISIBLE_DEVICES``): one ``art-adr train`` subprocess per device at a time; with
    ``jobs`` (N ≥ 1): N ``art-adr train`` subprocesses at a time on the CPU (no CUDA device visible), each with
    :func:`job_threads` threads, and the evaluations of a benchmark N at a time too.
    ``kind="slurm"``: one job per run through ``submitit.AutoExecutor(cluster=cluster)`` (``"slurm"``; ``"local"``
    runs the same jobs as local processes, e.g. to try a setup), ``gpus_per_run`` GPUs and ``timeout_min`` minutes
    each (requeued at the limit), at most ``array_parallelism`` at once, ``slurm`` any other submitit/SLURM
    parameter (``cpus_per_task``, ``mem_gb``, ``qos``, ``account``, ``setup``, ``max_num_timeout`` ...).
    ``wait=False`` returns after submitting; ``poll_s``: seconds between looks at the run directories.
    """

    kind: str = "local"
    gpus: tuple[str, ...] = ()
    jobs: int = 0
    cluster: str = "slurm"
    partition: str | None = None
    gpus_per_run: int = 1
    timeout_min: int = 24 * 60
    array_parallelism: int | None = None
    slurm: dict[str, Any] = field(default_factory=dict)
    wait: bool = True
    poll_s: float | None = None

    def validate(self) -> Launcher:
        if self.kind not in LAUNCHERS:
            raise LaunchError(f"launcher must be one of {', '.join(LAUNCHERS.names())}, got {self.kind!r}")
        if self.kind == "slurm" and self.gpus:
            raise LaunchError("--gpus is for --launcher local; SLURM assigns the GPUs of a job (--gpus-per-run)")
        if self.jobs < 0 or (self.jobs and (self.kind == "slurm" or self.gpus)):
            raise LaunchError("--jobs N (N >= 1) is for --launcher local without --gpus: N CPU jobs at a time "
                              "(with --gpus: one job per device; SLURM: --slurm-array-parallelism)")
        if self.kind == "local" and (self.partition or self.slurm or self.array_parallelism is not None):
            raise LaunchError("--slurm-partition, --slurm-array-parallelism and --set-slurm need --launcher slurm")
        if self.kind == "local" and not self.wait:
            raise LaunchError("--no-wait needs --launcher slurm (local jobs are children of this process)")
        if self.gpus_per_run < 0 or self.timeout_min < 1 or (self.array_parallelism or 1) < 1:
            raise LaunchError("--gpus-per-run must be >= 0, --timeout-min and --slurm-array-parallelism >= 1")
        return self

    @property
    def in_process(self) -> bool:
        """Train in this process, one run after another (``local`` without ``gpus`` or ``jobs``)."""
        return self.kind == "local" and not self.gpus and not self.jobs


def parse_gpus(text: str | None) -> tuple[str, ...]:
    """``"0,1,2,3"`` → ``("0", "1", "2", "3")`` (device ids or UUIDs for ``CUDA_VISIBLE_DEVICES``)."""
    gpus = tuple(dict.fromkeys(g.strip() for g in (text or "").split(",") if g.strip()))
    if text is not None and not gpus:
        raise LaunchError(f"--gpus takes a comma list of device ids, e.g. 0,1, got {text!r}")
    return gpus


def gpu_count() -> int:
    """CUDA devices torch sees here (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(gpus: Sequence[str]) -> None:
    """``--gpus`` checked as ``--device cuda:N`` is: device ids torch sees (or ``GPU-``/``MIG-`` UUIDs), on a
    machine with a CUDA GPU; ``LaunchError`` otherwise (never a silent run on the CPU)."""
    if not gpus:
        return
    bad = [g for g in gpus if not (g.isdigit() or g.upper().startswith(("GPU-", "MIG-")))]
    if bad:
        raise LaunchError(f"--gpus: {bad[0]!r} is not a device id (0, 1, ... or a GPU-/MIG- UUID)")
    count = gpu_count()
    if count == 0:
        import torch

        raise LaunchError(f"--gpus {','.join(gpus)} asked for, but torch sees no CUDA GPU (torch {torch.__version__});"
                          f" leave --gpus out to train in this process, or use --jobs N for CPU jobs")
    visible = {v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")}  # ids as this shell has
    missing = [g for g in gpus if g.isdigit() and int(g) >= count and g not in visible]
    if missing:
        raise LaunchError(f"--gpus: device {missing[0]} asked for, but torch sees only {count} GPU(s)")


def job_threads(jobs: int) -> int:
    """Threads of each of ``jobs`` CPU jobs: ``OMP_NUM_THREADS`` when set, else this machine's cores / ``jobs``
    (at least 1), so parallel jobs do not oversubscribe the cores."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, jobs))


def train_args(loggers: Sequence[str] = (), quiet: bool = False) -> list[str]:
    """What a job adds to ``art-adr train --out RUN_DIR --resume``: ``--logger`` and ``-q``."""
    return (["--logger", ",".join(loggers)] if loggers else []) + (["-q"] if quiet else [])


def _finished(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "final.pt").is_file()


def _try_lock(run_dir: Path, what: str) -> RunLock | None:
    """The run's lock, or ``None`` when another process holds it (a job trains the run)."""
    from .runs import RunError, RunLock

    try:
        return RunLock(run_dir, what)
    except RunError:
        return None


def prepare_run(run_dir: Path, config: RunConfig, command: str) -> bool:
    """Write the run's resolved ``config.yaml`` (the job resumes it), or check the one there holds this run;
    ``False`` when another process holds the run's lock (it is being trained). ``RunError`` on other options."""
    from .runs import CONFIG_FILE, RunError, config_diff, load_run_config, write_config

    lock = _try_lock(run_dir, "benchmark")
    if lock is None:
        return False
    with lock:
        if (run_dir / CONFIG_FILE).is_file():
            diff = config_diff(load_run_config(run_dir).to_dict(), config.to_dict())
            if diff:
                raise RunError(f"{run_dir} holds a run with other options ({', '.join(diff)}); use another --out")
        else:
            write_config(run_dir, config, {"prepared_by": command, "job": f"art-adr train --out {run_dir} --resume"})
    return True


def _busy(run_dir: Path) -> bool:
    lock = _try_lock(run_dir, "benchmark")
    if lock is None:
        return True
    lock.release()
    return False


class _LocalPool:
    """``art-adr train`` subprocesses, one per slot at a time (a slot is a device for ``CUDA_VISIBLE_DEVICES``; ``""``
    hides every GPU), logs in ``<out>/logs/<run>.log``; ``env``: more variables for every job."""

    def __init__(self, devices: Sequence[str], out: Path, args: Sequence[str],
                 env: dict[str, str] | None = None) -> None:
        self.free = list(devices)
        self.env = dict(env or {})
        self.logs = out / "logs"
        self.args = list(args)
        self.queue: list[Path] = []
        self.running: dict[Path, tuple[subprocess.Popen[bytes], str]] = {}
        self.ended: dict[Path, int] = {}

    def adopt(self, run_dirs: Sequence[Path]) -> dict[Path, Path]:
        return {}

    def submit(self, run_dirs: Sequence[Path]) -> dict[Path, Path]:
        self.queue += list(run_dirs)
        self.poll()
        return {r: r for r in run_dirs}

    def poll(self) -> None:
        for run_dir, (proc, device) in list(self.running.items()):
            if proc.poll() is not None:
                self.ended[run_dir] = proc.returncode
                self.free.append(device)
                del self.running[run_dir]
        while self.queue and self.free:
            self._start(self.queue.pop(0), self.free.pop(0))

    def _start(self, run_dir: Path, device: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "CUDA_VISIBLE_DEVICES": device}
        with open(self.logs / f"{run_dir.name}.log", "ab") as log:
            proc = subprocess.Popen([*TRAIN_COMMAND, "--out", str(run_dir), "--resume", *self.args], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        self.running[run_dir] = (proc, device)

    def alive(self, handle: Path) -> bool:
        self.poll()
        return handle in self.queue or handle in self.running

    def failure(self, handle: Path) -> str:
        log = self.logs / f"{handle.name}.log"
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        return f"art-adr train exited with code {self.ended.get(handle)} ({lines[-1] if lines else 'no output'}; " \
               f"log: {log})"

    def stop(self) -> None:
        """SIGTERM to every running child (each stops after its step, keeping ``last.pt``), then wait for them."""
        self.queue.clear()
        for proc, _ in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.running.values():
            proc.wait()


def make_executor(folder: Path, launcher: Launcher, name: str) -> Any:
    """``submitit.AutoExecutor`` for ``launcher`` (logs and pickles in ``folder/<job id>/``)."""
    try:
        import submitit
    except ImportError:
        raise LaunchError('--launcher slurm needs submitit: pip install "art-adr[cluster]"') from None
    extra = dict(launcher.slurm)
    ctor = {"slurm_max_num_timeout": int(extra.pop("max_num_timeout"))} if "max_num_timeout" in extra else {}
    try:
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=launcher.cluster, **ctor)
    except RuntimeError as exc:  # submitit: 'Could not detect "srun", are you indeed on a slurm cluster?'
        raise LaunchError(f"--launcher slurm: {_first_line(exc)} (no srun on PATH: run this on a SLURM login "
                          f"node, or use --launcher local)") from None
    params: dict[str, Any] = {"name": name, "timeout_min": int(launcher.timeout_min), "nodes": 1, "tasks_per_node": 1,
                              "gpus_per_node": int(launcher.gpus_per_run)}
    if launcher.partition:
        params["slurm_partition"] = launcher.partition
    if launcher.array_parallelism is not None:
        params["slurm_array_parallelism"] = int(launcher.array_parallelism)
    params.update({k if k.startswith("slurm_") else f"slurm_{k}": v for k, v in extra.items()})
    try:
        executor.update_parameters(**params)
    except (NameError, ValueError, TypeError, AssertionError) as exc:
        raise LaunchError(f"--set-slurm: {str(exc).strip().splitlines()[0]}") from None
    return executor


class _Submitit:
    """One submitit job per run (a job array when several are submitted together); job ids in
    ``<out>/submitit/jobs.json``, so a rerun waits for the jobs an earlier invocation left queued or running."""

    def __init__(self, launcher: Launcher, out: Path, args: Sequence[str], name: str) -> None:
        self.folder = out / "submitit"
        self.executor = make_executor(self.folder, launcher, name)
        self.args = list(args)
        self.records_path = self.folder / "jobs.json"
        self.records: dict[str, str] = json.loads(self.records_path.read_text()) if self.records_path.is_file() \
            else {}

    def _job(self, job_id: str) -> Any:
        return self.executor._executor.job_class(folder=self.executor.folder, job_id=job_id)

    def adopt(self, run_dirs: Sequence[Path]) -> dict[Path, Any]:
        adopted = {}
        for run_dir in run_dirs:
            job_id = self.records.get(str(run_dir))
            if job_id is not None:
                job = self._job(job_id)
                if self._alive(job, unknown=False, force=True):
                    adopted[run_dir] = job
        return adopted

    def submit(self, run_dirs: Sequence[Path]) -> dict[Path, Any]:
        from submitit.core.utils import FailedJobError, FailedSubmissionError

        from .submitit_job import TrainJob

        try:  # submitit prints sbatch's error text too: it is in the one error line instead
            with contextlib.redirect_stderr(io.StringIO()), self.executor.batch():
                jobs = [self.executor.submit(TrainJob(run_dir, self.args, TRAIN_COMMAND)) for run_dir in run_dirs]
        except FailedJobError as exc:  # sbatch exited with an error
            raise LaunchError(f"sbatch refused the job(s) of {len(run_dirs)} run(s): {_first_line(exc) or 'no reason'}"
                              f" (nothing was submitted; rerun the same command once this is fixed)") from None
        except FailedSubmissionError as exc:  # sbatch printed something without a job id
            raise LaunchError(f"sbatch gave no job id for {len(run_dirs)} run(s) ({_first_line(exc)}); look at "
                              f"squeue before rerunning the same command") from None
        self.records.update({str(r): str(j.job_id) for r, j in zip(run_dirs, jobs)})
        from .checkpoint import atomic_write

        text = json.dumps(self.records, indent=1)
        atomic_write(self.records_path, lambda tmp: Path(tmp).write_text(text))
        return dict(zip(run_dirs, jobs))

    @staticmethod
    def _alive(job: Any, unknown: bool = True, force: bool = False) -> bool:
        try:
            return not job.done(force_check=force)
        except Exception:  # the cluster's accounting could not be read: keep waiting on our own jobs
            return unknown

    def alive(self, handle: Any) -> bool:
        return self._alive(handle)

    def poll(self) -> None:
        pass

    def failure(self, job: Any) -> str:
        try:
            error = job.exception()
        except Exception as exc:  # any reason the result cannot be read is reported as it is
            error = exc
        text = " ".join(str(error).split())[-300:] if error is not None else f"state {job.state}"
        return f"job {job.job_id} ended without final.pt ({text}; log: {job.paths.stderr})"

    def stop(self) -> None:
        pass  # cluster jobs go on; rerunning the same command finds them


def _first_line(exc: BaseException) -> str:
    """An error's text on one line, at most 300 characters."""
    return " ".join(str(exc).split())[:300]


@LAUNCHERS.register("local", help="train the runs in this process one after another (with --gpus: one run per GPU "
                                  "in parallel; with --jobs N: N CPU jobs at a time)")
def _local_backend(launcher: Launcher, out: Path, args: Sequence[str], name: str) -> _LocalPool:
    if launcher.jobs:
        return _LocalPool([""] * launcher.jobs, out, args, {"OMP_NUM_THREADS": str(job_threads(launcher.jobs))})
    return _LocalPool(launcher.gpus, out, args)


@LAUNCHERS.register("slurm", package="submitit", install='pip install "art-adr[cluster]"',
                    help="one SLURM job per run through submitit (art-adr train --out RUN_DIR --resume, requeued "
                         "with --resume after preemption or the time limit)")
def _slurm_backend(launcher: Launcher, out: Path, args: Sequence[str], name: str) -> _Submitit:
    return _Submitit(launcher, out, args, name)


def launch_runs(runs: Sequence[tuple[Path, RunConfig]], launcher: Launcher, out: str | os.PathLike, *,
                loggers: Sequence[str] = (), verbose: bool = True, command: str = "art-adr benchmark",
                name: str = "art-adr") -> list[Path]:
    """Train the (unfinished) ``runs`` through ``launcher`` and, when it waits, until every run is finished.

    Returns the runs still unfinished (``[]`` once all are; with ``wait=False`` the ones submitted or still
    running). A run whose job of this invocation ended without ``final.pt`` is reported in one ``RunError`` after
    the others finished; SIGTERM / Ctrl-C stop local jobs at their checkpoints (``LaunchInterrupted``).
    """
    launcher.validate()
    out = Path(out)
    configs = {Path(r): c for r, c in runs}
    _check_devices(launcher, configs.values())
    backend = LAUNCHERS.get(launcher.kind)(launcher, out, train_args(loggers, quiet=not verbose), name)
    follow = _Follow(configs, backend, command)
    if verbose and follow.handles:
        say(f"== waiting for {len(follow.handles)} job(s) of an earlier invocation")
    poll_s = launcher.poll_s if launcher.poll_s is not None else (30.0 if launcher.kind == "slurm" else 1.0)
    bar = _progress(len(configs), verbose)
    local = launcher.kind == "local" and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if local else None
    try:
        while True:
            remaining = follow.step(launcher, verbose)
            finished = sum(_finished(r) for r in configs)
            if bar is not None and finished > bar.n:
                bar.update(finished - bar.n)
            if not remaining or not launcher.wait:
                break
            time.sleep(poll_s)
            backend.poll()
    except (KeyboardInterrupt, LaunchInterrupted) as exc:
        if launcher.kind != "local":
            raise  # cluster jobs go on; rerunning the same command finds them
        backend.stop()
        raise exc if isinstance(exc, LaunchInterrupted) else LaunchInterrupted(signal.SIGINT) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
    follow.raise_failures()
    return remaining


def _check_devices(launcher: Launcher, configs: Iterable[RunConfig]) -> None:
    devices = [c.device for c in configs]
    if launcher.gpus and any(d.startswith("cuda:") for d in devices):
        raise LaunchError("with --gpus every run takes its GPU from CUDA_VISIBLE_DEVICES: use --device auto or "
                          "cuda, not cuda:N")
    if launcher.jobs and any(d.startswith("cuda") for d in devices):
        raise LaunchError("--jobs trains on the CPU (no GPU visible to its jobs): use --device auto or cpu, or "
                          "--gpus for one job per GPU")


class _Follow:
    """The runs of one :func:`launch_runs` call: which to start, which are running, which failed."""

    def __init__(self, configs: dict[Path, RunConfig], backend: Any, command: str) -> None:
        self.configs, self.backend, self.command = configs, backend, command
        self.handles: dict[Path, Any] = backend.adopt(list(configs))
        self.tried: set[Path] = set()
        self.failures: dict[Path, str] = {}

    def step(self, launcher: Launcher, verbose: bool) -> list[Path]:
        """Start the runs that can start, note the failed ones; the runs not finished yet."""
        start, remaining = [], []
        for run_dir in self.configs:
            if run_dir in self.failures or _finished(run_dir):
                continue
            handle = self.handles.get(run_dir)
            if handle is not None and self.backend.alive(handle):
                remaining.append(run_dir)
            elif _busy(run_dir):  # another process trains it (a job left by an earlier invocation)
                remaining.append(run_dir)
            elif run_dir in self.tried:
                self.failures[run_dir] = self.backend.failure(handle)
            elif prepare_run(run_dir, self.configs[run_dir], self.command):
                start.append(run_dir)
                remaining.append(run_dir)
        if start:
            self.handles.update(self.backend.submit(start))
            self.tried.update(start)
            if verbose:
                where = (f": devices {','.join(launcher.gpus)}" if launcher.gpus
                         else f": {launcher.jobs} CPU jobs at a time" if launcher.jobs else "")
                say(f"== started {len(start)} job(s) ({launcher.kind}{where}): " + ", ".join(r.name for r in start))
        return remaining

    def raise_failures(self) -> None:
        if self.failures:
            from .runs import RunError

            lines = "; ".join(f"{r}: {text}" for r, text in self.failures.items())
            raise RunError(f"{len(self.failures)} run(s) did not finish: {lines}. Rerun the same command to retry "
                           f"them (finished runs are kept)")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise LaunchInterrupted(signum)


def _progress(total: int, verbose: bool) -> Any:
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="runs finished", unit="run")

"""Training runs: data, model, trainer, per-epoch metrics, plots, atomic checkpoints, exact resume, DDP."""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from . import __version__
from .checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from .config import RunConfig, coerce, with_legacy_defaults
from .validation import resolve_best_metric

__all__ = ["train_run", "RunError", "RunStopped", "RunInterrupted", "RunLock", "resume_hint", "load_run_config",
           "build_scheduler", "plot_curves"]

CONFIG_FILE = "config.yaml"


class RunError(ValueError):
    """A run that cannot start: an existing run directory, missing data, a config that does not resume."""


class RunStopped(Exception):
    """Raised internally to stop a run cleanly after ``stop_after_epochs`` epochs of this invocation."""


class RunInterrupted(Exception):
    """The run stopped on SIGTERM (after the running step, or after the epoch's checkpoint when the signal came
    during validation or checkpointing); ``checkpoints/last.pt`` holds the last finished epoch and ``--resume``
    continues bit-for-bit (the unfinished epoch is trained again). ``.out``: the run directory."""

    def __init__(self, out: Path, signum: int = signal.SIGTERM) -> None:
        self.out, self.signum = Path(out), int(signum)
        super().__init__(f"stopped by {signal.Signals(signum).name}; {resume_hint(out)}")


def resume_hint(out: str | os.PathLike) -> str:
    """How to go on with an interrupted run (``--resume`` only where there is something to resume)."""
    last = Path(out) / "checkpoints" / "last.pt"
    if last.is_file():
        return f"the last finished epoch is in {last}; continue with: art-adr train --out {out} --resume"
    if not (Path(out) / CONFIG_FILE).is_file():
        return f"the run had not started ({out} holds no {CONFIG_FILE}); run the same command again"
    return (f"no epoch had finished, so there is no checkpoint yet; start the run again (from scratch, same "
            f"options) with: art-adr train --out {out} --resume")


class RunLock:
    """One process per run (or benchmark) directory: ``<dir>/.lock`` holds ``pid host`` and an exclusive
    ``flock`` for the life of the process. The kernel drops the flock when the process dies (even by SIGKILL),
    so a lock file left by a killed run is stale and taken over. Where the file system has no ``flock``, a lock
    whose pid is dead on this host is stale. ``RunError`` when another live process holds the directory."""

    NAME = ".lock"

    def __init__(self, directory: str | os.PathLike, what: str = "run") -> None:
        self.dir = Path(directory)
        self.path = self.dir / self.NAME
        self.fd: int | None = None
        # the folders this lock creates (the run directory and missing parents such as a benchmark's runs/)
        self.created = [d for d in (self.dir, *self.dir.parents) if not d.exists()]
        self.dir.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()} {socket.gethostname()}"
        try:
            self._take(me, what)
        except BaseException:
            self._remove_created()
            raise

    def _open(self) -> int:
        """The lock file, opened without following a symbolic link and without blocking on
        a FIFO; anything but a regular file is refused (``RunError``), never written through."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(self.path):
                raise RunError(f"{self.path} is a symbolic link; art-adr does not write through it: remove it "
                               f"(or choose another --out)") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunError(f"{self.path} is not a regular file; remove it (or choose another --out)")
        return fd

    def _take(self, me: str, what: str) -> None:
        for _ in range(20):
            fd = self._open()
            try:
                owner = os.read(fd, 512).decode(errors="replace").strip()
                if not self._exclusive(fd, owner):
                    pid, _, host = owner.partition(" ")
                    raise RunError(f"{self.dir} is in use by another art-adr {what} (pid {pid or '?'} on "
                                   f"{host or 'an unknown host'}); wait for it to end or choose another --out "
                                   f"(if no such process runs, delete {self.path})")
                try:  # the holder may have removed the file between our open() and flock()
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    try:
                        os.ftruncate(fd, 0)
                        os.pwrite(fd, (me + "\n").encode(), 0)
                    except OSError:  # disk full: leave no empty lock file behind
                        os.unlink(self.path)
                        raise
                    self.fd, fd = fd, -1
                    return
            finally:
                if fd >= 0:
                    os.close(fd)
        raise RunError(f"could not lock {self.dir}: {self.path} keeps changing")

    def _remove_created(self) -> None:
        """Remove the folders this lock created that are still empty (innermost first)."""
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:
                return

    @staticmethod
    def _exclusive(fd: int, owner: str) -> bool:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except (ImportError, OSError):  # no flock here: the pid in the file decides
            pid, _, host = owner.partition(" ")
            if not pid.isdigit() or int(pid) == os.getpid():
                return True
            if host != socket.gethostname():
                return False
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent); the folders the lock created and nothing else
        filled are removed too."""
        if self.fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
        self._remove_created()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def holding_lock(what: str, outputs: tuple[str, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for ``fn(x, out, ...)``: runs it holding ``RunLock(out, what)``, after removing the temp files
    a killed predecessor left while writing one of ``outputs`` (the command's own files) in ``out`` — only when
    ``out`` is ours (it holds ``runs/`` or one of ``outputs``; ``art-adr benchmark``: one benchmark per output
    directory)."""
    import functools

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def locked(first: Any, out: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
            with RunLock(out, what):
                folder = Path(out)
                if (folder / "runs").is_dir() or any((folder / name).exists() for name in outputs):
                    remove_leftover_tmp(folder, outputs)
                return fn(first, out, *args, **kwargs)

        return locked

    return decorate


# the temp-file name of checkpoint.atomic_write: .<name>.<pid>.<8 hex digits>.tmp
_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9]+\.[0-9a-f]{8}\.tmp$")
RUN_OUTPUTS = (CONFIG_FILE, "metrics.jsonl", "metrics.csv", "curves.png")
CHECKPOINT_FILES = ("last.pt", "best.pt", "final.pt")


def remove_leftover_tmp(folder: Path, outputs: tuple[str, ...]) -> list[Path]:
    """Delete the temp files a killed atomic write of one of ``outputs`` left in ``folder`` (call with the lock
    held): only names ``.<output>.<pid>.<hex>.tmp`` that :func:`art_adr.checkpoint.atomic_write` makes, only
    regular files; anything else there is the user's and stays. Returns what was removed."""
    removed = []
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            match = _TMP_NAME.match(tmp.name)
            if match and match["name"] in outputs and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


KILL_ENV = "ART_ADR_KILL_AT"
KILL_POINTS = ("locked", "config", "step", "validation", "epoch-end", "last-tmp", "after-last", "best-tmp",
               "after-best", "after-metrics", "after-plot", "final-tmp", "after-final")


class _KillHook:
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


class _StopOnSigterm:
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


@dataclass
class DistInfo:
    """Rank facts of a ``torchrun`` process (or of a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return info


def pick_device(name: str, dist: DistInfo) -> torch.device:
    """``auto`` → this rank's GPU when there is one, else CPU (:func:`art_adr.estimator.resolve_device`)."""
    from .estimator import resolve_device

    try:
        return resolve_device(name, dist.local_rank)
    except ValueError as exc:
        raise RunError(str(exc)) from None


WARMUP_LR_INIT = 1e-6  # the rate the warm-up starts from (ADR authors' preact-resnet18_pgd_awp_adr.gin)


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """timm's ``CosineLRScheduler(t_initial=total_iters, lr_min=eta_min, warmup_t=warmup_iters, warmup_lr_init)``
    stepped the way the ADR authors' loop steps it (``scheduler.step(i)`` after the update of iteration ``i``).

    timm's rate at ``t`` is ``warmup_lr_init + t·(lr − warmup_lr_init) / warmup_t`` for ``t < warmup_t``, else
    ``eta_min + ½(lr − eta_min)(1 + cos(π·t / t_initial))`` — the cosine runs over the whole run from ``t = 0``,
    not over the iterations after the warm-up — and ``eta_min`` from ``t_initial`` on. Iteration ``i`` trains
    with timm's rate at ``i − 1``; iteration 0 with ``warmup_lr_init`` (the peak ``lr`` without warm-up), the
    rate timm's constructor sets. ``last_epoch`` counts iterations; the state resumes exactly.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_iters: int, warmup_iters: int = 0,
                 warmup_lr_init: float = WARMUP_LR_INIT, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if total_iters < 1 or warmup_iters < 0:
            raise ValueError(f"total_iters must be >= 1 and warmup_iters >= 0, got {total_iters}, {warmup_iters}")
        self.total_iters, self.warmup_iters = int(total_iters), int(warmup_iters)
        self.warmup_lr_init, self.eta_min = float(warmup_lr_init), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def rate(self, peak: float, iteration: int) -> float:
        """The rate iteration ``iteration`` (0-based) trains with, for a group whose peak rate is ``peak``."""
        if iteration == 0:
            return self.warmup_lr_init if self.warmup_iters else peak
        t = iteration - 1  # timm's t: the authors step it with the index of the iteration just done
        if t < self.warmup_iters:
            return self.warmup_lr_init + t * (peak - self.warmup_lr_init) / self.warmup_iters
        if t >= self.total_iters:
            return self.eta_min
        return self.eta_min + 0.5 * (peak - self.eta_min) * (1 + math.cos(math.pi * t / self.total_iters))

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [self.rate(peak, self.last_epoch) for peak in self.base_lrs]


def build_scheduler(optimizer: torch.optim.Optimizer, config: RunConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The run's LR scheduler, stepped once per iteration.

    ``"multistep"``: torch's ``MultiStepLR`` decaying by ``lr_gamma`` at ``milestones`` (fractions of the run's
    ``epochs × steps_per_epoch`` iterations, rounded; §5.1 of Wu et al. 2024; the authors' timm
    ``MultiStepLRScheduler``, stepped after the update, decays one iteration later). ``"cosine"``:
    :class:`WarmupCosineLR`, the authors' timm ``CosineLRScheduler`` (§5.4, ``yuyuwu5/ADR``
    ``build_cosine_scheduler``): the cosine over all ``epochs × steps_per_epoch`` iterations, a linear warm-up
    from ``WARMUP_LR_INIT`` over ``int(warmup_epochs × steps_per_epoch)`` iterations, to 0.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    sched = torch.optim.lr_scheduler
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "multistep":
        return sched.MultiStepLR(optimizer, [round(m * total) for m in config.milestones], gamma=config.lr_gamma)
    if config.lr_schedule != "cosine":
        raise ValueError(f"lr_schedule must be 'multistep' or 'cosine', got {config.lr_schedule!r}")
    return WarmupCosineLR(optimizer, total, int(config.warmup_epochs * steps_per_epoch), WARMUP_LR_INIT, 0.0)


def _upgrade_scheduler_state(saved: dict[str, Any] | None, config: RunConfig, steps_per_epoch: int,
                             optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """A checkpoint's scheduler state in :func:`build_scheduler`'s form.

    A state of another scheduler class — a ``LambdaLR`` (key ``lr_lambdas``) from before art-adr used torch's
    schedulers, or the ``SequentialLR(LinearLR, CosineAnnealingLR)`` that ``"cosine"`` was before it followed
    the authors' timm schedule — becomes a fresh scheduler stepped to the saved iteration on a throw-away
    optimizer: the same point of the schedule (the optimizer's own state still restores the exact current LR;
    a former ``"cosine"`` run continues on the authors' schedule from there, with a warning).
    """
    if not saved:
        return saved
    params = [torch.zeros((), requires_grad=True) for _ in optimizer.param_groups]
    scratch = torch.optim.SGD([{"params": [p], "lr": g.get("initial_lr", g["lr"])}
                               for p, g in zip(params, optimizer.param_groups)])
    scheduler = build_scheduler(scratch, config, steps_per_epoch)
    if set(saved) == set(scheduler.state_dict()):
        return saved
    if config.lr_schedule == "cosine":
        warnings.warn("the checkpoint's cosine LR schedule (torch's warm-up, then a cosine over the rest) is "
                      "replaced by the ADR authors' timm schedule (a cosine over the whole run) from iteration "
                      f"{int(saved['last_epoch'])} on", RuntimeWarning, stacklevel=2)
    with warnings.catch_warnings():  # the scratch optimizer never steps: torch's order warning does not apply
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        for _ in range(int(saved["last_epoch"])):
            scheduler.step()
    return scheduler.state_dict()


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_config(out: Path, config: RunConfig, meta: dict[str, Any]) -> None:
    """``config.yaml``: the resolved options (loadable again), with what ran in a header comment."""
    header = "".join(f"# {k}: {v}\n" for k, v in meta.items())
    text = header + yaml.safe_dump(config.to_dict(), sort_keys=False)
    atomic_write(out / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text))


def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """Read back a run directory's ``config.yaml`` as a validated ``RunConfig``."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{path} not found: not a run directory")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"a mapping of options expected, got {type(data).__name__}")
        data = with_legacy_defaults({str(k): v for k, v in data.items()})
        return RunConfig(**{k: coerce(k, v) for k, v in data.items()}).validate()
    except (yaml.YAMLError, ValueError, TypeError, UnicodeDecodeError) as exc:
        text = " ".join(str(exc).split())
        raise RunError(f"{path} is not a valid run config ({text}); restore it, or start a new run with "
                       f"another --out") from None


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Rows with possibly different keys as one CSV (columns in order of first appearance), atomically."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write(out / "metrics.jsonl", lambda tmp: Path(tmp).write_text(lines))
    write_csv(out / "metrics.csv", history)


def plot_curves(history: list[dict[str, Any]], path: str | os.PathLike, title: str = "", attack: str = "pgd",
                attack_label: str = "PGD-10") -> None:
    """Clean and robust (validation ``attack``, e.g. ``"apgd"``, named ``attack_label``) accuracy in % of student
    and teacher per epoch (the robust-overfitting picture), plus loss, τ, λ (:func:`curves_figure`)."""
    import matplotlib.pyplot as plt

    fig = curves_figure(history, title, attack, attack_label)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def curves_figure(history: list[dict[str, Any]], title: str = "", attack: str = "pgd",
                  attack_label: str = "PGD-10") -> Any:
    """The figure of :func:`plot_curves`: accuracy in % (as the tables), whole-epoch ticks, the validation attack
    named with its step count (``attack_label``, e.g. ``"APGD-CE+T-10"``), both panels titled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label, style in (("clean_acc", "student clean", "C0-"),
                              (f"{attack}_acc", f"student {attack_label}", "C1-"),
                              ("teacher_clean_acc", "teacher (WA) clean", "C0--"),
                              (f"teacher_{attack}_acc", f"teacher (WA) {attack_label}", "C1--")):
        pts = [(r["epoch"], 100 * r[key]) for r in history if key in r]
        if pts:
            ax.plot(*zip(*pts), style, marker="o", ms=3, label=label)
    ax.plot(epochs, [100 * r["train_robust_acc"] for r in history], "C2:", label="train adversarial")
    best = [r.get("best_epoch") for r in history if r.get("best_epoch")]
    if best:
        ax.axvline(best[-1], color="grey", lw=0.8, ls=":", label=f"best epoch {best[-1]}")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title=(title + ": " if title else "") + "validation accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax2.plot(epochs, [r["loss"] for r in history], "k-", marker="o", ms=3, label="train loss")
    ax2.set(xlabel="epoch", ylabel="loss", title="training loss" + (" and ADR schedules" if all(
        "tau" in r for r in history) else ""))
    handles, labels = ax2.get_legend_handles_labels()
    if all("tau" in r for r in history):  # ADR runs: the annealing schedules
        ax3 = ax2.twinx()
        ax3.plot(epochs, [r["tau"] for r in history], "C3--", label="τ (temperature)")
        ax3.plot(epochs, [r["lambda"] for r in history], "C4--", label="λ (interpolation)")
        ax3.set_ylabel("τ, λ")
        h2, l2 = ax3.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax2.legend(handles, labels, fontsize=8)
    for a in (ax, ax2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def _plot_run(out: Path, history: list[dict[str, Any]], config: RunConfig) -> None:
    """A run's ``curves.png``: its validation attack, named with its steps."""
    from .attacks import AttackSpec
    from .validation import get_val_attack

    label = get_val_attack(config.val_attack, config.val_targets).describe(AttackSpec(steps=config.eval_max_iter))
    plot_curves(history, out / "curves.png", title=config.recipe or f"{config.dataset} {config.method}",
                attack=config.val_attack, attack_label=label)


def load_data(config: RunConfig):
    """A run's ``(train, val, test, extra)`` sets: ``val`` is the seeded hold-out of the training set
    (``val_split: holdout``) or the test set; ``extra`` the extra-data set or ``None``."""
    from .data import load_dataset, load_extra_npz

    kw = dict(config.dataset_kwargs)
    train = load_dataset(config.dataset, "train", config.data_dir, config.download, **kw)
    test = load_dataset(config.dataset, "test", config.data_dir, config.download, **kw)
    if config.val_split == "holdout":
        if config.val_size >= len(train):
            raise RunError(f"val_size {config.val_size} leaves no training data ({len(train)} examples)")
        train, val = train.split(config.val_size, seed=config.seed)
    else:  # the whole test set, as the ADR authors validate (val_size sizes the hold-out only)
        val = test
    if config.subset is not None and config.subset > len(train):
        held = f" after the {len(val)}-image hold-out" if config.val_split == "holdout" else ""
        raise RunError(f"subset {config.subset} is larger than the training set ({len(train)} images{held}); "
                       f"pass at most --subset {len(train)}, or leave it out to use them all")
    if config.subset is not None and config.subset < len(train):
        idx = np.sort(np.random.default_rng(config.seed + 1).permutation(len(train))[: config.subset])
        train = train.subset(idx)
    extra = None
    if config.extra_fraction > 0:
        if not config.extra_data:
            raise RunError("extra_fraction > 0 needs --extra-data FILE.npz (image uint8 NHWC, label)")
        extra = load_extra_npz(config.extra_data, num_classes=train.num_classes)
        if extra.shape != train.shape:
            raise RunError(f"extra data images are {extra.shape}, the dataset's are {train.shape}")
    return train, val, test, extra


_load_data = load_data  # its former name


def _model_desc(config: RunConfig, num_classes: int, shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    return {"arch": config.arch, "num_classes": num_classes, "dataset": config.dataset,
            "kwargs": _arch_kwargs(config, shape)}


def _arch_kwargs(config: RunConfig, shape: tuple[int, ...] | None) -> dict[str, Any]:
    """``arch_kwargs``, plus the data's channel count for ``synthetic`` (its shape is a dataset option, so the
    architecture's default channels need not match) when the architecture takes ``in_channels``."""
    import inspect

    from .models import ARCHITECTURES

    kwargs = dict(config.arch_kwargs)
    build = ARCHITECTURES.get(config.arch)
    if (config.dataset == "synthetic" and shape is not None and "in_channels" not in kwargs and build is not None
            and "in_channels" in inspect.signature(build).parameters):
        kwargs["in_channels"] = int(shape[0])
    return kwargs


def parameter_groups(model: torch.nn.Module, bn_weight_decay: bool = True) -> list[dict[str, Any]]:
    """SGD parameter groups; ``bn_weight_decay=False`` puts BatchNorm γ/β in a group without weight decay
    (the ADR authors' ``group_weight``, used in their runs with extra DDPM data)."""
    if bn_weight_decay:
        return [{"params": list(model.parameters())}]
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
          for p in m.parameters(recurse=False)}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) not in bn]},
            {"params": [p for p in params if id(p) in bn], "weight_decay": 0.0}]


def fused_sgd_supported(device: torch.device) -> bool:
    """Whether ``torch.optim.SGD(fused=True)`` runs on ``device`` (then an fp16 step needs no host sync: the
    gradient scaler hands its inf check to the optimizer instead of reading it with ``.item()``."""
    try:
        torch.optim.SGD([torch.zeros(1, device=device, requires_grad=True)], lr=0.1, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


# RunConfig fields the run layer uses itself (data, model, optimiser, LR schedule, bookkeeping); every other field
# is an argument of the trainer or of the training method, passed by name (tests/test_runs.py checks the split)
RUN_FIELDS = frozenset({
    "dataset", "data_dir", "download", "dataset_kwargs", "subset", "extra_data", "extra_fraction", "val_split",
    "val_size", "arch", "arch_kwargs", "method", "epochs", "batch_size", "lr", "momentum", "nesterov",
    "weight_decay", "bn_weight_decay", "lr_schedule", "milestones", "lr_gamma", "warmup_epochs", "device",
    "save_every", "recipe", "description",
})
# trainer arguments no RunConfig field sets (the run layer passes or leaves them)
TRAINER_ONLY_ARGS = frozenset({"classifier", "method", "attack", "scheduler_interval", "log_every", "verbose"})


def trainer_arguments(config: RunConfig) -> tuple[Any, dict[str, Any]]:
    """``(method, keyword arguments)`` of :class:`AdversarialTrainerADR` for ``config``, mapped by name: the
    method's hyper-parameters are the config fields named like its dataclass fields; the trainer gets every
    other field that is not in ``RUN_FIELDS``."""
    from .methods import METHODS as registry
    from .methods import get_method, method_fields

    method_cls = get_method(config.method)
    method = method_cls(**{name: getattr(config, name) for name in method_fields(method_cls)})
    method_params = {name for cls in registry.values() for name in method_fields(cls)}
    kwargs = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
              if f.name not in RUN_FIELDS and f.name not in method_params}
    return method, kwargs


def build_trainer(config: RunConfig, num_classes: int, shape: tuple[int, ...], device: torch.device,
                  verbose: bool = True):
    """Model, SGD optimizer, ART classifier and the configured trainer (before data or resume)."""
    from art.estimators.classification import PyTorchClassifier

    from .models import create_model
    from .trainer import AdversarialTrainerADR

    torch.manual_seed(config.seed)
    model = create_model(config.arch, num_classes, dataset=config.dataset, **_arch_kwargs(config, tuple(shape)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model.to(device)  # fused SGD checks the parameters' device
    opt = torch.optim.SGD(parameter_groups(model, config.bn_weight_decay), lr=config.lr, momentum=config.momentum,
                          nesterov=config.sgd_nesterov(), weight_decay=config.weight_decay,
                          # fused on CUDA (an fp16 step then needs no host sync); on the CPU the unfused update
                          # keeps runs, and the README's Fashion-MNIST numbers, bit-identical to before
                          fused=(device.type == "cuda" and fused_sgd_supported(device)) or None)
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), optimizer=opt, input_shape=tuple(shape),
                            nb_classes=num_classes, clip_values=(0.0, 1.0),
                            device_type="gpu" if device.type == "cuda" else "cpu")
    method, kwargs = trainer_arguments(config)
    return AdversarialTrainerADR(clf, method=method, scheduler_interval="step", verbose=verbose, **kwargs)


def place_data(x_train: Any, x_extra: Any, device: torch.device) -> tuple[bool, bool]:
    """Which sets go on ``device``: both when together they fit (half the free GPU memory, or
    ``ART_ADR_DEVICE_BUDGET_BYTES``), else the training set alone if it fits; the rest is streamed from the
    host through pinned double-buffered staging batches (:class:`art_adr.loader.Gather`)."""
    from .loader import fits_on_device, image_nbytes

    train_bytes = image_nbytes(x_train)
    extra_bytes = image_nbytes(x_extra) if x_extra is not None else 0
    both = fits_on_device(train_bytes + extra_bytes, device)
    return both or fits_on_device(train_bytes, device), both and x_extra is not None


def _placed(x: Any, y: Any, device: torch.device, on_device: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from .loader import host_images, to_tensor_images

    if on_device:
        return to_tensor_images(x, device), torch.as_tensor(y, device=device)
    return host_images(x), torch.as_tensor(y)


def _checkpoint(trainer: Any, config: RunConfig, desc: dict[str, Any], record: dict[str, Any] | None) -> dict:
    return {"model": desc, "config": config.to_dict(), **trainer.state_dict(), "metrics": record or {}}


ADR_ONLY_FIELDS = ("temperature", "interpolation")  # unused by a run trained without ADR


def config_diff(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Options that differ between two resolved configs, ignoring what cannot change the run: the device (it may
    change between invocations), the recipe's ``description`` (text) and, when neither trains with ADR, τ/λ (so
    a new default does not orphan them)."""
    no_adr = not saved.get("adr", True) and not now.get("adr", True)
    ignored = {"device", "description"} | (set(ADR_ONLY_FIELDS) if no_adr else set())
    saved, now = with_legacy_defaults(saved), with_legacy_defaults(now)
    return sorted(k for k in set(saved) | set(now) if k not in ignored and saved.get(k) != now.get(k))


def _resume_state(last: Path, config: RunConfig) -> dict[str, Any]:
    """``last.pt`` loaded on the CPU (its RNG states must stay CPU tensors; ``load_state_dict`` moves the weights
    and optimizer state to the run's device) and checked against the run's config."""
    state = load_checkpoint(last)
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


def _resume_trainer(trainer: Any, last: Path, config: RunConfig, steps: int, scheduler: Any,
                    dist: DistInfo) -> None:
    """Load ``last.pt`` into ``trainer`` (``CheckpointError`` when it does not fit); rank 0 rebuilds the
    metrics, plot and ``best.pt`` from it."""
    state = _resume_state(last, config)
    state["scheduler"] = _upgrade_scheduler_state(state.get("scheduler"), config, steps, trainer.optimizer)
    try:
        trainer.load_state_dict(state, scheduler=scheduler)
    except (KeyError, IndexError, RuntimeError, TypeError, ValueError) as exc:
        text = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{last} does not fit this run ({type(exc).__name__}: {text}); it cannot be "
                              f"resumed") from None
    if dist.is_main:
        _rebuild_outputs(out=last.parent.parent, config=config, last=last, state=state)


def _rebuild_outputs(out: Path, config: RunConfig, last: Path, state: dict[str, Any]) -> None:
    """The checkpoint is the single source of truth: on resume, ``metrics.{jsonl,csv}`` and ``curves.png`` are
    rewritten from its history, and ``best.pt`` from ``last.pt`` when the best epoch is the checkpoint's own (a
    kill between ``last.pt`` and ``best.pt`` or before the metrics loses nothing)."""
    history = state["history"]
    _write_metrics(out, history)
    _plot_run(out, history, config)
    key = resolve_best_metric(config.best_metric, config.val_attack)
    scored = [r for r in history if r.get(key) is not None]
    if scored and max(scored, key=lambda r: r[key])["epoch"] == state["epoch"]:
        atomic_write(last.parent / "best.pt", lambda tmp: shutil.copyfile(last, tmp))


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
    from .distributed import together

    if stop_after_epochs is not None and (isinstance(stop_after_epochs, bool) or not isinstance(stop_after_epochs, int)
                                          or stop_after_epochs < 1):
        raise RunError(f"stop_after_epochs must be an integer >= 1 (or None), got {stop_after_epochs!r}")
    out = Path(out_dir)
    dist = init_distributed(config.device)
    if loggers:
        from .loggers import check_loggers, parse_loggers

        loggers = parse_loggers(loggers)
        check_loggers(loggers)
    hook = _KillHook()
    # under DDP, an error on one rank (a GPU missing, rank 0's lock or checks) ends every rank with it
    device = together(lambda: (config.validate(), pick_device(config.device, dist))[1], dist.world_size, RunError)
    lock = together(lambda: RunLock(out, "train") if dist.is_main else None, dist.world_size, RunError)
    try:
        hook("locked", 0)
        return _train_locked(config, out, dist, device, resume, stop_after_epochs, verbose, command, hook,
                             loggers)
    finally:
        if lock is not None:
            lock.release()  # a run that failed before writing anything leaves no directory


def _check_run_dir(config: RunConfig, out: Path, dist: DistInfo, resume: bool, verbose: bool) -> bool:
    """Whether ``out`` holds a checkpoint to resume; ``RunError`` when the directory and ``resume`` disagree
    (rank 0 also looks at a run stopped before its first checkpoint and removes a killed write's temp files)."""
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.pt"
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


def _run_data(config: RunConfig):
    """:func:`_load_data`, and ``RunError`` when ``drop_last`` would leave no batch of the training set."""
    train, val, test, extra = _load_data(config)
    if config.drop_last and len(train) < config.batch_size:
        raise RunError(f"drop_last leaves no batch: {len(train)} training images are fewer than batch_size "
                       f"{config.batch_size}; pass --set drop_last=false or a smaller --batch-size")
    return train, val, test, extra


def _train_locked(config: RunConfig, out: Path, dist: DistInfo, device: torch.device, resume: bool,
                  stop_after_epochs: int | None, verbose: bool, command: str | None, hook: _KillHook,
                  loggers: Sequence[str] = ()) -> Path:
    from .distributed import together
    from .loader import DeviceBatches, MixedBatches

    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.pt"
    # every step before the first collective (the DDP constructor in build_trainer) agrees on errors
    have_ckpt = together(lambda: _check_run_dir(config, out, dist, resume, verbose), dist.world_size, RunError)
    if have_ckpt and (ckpt_dir / "final.pt").is_file() and _resume_state(last, config)["epoch"] == config.epochs:
        if verbose and dist.is_main:  # finished: its files (and their hashes, which caches key on) stay as they are
            print(f"{out} is a finished run ({config.epochs} epochs); nothing to do")
        return out
    if verbose and dist.is_main:
        print(f"loading {config.dataset} ...", flush=True)
    train, val, _test, extra = together(lambda: _run_data(config), dist.world_size, RunError)
    if verbose and dist.is_main:
        print(f"training {config.recipe or config.dataset + ' ' + config.method}: {config.arch} on {device}, "
              f"{len(train)} training and {len(val)} validation images, {config.epochs} epochs -> {out}", flush=True)
    trainer = build_trainer(config, train.num_classes, train.shape, device, verbose=verbose)
    desc = _model_desc(config, train.num_classes, train.shape)

    def batches_and_state() -> tuple[Any, int, Any]:
        """Batches, scheduler, and the resumed state or a new ``config.yaml`` (errors agreed across ranks)."""
        train_here, extra_here = place_data(train.x, None if extra is None else extra.x, device)
        xs, ys = _placed(train.x, train.y, device, train_here)
        main = DeviceBatches(xs, ys, config.batch_size, shuffle=True, augment=trainer.augment, seed=config.seed,
                             drop_last=config.drop_last, device=device, channels_last=config.channels_last,
                             rank=dist.rank, world_size=dist.world_size, stream=not train_here)
        batches: Any = main
        if extra is not None:
            batches = MixedBatches(main, *_placed(extra.x, extra.y, device, extra_here), config.extra_fraction,
                                   stream_extra=not extra_here)
        steps = len(batches)
        scheduler = build_scheduler(trainer.optimizer, config, steps)
        trainer.scheduler = scheduler
        if have_ckpt:
            _resume_trainer(trainer, last, config, steps, scheduler, dist)
        elif dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            meta = {"art_adr": __version__, "torch": torch.__version__, "python": platform.python_version(),
                    "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                    "world_size": dist.world_size, "git_commit": _git_commit(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command or "train_run()",
                    "train_examples": len(train), "val_examples": len(val), "val_split": config.val_split}
            write_config(out, config, meta)
        return batches, steps, scheduler

    batches, steps, scheduler = together(batches_and_state, dist.world_size, RunError)
    hook("config", 0)

    view = _open_view(loggers, out, config) if dist.is_main else None
    if view is not None:
        view.log_history(trainer.history)  # a resumed run: the epochs its loggers lack
    started_at = trainer.epoch
    trainer.set_plan(0, config.epochs * steps)  # τ/λ anneal over the whole run, whatever epoch it resumes at
    stop = _StopOnSigterm(dist.world_size, device)
    if hook.point == "validation":  # test hook: die as validation starts
        evaluate = trainer._evaluate_tensors

        def evaluate_then_die(*args: Any, **kwargs: Any) -> Any:
            hook("validation", trainer.epoch)
            return evaluate(*args, **kwargs)

        trainer._evaluate_tensors = evaluate_then_die

    def epoch_batches(epoch: int) -> Any:
        for i, batch in enumerate(batches.epoch(epoch)):
            if i:
                hook("step", epoch + 1)
            if stop.now():  # SIGTERM came during the last step: stop; the epoch is trained again on resume
                raise RunInterrupted(out, stop.signum or signal.SIGTERM)
            yield batch

    def on_epoch_end(tr: Any, record: dict[str, Any]) -> None:
        hook("epoch-end", tr.epoch)
        attack_ranks: list[Any] = [None] * dist.world_size
        if dist.world_size > 1:  # ranks seed their attack generators apart: keep every rank's for exact resume
            torch.distributed.all_gather_object(attack_ranks, tr.generator.get_state())
        if dist.is_main:
            ckpt = _checkpoint(tr, config, desc, record)
            if dist.world_size > 1:
                ckpt["rng"]["attack_ranks"] = attack_ranks
            save_checkpoint(last, ckpt, before_replace=lambda: hook("last-tmp", tr.epoch))
            hook("after-last", tr.epoch)
            if tr.best_epoch == tr.epoch:  # the trainer's best (by config.best_metric) is this epoch
                save_checkpoint(ckpt_dir / "best.pt", ckpt, before_replace=lambda: hook("best-tmp", tr.epoch))
                hook("after-best", tr.epoch)
            if config.save_every and tr.epoch % config.save_every == 0:  # kept for checkpoint studies
                save_checkpoint(epoch_checkpoint(ckpt_dir, tr.epoch), ckpt)
            _write_metrics(out, tr.history)
            if view is not None:
                view.log_history(tr.history)
            hook("after-metrics", tr.epoch)
            _plot_run(out, tr.history, config)
            hook("after-plot", tr.epoch)
        if stop.at_epoch_end():  # also in the last epoch: the signal is honoured, --resume writes final.pt
            raise RunInterrupted(out, stop.signum or signal.SIGTERM)
        if stop_after_epochs is not None and tr.epoch - started_at >= stop_after_epochs and tr.epoch < config.epochs:
            raise RunStopped

    try:
        trainer.fit_batches(epoch_batches, steps, config.epochs - trainer.epoch, (val.x, val.y), scheduler,
                            [on_epoch_end])
    except RunStopped:
        if verbose and dist.is_main:
            print(f"stopped after epoch {trainer.epoch}; continue with: art-adr train --out {out} --resume")
        _leave_together(dist)
        return out
    finally:
        stop.restore()
        if view is not None:
            view.close()
    if dist.world_size > 1:
        replicas_in_sync(trainer._raw)
    if dist.is_main:
        final = _checkpoint(trainer, config, desc, trainer.history[-1])
        save_checkpoint(ckpt_dir / "final.pt", final, before_replace=lambda: hook("final-tmp", trainer.epoch))
        hook("after-final", trainer.epoch)
        if not (ckpt_dir / "best.pt").exists():
            save_checkpoint(ckpt_dir / "best.pt", final)
    _leave_together(dist)
    return out


def epoch_checkpoint(ckpt_dir: Path, epoch: int) -> Path:
    """Where ``save_every`` keeps the checkpoint of ``epoch``: ``checkpoints/epoch-NNNN.pt``."""
    return Path(ckpt_dir) / f"epoch-{int(epoch):04d}.pt"


def _open_view(loggers: Sequence[str], out: Path, config: RunConfig) -> Any:
    """The run's loggers (:mod:`art_adr.loggers`), or ``None`` without any."""
    if not loggers:
        return None
    from .loggers import open_loggers

    return open_loggers(loggers, out, config.to_dict())


def _leave_together(dist: DistInfo) -> None:
    """DDP: wait until rank 0 has written its files, so no rank tears the process group down (and exits) while
    another still uses it — a rank leaving early made gloo abort the other ("terminate called without an active
    exception")."""
    if dist.world_size > 1:
        torch.distributed.barrier()


def replicas_in_sync(model: torch.nn.Module) -> None:
    """Check that every DDP rank holds rank 0's parameters exactly (``RuntimeError`` otherwise)."""
    flat = torch.cat([p.detach().flatten().float() for p in model.parameters()])
    ref = flat.clone()
    torch.distributed.broadcast(ref, src=0)
    mismatch = torch.tensor([float((ref != flat).any())], device=flat.device)
    torch.distributed.all_reduce(mismatch)
    if mismatch.item():
        raise RuntimeError("DDP replicas diverged: parameters differ between ranks")


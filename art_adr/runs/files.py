"""A run directory's files: the lock (one process per run or benchmark directory), killed writes' temp files,
``config.yaml`` (written, read back, compared), metrics as JSON lines and CSV, checkpoint names."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..checkpoint import atomic_write, missing_folders, remove_empty_folders
from ..config import RunConfig, coerce, with_legacy_defaults

__all__ = ["CONFIG_FILE", "RUN_OUTPUTS", "CHECKPOINT_FILES", "ADR_ONLY_FIELDS", "RunError", "RunLock", "holding_lock",
           "remove_leftover_tmp", "resume_hint", "check_layout", "check_not_foreign", "write_config",
           "load_run_config", "config_diff", "write_csv", "write_metrics", "epoch_checkpoint", "git_commit"]


CONFIG_FILE = "config.yaml"


class RunError(ValueError):
    """A run that cannot start: an existing run directory, missing data, a config that does not resume."""


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
        self.created = missing_folders(self.dir)
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
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise RunError(f"{self.path} is not a regular file; remove it (or choose another --out)")
        if info.st_nlink > 1:  # a hard link: writing the lock would overwrite the other name's file
            os.close(fd)
            raise RunError(f"{self.path} is a hard link ({info.st_nlink} names for one file); art-adr does not "
                           f"write through it: remove it (or choose another --out)")
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
        remove_empty_folders(self.created)

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


def check_layout(out: Path) -> None:
    """``RunError`` when a name the run writes is taken by something of another kind: ``checkpoints`` that is
    not a folder, or a folder where an output file goes (checked before any work, nothing written)."""
    ckpt_dir = out / "checkpoints"
    if ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise RunError(f"{ckpt_dir} is not a folder, but the run keeps its checkpoints there: move it away (or "
                       f"choose another --out)")
    for path in [out / name for name in RUN_OUTPUTS] + [ckpt_dir / name for name in CHECKPOINT_FILES]:
        if path.is_dir():
            raise RunError(f"{path} is a folder, but the run writes a file of that name: move it away (or choose "
                           f"another --out)")


def check_not_foreign(out: Path) -> None:
    """``RunError`` naming what ``out`` holds when it is a non-empty folder that is not a run directory (no
    ``config.yaml``): a new run writes only into a new or empty folder, never over a user's files. What a run
    leaves before its ``config.yaml`` (its lock, a killed write's temp file of ``config.yaml``) is ours."""
    if not out.is_dir() or (out / CONFIG_FILE).is_file():
        return
    ours = {RunLock.NAME}
    theirs = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if p.name not in ours
                    and not ((m := _TMP_NAME.match(p.name)) and m["name"] == CONFIG_FILE))
    if theirs:
        shown = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
        raise RunError(f"{out} is not a run directory (no {CONFIG_FILE}) and not empty: it holds {shown}; a new "
                       f"run is written only into a new or empty folder: choose another --out")


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


def git_commit() -> str | None:
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


ADR_ONLY_FIELDS = ("temperature", "interpolation")  # unused by a run trained without ADR


def config_diff(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Options that differ between two resolved configs, ignoring what cannot change the run: the device (it may
    change between invocations), the recipe's ``description`` (text) and, when neither trains with ADR, τ/λ (so
    a new default does not orphan them)."""
    no_adr = not saved.get("adr", True) and not now.get("adr", True)
    ignored = {"device", "description"} | (set(ADR_ONLY_FIELDS) if no_adr else set())
    saved, now = with_legacy_defaults(saved), with_legacy_defaults(now)
    return sorted(k for k in set(saved) | set(now) if k not in ignored and saved.get(k) != now.get(k))


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


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write(out / "metrics.jsonl", lambda tmp: Path(tmp).write_text(lines))
    write_csv(out / "metrics.csv", history)


def epoch_checkpoint(ckpt_dir: Path, epoch: int) -> Path:
    """Where ``save_every`` keeps the checkpoint of ``epoch``: ``checkpoints/epoch-NNNN.pt``."""
    return Path(ckpt_dir) / f"epoch-{int(epoch):04d}.pt"

"""Live views of a run's ``metrics.jsonl``: TensorBoard (``RUN/tb/``), Weights & Biases, MLflow.

``metrics.jsonl`` (rebuilt from ``checkpoints/last.pt`` on resume) is the source of truth; a logger writes each epoch
of that history to its backend **once**: TensorBoard reads back the (tag, step) pairs its event files already hold
and writes only the missing ones (after a kill and ``--resume``, the epochs the checkpoint has and the events lack),
rewriting the event files from the history when they hold a step the history does not; W&B and MLflow keep the
backend's run id and the last epoch logged in ``RUN/<name>.json``. Every backend package is optional and imported
only when its logger is opened: ``pip install "art-adr[tensorboard]"`` (``wandb``, ``mlflow``: install them).
A logger is a class registered at its definition in :data:`LOGGERS` with its package, install command and the mark
it leaves in a run directory; a new one is that one registration.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .registry import Registry

__all__ = ["LOGGERS", "LoggerError", "parse_loggers", "check_loggers", "run_loggers", "open_loggers", "Loggers",
           "TensorBoardLogger", "WandbLogger", "MlflowLogger", "scalars", "sync_run", "TB_DIR", "tb_tag",
           "BOOKKEEPING", "BOOKKEEPING_TAG", "logged_texts"]

TB_DIR = "tb"


class LoggerError(ValueError):
    """An unknown logger name, or a logger whose package is not installed."""


# the registry: each logger class ``(run_dir, config, name)`` registered at its definition with the ``package`` it
# needs, the ``install`` command that brings it, the ``mark`` it leaves in a run directory (a file or folder) and
# a one-line ``help`` (the --logger help texts)
LOGGERS: Registry[type[Any]] = Registry("logger", error=LoggerError)


def parse_loggers(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"tensorboard,wandb"`` (or a list) → ``("tensorboard", "wandb")``; ``None``, ``""`` or ``"none"`` → ``()``."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(n.strip() for n in items if n.strip() and n.strip() != "none"))
    bad = [n for n in names if n not in LOGGERS]
    if bad:
        raise LoggerError(f"logger must be a comma list of {', '.join(LOGGERS.names())}, got {bad[0]!r}")
    return names


def check_loggers(names: Iterable[str]) -> None:
    """``LoggerError`` naming the install command when a logger's package is missing (nothing is imported)."""
    for name in names:
        meta = LOGGERS.meta(name)
        if importlib.util.find_spec(meta["package"]) is None:
            raise LoggerError(f"--logger {name} needs the {meta['package']} package: {meta['install']}")


def run_loggers(run_dir: str | os.PathLike) -> tuple[str, ...]:
    """The loggers a run was followed with (part of the run: a resume keeps them), from what they left in its
    directory (each logger's registered ``mark``): ``tb/`` (tensorboard), ``wandb.json``, ``mlflow.json``."""
    return tuple(name for name in LOGGERS.names() if (Path(run_dir) / LOGGERS.meta(name)["mark"]).exists())


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of one history record (every key but ``epoch``), as floats."""
    return {k: float(v) for k, v in record.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}


# history counters that are bookkeeping, not measurements: TensorBoard shows them as text, not as curves
BOOKKEEPING = ("step", "best_epoch")
BOOKKEEPING_TAG = "bookkeeping"
_TIMES = ("seconds", "train_seconds", "images_per_s")


def tb_tag(key: str) -> str:
    """The TensorBoard tag of a history key, grouped: ``teacher/…`` (the EMA teacher's validation: ``teacher/
    clean_acc``), ``val/…`` (the student's: ``val/pgd_acc``), ``time/…`` (``seconds``, ``images_per_s``) and
    ``train/…`` (``loss``, ``lr``, τ/λ, ``train_robust_acc`` as ``train/robust_acc``, anything else)."""
    if key.startswith("teacher_"):
        return "teacher/" + key[len("teacher_"):]
    if key in _TIMES:
        return "time/" + key
    if key.startswith("train_"):
        return "train/" + key[len("train_"):]
    return ("val/" if key.endswith("_acc") else "train/") + key


def _epoch_records(history: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in history if isinstance(r.get("epoch"), int)]


@LOGGERS.register("tensorboard", package="tensorboard", install='pip install "art-adr[tensorboard]"', mark=TB_DIR,
                  help="events in the run directory's tb/")
class TensorBoardLogger:
    """Scalars of every history key (step = epoch) in ``<run_dir>/tb/``, tagged by :func:`tb_tag` (``train/…``,
    ``val/…``, ``teacher/…``, ``time/…``); the bookkeeping counters (``step``, ``best_epoch``) as one text entry per
    epoch (tag ``bookkeeping``); a table as text (``add_text``). Event files of earlier versions (flat tags) are
    rewritten from the history. ``config`` and ``name`` (the registry's common signature) are not used."""

    def __init__(self, run_dir: str | os.PathLike, config: dict[str, Any] | None = None,
                 name: str | None = None) -> None:
        check_loggers(["tensorboard"])
        self.dir = Path(run_dir) / TB_DIR
        self.logged = logged_scalars(self.dir)
        self.texts = logged_texts(self.dir).get(BOOKKEEPING_TAG, set())
        self._writer: Any = None

    def _open(self) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.dir))
        return self._writer

    def log_history(self, history: Sequence[dict[str, Any]]) -> None:
        """Write the (key, epoch) scalars of ``history`` that the event files do not hold yet."""
        records = _epoch_records(history)
        epochs = {r["epoch"] for r in records}
        if any(step not in epochs for steps in self.logged.values() for step in steps) or \
                any("/" not in tag for tag in self.logged):
            self._rebuild()  # epochs the history does not have (a run started again), or flat tags: start over
        new = [(tb_tag(k), v, r["epoch"]) for r in records for k, v in scalars(r).items()
               if k not in BOOKKEEPING and r["epoch"] not in self.logged.get(tb_tag(k), set())]
        notes = [(r["epoch"], ", ".join(f"{k} {r[k]}" for k in BOOKKEEPING if k in r)) for r in records
                 if r["epoch"] not in self.texts and any(k in r for k in BOOKKEEPING)]
        if not new and not notes:
            return
        writer = self._open()
        for tag, value, step in new:
            writer.add_scalar(tag, value, step)
            self.logged.setdefault(tag, set()).add(step)
        for step, text in notes:
            writer.add_text(BOOKKEEPING_TAG, text, step)
            self.texts.add(step)
        writer.flush()

    def _rebuild(self) -> None:
        self.close()
        for path in self.dir.glob("events.out.tfevents.*"):
            path.unlink()
        self.logged, self.texts = {}, set()

    def log_table(self, name: str, markdown: str, rows: Sequence[dict[str, Any]] = ()) -> None:
        writer = self._open()
        writer.add_text(name, markdown, 0)
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def logged_scalars(tb_dir: str | os.PathLike) -> dict[str, set[int]]:
    """``{tag: {steps}}`` of the scalar events in a TensorBoard directory's event files (a torn last record of a
    killed writer is skipped by the reader)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out: dict[str, set[int]] = {}
    for path in sorted(Path(tb_dir).glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.HasField("simple_value") or value.metadata.plugin_data.plugin_name == "scalars":
                    out.setdefault(value.tag, set()).add(int(event.step))
    return out


def logged_texts(tb_dir: str | os.PathLike) -> dict[str, set[int]]:
    """``{tag: {steps}}`` of the text events (``add_text``'s, tag without its ``/text_summary``)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out: dict[str, set[int]] = {}
    for path in sorted(Path(tb_dir).glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "text":
                    out.setdefault(value.tag.removesuffix("/text_summary"), set()).add(int(event.step))
    return out


class _State:
    """``<run_dir>/<name>.json``: the backend's run id and the last epoch logged to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = json.loads(path.read_text()) if path.is_file() else {}
        self.run_id: str | None = data.get("run_id")
        self.epoch: int = int(data.get("epoch", 0))

    def save(self) -> None:
        from .checkpoint import atomic_write

        text = json.dumps({"run_id": self.run_id, "epoch": self.epoch})
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))


@LOGGERS.register("wandb", package="wandb", install="pip install wandb", mark="wandb.json",
                  help="Weights & Biases, project $WANDB_PROJECT")
class WandbLogger:
    """A W&B run per run directory (its id in ``wandb.json``, resumed with ``resume="allow"``); project from
    ``$WANDB_PROJECT`` (default ``art-adr``), step = epoch."""

    def __init__(self, run_dir: str | os.PathLike, config: dict[str, Any] | None, name: str) -> None:
        check_loggers(["wandb"])
        import wandb

        self.wandb = wandb
        self.state = _State(Path(run_dir) / "wandb.json")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "art-adr"), name=name, id=self.state.run_id,
                              resume="allow", dir=str(run_dir), config=config or {})
        if self.state.run_id is None:
            self.state.run_id = str(self.run.id)
            self.state.save()

    def log_history(self, history: Sequence[dict[str, Any]]) -> None:
        for record in _epoch_records(history):
            if record["epoch"] > self.state.epoch:
                self.run.log(scalars(record), step=record["epoch"])
                self.state.epoch = record["epoch"]
                self.state.save()

    def log_table(self, name: str, markdown: str, rows: Sequence[dict[str, Any]] = ()) -> None:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        self.run.log({name: self.wandb.Table(columns=keys, data=[[r.get(k) for k in keys] for r in rows])})

    def close(self) -> None:
        self.run.finish()


@LOGGERS.register("mlflow", package="mlflow", install="pip install mlflow", mark="mlflow.json",
                  help="MLflow, at $MLFLOW_TRACKING_URI")
class MlflowLogger:
    """An MLflow run per run directory (its id in ``mlflow.json``; tracking URI from ``$MLFLOW_TRACKING_URI``),
    step = epoch; the config as parameters at the first start, a table as a Markdown artifact."""

    def __init__(self, run_dir: str | os.PathLike, config: dict[str, Any] | None, name: str) -> None:
        check_loggers(["mlflow"])
        import mlflow

        self.mlflow = mlflow
        self.state = _State(Path(run_dir) / "mlflow.json")
        fresh = self.state.run_id is None
        self.run = mlflow.start_run(run_id=self.state.run_id, run_name=None if self.state.run_id else name)
        if fresh:
            self.state.run_id = str(self.run.info.run_id)
            self.state.save()
            if config:
                mlflow.log_params({k: str(v)[:500] for k, v in config.items()})

    def log_history(self, history: Sequence[dict[str, Any]]) -> None:
        for record in _epoch_records(history):
            if record["epoch"] > self.state.epoch:
                self.mlflow.log_metrics(scalars(record), step=record["epoch"])
                self.state.epoch = record["epoch"]
                self.state.save()

    def log_table(self, name: str, markdown: str, rows: Sequence[dict[str, Any]] = ()) -> None:
        self.mlflow.log_text(markdown, f"{name}.md")

    def close(self) -> None:
        self.mlflow.end_run()


class Loggers:
    """The loggers of one run (or one benchmark/sweep folder), called together."""

    def __init__(self, loggers: Sequence[Any]) -> None:
        self.loggers = list(loggers)

    def log_history(self, history: Sequence[dict[str, Any]]) -> None:
        for logger in self.loggers:
            logger.log_history(history)

    def log_table(self, name: str, markdown: str, rows: Sequence[dict[str, Any]] = ()) -> None:
        for logger in self.loggers:
            logger.log_table(name, markdown, rows)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()

    def __enter__(self) -> Loggers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_loggers(names: Sequence[str], run_dir: str | os.PathLike, config: dict[str, Any] | None = None,
                 name: str | None = None) -> Loggers:
    """The loggers ``names`` (registered in :data:`LOGGERS`) of ``run_dir``, each opened as ``cls(run_dir, config,
    name)``; ``name`` labels the W&B / MLflow run (default: the directory's name)."""
    names = parse_loggers(names)
    check_loggers(names)
    label = name or Path(run_dir).resolve().name
    return Loggers([LOGGERS.get(n)(run_dir, config, label) for n in names])


def sync_run(run_dir: str | os.PathLike, names: Sequence[str], config: dict[str, Any] | None = None) -> None:
    """Bring the loggers of a (finished) run up to its ``metrics.jsonl`` (a no-op when they already hold it)."""
    if not names:
        return
    path = Path(run_dir) / "metrics.jsonl"
    history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    with open_loggers(names, run_dir, config) as loggers:
        loggers.log_history(history)

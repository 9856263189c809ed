"""Runs followed live: TensorBoard events in RUN/tb/ hold every epoch of metrics.jsonl exactly once, after a kill and
a resume too; W&B and MLflow adapters (stand-in modules) log each epoch once; missing packages are one Error: line."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from art_adr.cli import main
from art_adr.loggers import (
    BOOKKEEPING,
    LoggerError,
    MlflowLogger,
    TensorBoardLogger,
    WandbLogger,
    logged_texts,
    parse_loggers,
    scalars,
    tb_tag,
)

pytest.importorskip("tensorboard")


def _events(tb: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar event in a TensorBoard directory, read back as TensorBoard does (duplicates kept)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _drive(jobs: list) -> list[int]:
    """The kill harness of tests/test_recovery.py (forked `art-adr train` jobs), TensorBoard's writer imported once."""
    import os
    import subprocess

    from test_recovery import DRIVER

    driver = DRIVER.replace("import torch\n", "import torch\nimport torch.utils.tensorboard  # noqa: F401\n", 1)
    env = {k: v for k, v in os.environ.items() if k != "ART_ADR_KILL_AT"} | {"OMP_NUM_THREADS": "1"}
    payload = json.dumps([[args, kill, str(log)] for args, kill, log in jobs])
    proc = subprocess.run([sys.executable, "-c", driver, payload], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# (kill point, exit code): killed after last.pt, before the metrics and events of epoch 2 (the resume must add
# epoch 2 from the checkpoint); after the events of epoch 2 (the resume must not write them again); SIGTERM mid-epoch
KILLS = [pytest.param("after-last:2", -9), pytest.param("after-metrics:2", -9, marks=pytest.mark.slow),
         pytest.param("step:3:TERM", 143, marks=pytest.mark.slow)]


@pytest.mark.parametrize("kill,code", KILLS)
def test_tensorboard_holds_every_epoch_exactly_once_after_kill_and_resume(tmp_path, kill, code):
    from test_recovery import TINY

    log = ["--logger", "tensorboard"]
    run = tmp_path / "run"
    jobs = [(TINY + log + ["--out", str(run)], kill, tmp_path / "log"),  # killed, then resumed
            (["--out", str(run), "--resume", "-q"] + log, None, tmp_path / "log")]
    assert _drive(jobs) == [code, 0], (tmp_path / "log").read_text()[-2000:]
    kills = {kill: run}
    for spec, run in kills.items():
        history = _history(run)
        assert [r["epoch"] for r in history] == [1, 2, 3]
        events = _events(run / "tb")
        keys = {tb_tag(k): k for r in history for k in scalars(r) if k not in BOOKKEEPING}
        assert set(events) == set(keys), spec
        for tag, points in events.items():
            key = keys[tag]
            assert [s for s, _ in points] == [r["epoch"] for r in history if key in r], (spec, tag)
            assert [v for _, v in points] == pytest.approx([r[key] for r in history if key in r], rel=1e-6)
        assert logged_texts(run / "tb") == {"bookkeeping": {1, 2, 3}}, spec  # step, best_epoch: text, once


def test_a_resume_without_logger_keeps_the_runs_loggers_and_logger_none_drops_them(tmp_path):
    from test_recovery import TINY

    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", *TINY, "--logger", "tensorboard", "--stop-after-epochs", "1", "--out",
                                    str(run)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--stop-after-epochs", "1"])
    assert res.exit_code == 0 and "resuming with the run's loggers: tensorboard" in res.output, res.output
    assert {tag: [s for s, _ in points] for tag, points in _events(run / "tb").items()}["train/loss"] == [1, 2]
    res = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--logger", "none", "-q"])
    assert res.exit_code == 0 and "loggers" not in res.output, res.output
    assert [r["epoch"] for r in _history(run)] == [1, 2, 3]
    assert [s for s, _ in _events(run / "tb")["train/loss"]] == [1, 2]


def test_tensorboard_logger_appends_missing_epochs_and_rebuilds_on_foreign_ones(tmp_path):
    history = [{"epoch": e, "loss": 1.0 / e, "pgd_acc": 0.1 * e, "adr": True, "note": "x"} for e in (1, 2, 3)]
    logger = TensorBoardLogger(tmp_path)
    logger.log_history(history[:2])
    logger.log_history(history[:2])  # nothing new
    logger.close()
    again = TensorBoardLogger(tmp_path)  # a resumed process
    again.log_history(history)
    again.log_table("table1", "| a | b |\n|---|---|\n| 1 | 2 |")
    again.close()
    events = _events(tmp_path / "tb")
    assert set(events) == {"train/loss", "val/pgd_acc"} and [s for s, _ in events["train/loss"]] == [1, 2, 3]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert any(t.startswith("table1") for t in acc.Tags()["tensors"])
    # a history that does not hold the logged epochs (the run was started again): the events are rewritten
    restarted = [{"epoch": 1, "loss": 9.0}]
    TensorBoardLogger(tmp_path).log_history(restarted)
    assert _events(tmp_path / "tb") == {"train/loss": [(1, 9.0)]}


def _fake_module(name: str, monkeypatch: pytest.MonkeyPatch, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_wandb_and_mlflow_log_each_epoch_once_across_a_resume(tmp_path, monkeypatch):
    calls: list[tuple] = []

    class Run:
        def __init__(self, **kw):
            self.id = kw["id"] or "w1"
            calls.append(("init", kw["id"], kw["resume"], kw["name"]))

        def log(self, data, step=None):
            calls.append(("log", step, data.get("loss")))

        def finish(self):
            calls.append(("finish",))

    _fake_module("wandb", monkeypatch, init=lambda **kw: Run(**kw), Table=lambda **kw: kw)
    history = [{"epoch": e, "loss": float(e)} for e in (1, 2, 3)]
    for upto in (2, 3):
        w = WandbLogger(tmp_path / "w", {"lr": 0.1}, "run")
        w.log_history(history[:upto])
        w.close()
    assert [c[1] for c in calls if c[0] == "log"] == [1, 2, 3]
    assert [c[1:3] for c in calls if c[0] == "init"] == [(None, "allow"), ("w1", "allow")]

    mcalls: list[tuple] = []

    def start_run(run_id=None, run_name=None):
        mcalls.append(("start", run_id, run_name))
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id or "m1"))

    _fake_module("mlflow", monkeypatch, start_run=start_run, end_run=lambda: mcalls.append(("end",)),
                 log_params=lambda p: mcalls.append(("params", sorted(p))),
                 log_metrics=lambda d, step: mcalls.append(("metrics", step)),
                 log_text=lambda text, name: mcalls.append(("text", name)))
    for upto in (1, 3):
        m = MlflowLogger(tmp_path / "m", {"lr": 0.1}, "run")
        m.log_history(history[:upto])
        m.log_table("table1", "| x |", [])
        m.close()
    assert [c[1] for c in mcalls if c[0] == "metrics"] == [1, 2, 3]
    assert [c for c in mcalls if c[0] in ("start", "params")] == [("start", None, "run"), ("params", ["lr"]),
                                                                  ("start", "m1", None)]
    assert ("text", "table1.md") in mcalls


def test_missing_logger_packages_and_bad_names_are_one_error_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("wandb", "tensorboard")
                        else real(name, *a))
    for name, needle in (("wandb", "pip install wandb"), ("tensorboard", 'pip install "art-adr[tensorboard]"')):
        r = CliRunner().invoke(main, ["train", "--recipe", "fashion-mnist-at", "--out", str(tmp_path / "r"),
                                      "--logger", name, "-q"])  # -q: no status lines before the error
        assert r.exit_code == 2 and r.output.startswith("Error: ") and needle in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
    assert parse_loggers("tensorboard,none,tensorboard") == ("tensorboard",) and parse_loggers(None) == ()
    with pytest.raises(LoggerError, match="visdom"):
        parse_loggers("visdom")


def test_tensorboard_tags_are_grouped_and_bookkeeping_is_text(tmp_path):
    record = {"epoch": 1, "step": 40, "best_epoch": 1, "loss": 1.5, "train_robust_acc": 0.3, "lr": 0.1, "tau": 2.0,
              "clean_acc": 0.8, "pgd_acc": 0.4, "apgd_acc": 0.35, "teacher_clean_acc": 0.7, "teacher_apgd_acc": 0.3,
              "seconds": 3.0, "train_seconds": 2.0, "images_per_s": 100.0}
    logger = TensorBoardLogger(tmp_path)
    logger.log_history([record])
    logger.log_history([record])  # nothing new: neither curves nor text again
    logger.close()
    assert set(_events(tmp_path / "tb")) == {
        "train/loss", "train/robust_acc", "train/lr", "train/tau", "val/clean_acc", "val/pgd_acc", "val/apgd_acc",
        "teacher/clean_acc", "teacher/apgd_acc", "time/seconds", "time/train_seconds", "time/images_per_s"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    notes = acc.Tensors("bookkeeping/text_summary")
    assert [(e.step, e.tensor_proto.string_val[0].decode()) for e in notes] == [(1, "step 40, best_epoch 1")]


def test_flat_tags_of_earlier_versions_are_rewritten_grouped(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))  # what a run of an earlier version left
    writer.add_scalar("loss", 2.0, 1)
    writer.add_scalar("step", 10, 1)
    writer.close()
    TensorBoardLogger(tmp_path).log_history([{"epoch": 1, "loss": 2.0, "step": 10}, {"epoch": 2, "loss": 1.0}])
    assert _events(tmp_path / "tb") == {"train/loss": [(1, 2.0), (2, 1.0)]}

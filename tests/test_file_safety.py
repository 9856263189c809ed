"""Nothing outside our own files is written or deleted, no unusable checkpoint is kept (issue 17, §1)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from art_adr.checkpoint import CheckpointError, load_checkpoint, non_finite_weights, save_checkpoint
from art_adr.cli import main
from art_adr.runs import RunError, RunLock, remove_leftover_tmp

TINY = ["--dataset", "synthetic", "--set", "dataset_kwargs={n: 160, shape: [1, 8, 8], num_classes: 4}",
        "--val-size", "32", "--max-iter", "1", "--batch-size", "64", "--eps", "0.1", "--set", "eval_max_iter=1",
        "--arch", "small-cnn", "--set", "arch_kwargs={width: 4}", "-q"]


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(victim)
    with pytest.raises(RunError, match="symbolic link"):
        RunLock(run)
    assert victim.read_text() == "precious\n"
    assert (run / ".lock").is_symlink()


def test_a_hard_linked_lock_is_refused_and_the_linked_file_untouched(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    run = tmp_path / "run"
    run.mkdir()
    os.link(notes, run / ".lock")
    with pytest.raises(RunError, match="hard link"):
        RunLock(run)
    assert notes.read_text() == "my notes\n"


def test_train_into_a_folder_that_is_not_a_run_is_refused_and_its_files_kept(tmp_path):
    folder = tmp_path / "mine"
    (folder / "checkpoints").mkdir(parents=True)
    files = {folder / "metrics.csv": "a,b\n1,2\n", folder / "curves.png": "png", folder / "checkpoints" / "best.pt":
             "weights"}
    for path, text in files.items():
        path.write_text(text)
    res = _cli("train", *TINY, "--epochs", "1", "--out", str(folder))
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert str(folder) in res.output and "not a run directory" in res.output, res.output
    assert "checkpoints/, curves.png, metrics.csv" in res.output, res.output
    assert {p: p.read_text() for p in files} == files
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints", "curves.png", "metrics.csv"]


def test_resume_with_checkpoints_as_a_file_is_refused_before_any_work(tmp_path):
    out = tmp_path / "run"
    res = _cli("train", *TINY, "--epochs", "2", "--stop-after-epochs", "1", "--out", str(out))
    assert res.exit_code == 0, res.output
    shutil.rmtree(out / "checkpoints")
    (out / "checkpoints").write_text("not a folder")
    before = (out / "config.yaml").read_bytes()
    res = _cli("train", "--out", str(out), "--resume")
    assert res.exit_code == 2 and "checkpoints is not a folder" in res.output, res.output
    assert "training it from the first epoch" not in res.output
    assert (out / "config.yaml").read_bytes() == before


def test_a_fifo_lock_is_refused_without_hanging(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / ".lock")
    code = ("import sys; from art_adr.runs import RunLock, RunError\n"
            "try:\n    RunLock(sys.argv[1])\nexcept RunError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=300)
    assert "refused:" in out.stdout and "not a regular file" in out.stdout, out.stdout + out.stderr


def test_a_full_disk_while_locking_leaves_no_empty_lock(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError):
        RunLock(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(OSError):
        RunLock(tmp_path / "old")
    assert list((tmp_path / "old").iterdir()) == []


def test_only_our_own_temp_files_are_removed(tmp_path):
    ours = [tmp_path / ".config.yaml.123.0a1b2c3d.tmp", tmp_path / ".metrics.csv.9.ffffffff.tmp"]
    theirs = [tmp_path / ".thesis.tmp", tmp_path / ".config.yaml.tmp", tmp_path / ".notes.txt.1.0a1b2c3d.tmp",
              tmp_path / ".config.yaml.12.xyz.tmp"]
    for p in ours + theirs:
        p.write_text("x")
    removed = remove_leftover_tmp(tmp_path, ("config.yaml", "metrics.csv"))
    assert sorted(removed) == sorted(ours)
    assert all(p.exists() for p in theirs)


def test_train_benchmark_and_sweep_keep_a_foreign_folders_files_and_leave_nothing_on_failure(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / ".thesis.tmp").write_text("x")
    (folder / ".table1.md.1.0a1b2c3d.tmp").write_text("x")  # our name, but not a run directory of ours
    res = _cli("train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "nonexistent"), "--out",
               str(folder), "-q")
    assert res.exit_code == 2, res.output
    tiny = TINY[:TINY.index("--val-size")] + TINY[TINY.index("--val-size") + 2:]
    res = _cli("train", *tiny, "--set", "val_size=1000", "--out", str(folder))  # fails after the lock
    assert res.exit_code == 2, res.output
    assert (folder / ".thesis.tmp").exists() and (folder / ".table1.md.1.0a1b2c3d.tmp").exists()
    res = _cli("sweep", "--recipe", "fashion-mnist-at-adr", "--temperatures", "2", "--interpolations", "0.5",
               "--data-dir", str(tmp_path / "nonexistent"), "--out", str(folder), "-q")
    assert res.exit_code == 2, res.output
    res = _cli("benchmark", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "nonexistent"), "--out",
               str(folder), "-q")
    assert res.exit_code == 2, res.output
    # nothing of ours is left either (no empty runs/ folder)
    assert sorted(p.name for p in folder.iterdir()) == [".table1.md.1.0a1b2c3d.tmp", ".thesis.tmp"]


def _poison_bn_in_epoch(monkeypatch, epoch: int) -> None:
    """A train step that leaves ``inf`` in every BatchNorm ``running_var`` from ``epoch`` on, loss finite."""
    from art_adr.trainer import AdversarialTrainerADR

    step = AdversarialTrainerADR.train_step

    def poisoned(self, x, y):
        out = step(self, x, y)
        if self.epoch + 1 >= epoch:
            for m in self._raw.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_var.fill_(float("inf"))
        return out

    monkeypatch.setattr(AdversarialTrainerADR, "train_step", poisoned)


def test_non_finite_weights_are_never_checkpointed_and_last_finite_epoch_is_kept(tmp_path, monkeypatch):
    out = tmp_path / "run"
    _poison_bn_in_epoch(monkeypatch, 2)
    res = _cli("train", *TINY, "--epochs", "3", "--out", str(out))
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "non-finite" in res.output and "running_var" in res.output and "epoch 2" in res.output
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(out / "checkpoints" / name)
        assert ckpt["epoch"] == 1 and non_finite_weights(ckpt) == [], name
    assert not (out / "checkpoints" / "final.pt").exists()


def test_non_finite_checkpoints_are_refused_by_save_evaluate_and_export(tmp_path, monkeypatch):
    out = tmp_path / "run"
    res = _cli("train", *TINY, "--epochs", "1", "--out", str(out))
    assert res.exit_code == 0, res.output
    path = out / "checkpoints" / "best.pt"
    ckpt = torch.load(path, weights_only=True)
    name = next(k for k in ckpt["student"] if k.endswith("running_var"))
    ckpt["student"][name] = torch.full_like(ckpt["student"][name], float("inf"))
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(tmp_path / "x.pt", {k: v for k, v in ckpt.items() if k not in ("format", "version")})
    assert not (tmp_path / "x.pt").exists()
    torch.save(ckpt, path)  # as an older art-adr wrote it
    for args in (["evaluate", str(out), "--attacks", "clean", "--n-examples", "8"],
                 ["export", str(out), "--name", "X", "--out", str(tmp_path / "bundle"), "--external-numbers",
                  "--clean-acc", "50", "--autoattack-acc", "40", "--allow-partial", "--n-examples", "8"]):
        res = _cli(*args)
        assert res.exit_code == 2, res.output
        assert res.output.strip().splitlines()[-1].startswith("Error: ") and "non-finite" in res.output, res.output


def test_resume_of_a_last_pt_with_nan_weights_is_refused_up_front(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert _cli("train", *TINY, "--epochs", "2", "--stop-after-epochs", "1", "--out", str(out)).exit_code == 0
    last = out / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    name = next(k for k in ckpt["student"] if k.endswith("weight"))
    ckpt["student"][name] = torch.full_like(ckpt["student"][name], float("nan"))
    torch.save(ckpt, last)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    import art_adr.runs.train

    monkeypatch.setattr(art_adr.runs.train, "run_data", lambda config: pytest.fail("data loaded before the check"))
    res = _cli("train", "--out", str(out), "--resume")
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1].startswith("Error: "), res.output
    assert "non-finite" in res.output and "cannot be resumed" in res.output and name in res.output, res.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_torch_save_on_a_full_disk_is_an_oserror():
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    from art_adr.checkpoint import torch_save

    with pytest.raises(OSError) as info:
        torch_save({"w": torch.zeros(100_000)}, "/dev/full")
    assert info.value.errno == errno.ENOSPC


def _disk_full_for(module, monkeypatch) -> None:
    """Every file ``module`` opens for writing lands on /dev/full."""
    import builtins

    def full_open(path, mode="r", *args, **kwargs):
        return builtins.open("/dev/full" if "w" in mode else path, mode, *args, **kwargs)

    monkeypatch.setattr(module, "open", full_open, raising=False)


class _SmallDisk:
    """A file on a nearly full disk: the first ``room`` bytes are written, then every write fails with ENOSPC
    (torch's zip writer then fails closing the archive with ``RuntimeError: ... unexpected pos``)."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if n > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= n
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def _small_disk_for(module, monkeypatch, room: int = 20_000) -> None:
    import builtins

    def small_open(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        return _SmallDisk(f, room) if "w" in mode else f

    monkeypatch.setattr(module, "open", small_open, raising=False)


def test_a_disk_filling_up_during_a_checkpoint_is_one_disk_full_line_and_resume_finishes(tmp_path, monkeypatch):
    import art_adr.checkpoint

    out = tmp_path / "run"
    assert _cli("train", *TINY, "--epochs", "2", "--stop-after-epochs", "1", "--out", str(out)).exit_code == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    with monkeypatch.context() as m:
        _small_disk_for(art_adr.checkpoint, m)
        res = _cli("train", "--out", str(out), "--resume", "-q")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert res.output.startswith("Error: disk full") and "checkpoints/last.pt" in res.output, res.output
    assert "--resume" in res.output and "unexpected pos" not in res.output
    assert (out / "checkpoints" / "last.pt").read_bytes() == before and not list(out.rglob("*.tmp"))
    assert _cli("train", "--out", str(out), "--resume", "-q").exit_code == 0


def test_full_disk_during_checkpoint_and_export_is_one_error_line(tmp_path, monkeypatch):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    import art_adr.checkpoint
    from art_adr.data import model_inputs
    from art_adr.models import create_model

    out = tmp_path / "run"
    assert _cli("train", *TINY, "--epochs", "1", "--out", str(out)).exit_code == 0
    before = (out / "checkpoints" / "best.pt").read_bytes()
    c10 = tmp_path / "c10.pt"
    save_checkpoint(c10, {"model": {"arch": "preact-resnet18", "num_classes": 10, "dataset": "cifar10",
                                    "kwargs": {}}, "config": {},
                          "student": create_model("preact-resnet18", 10, **model_inputs("cifar10")).state_dict()})
    with monkeypatch.context() as m:
        _disk_full_for(art_adr.checkpoint, m)
        res = _cli("train", *TINY, "--epochs", "1", "--out", str(tmp_path / "run2"))
        assert res.exit_code == 2 and res.output.startswith("Error: disk full"), res.output
        assert "from scratch" in res.output  # config.yaml was written: --resume starts it again
        res = _cli("export", str(c10), "--name", "X", "--out", str(tmp_path / "bundle"), "--external-numbers",
                   "--clean-acc", "50", "--autoattack-acc", "40", "--device", "cpu")
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert res.output.startswith("Error: disk full") and "nothing was exported" in res.output, res.output
        _small_disk_for(art_adr.checkpoint, m)
        res = _cli("export", str(c10), "--name", "X", "--out", str(tmp_path / "bundle"), "--external-numbers",
                   "--clean-acc", "50", "--autoattack-acc", "40", "--device", "cpu")
        assert res.exit_code == 2 and res.output.startswith("Error: disk full"), res.output
    assert (out / "checkpoints" / "best.pt").read_bytes() == before
    assert not list(tmp_path.rglob("*.tmp")) and not (tmp_path / "bundle").exists()
    res = _cli("train", "--out", str(tmp_path / "run2"), "--resume", "-q")
    assert res.exit_code == 0, res.output


def test_the_resume_hint_offers_resume_only_where_something_can_be_resumed(tmp_path):
    from art_adr.runs import resume_hint

    assert "--resume" not in resume_hint(tmp_path) and "run the same command again" in resume_hint(tmp_path)
    (tmp_path / "config.yaml").write_text("epochs: 1\n")
    assert "--resume" in resume_hint(tmp_path)


def test_resume_of_a_finished_run_leaves_its_files_alone(tmp_path):
    out = tmp_path / "run"
    assert _cli("train", *TINY, "--epochs", "1", "--out", str(out)).exit_code == 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    res = _cli("train", "--out", str(out), "--resume")
    assert res.exit_code == 0 and "finished run" in res.output, res.output
    assert sorted(p for p in out.rglob("*") if p.is_file()) == files
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before

"""Interrupted runs: a kill harness (SIGKILL at every point of a run, then resume → bit-identical final.pt),
SIGTERM/Ctrl-C, one process per run directory, one-line CLI errors, file modes, RNG states across devices."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from art_adr.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from art_adr.cli import main
from art_adr.runs import KILL_POINTS, RunError, RunLock
from conftest import assert_same, metric_rows

TINY = ["--dataset", "synthetic", "--set", "dataset_kwargs={n: 320, shape: [1, 12, 12], num_classes: 4}",
        "--set", "arch_kwargs={in_channels: 1}", "--val-size", "64", "--max-iter", "2", "--batch-size", "64",
        "--eps", "0.1", "--eps-step", "0.05", "--set", "eval_max_iter=2", "--epochs", "3", "-q"]

# Runs `art-adr train` jobs in forked children of one process that imported torch once (a fresh interpreter
# per job would spend most of the test importing). Each job: [cli args, ART_ADR_KILL_AT or null, log file];
# prints the children's exit codes (-9 = SIGKILL) as JSON. The parent never computes, so forking is safe.
DRIVER = r"""
import json, os, signal, sys, traceback
# a shell without job control starts background jobs with SIGINT ignored, and Python keeps that: restore
# Ctrl-C so the "INT" kill points behave as they do in a terminal, however the tests were launched
signal.signal(signal.SIGINT, signal.default_int_handler)
import torch
torch.set_num_threads(1)
import io
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import art.estimators.classification  # noqa: F401
import art_adr.cli.train, art_adr.runs, art_adr.trainer  # noqa: F401
from art_adr.cli import main

torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)  # imports torch._dynamo (seconds) once
plt.plot([0, 1])  # loads matplotlib's fonts once
plt.savefig(io.BytesIO(), format="png")
plt.close("all")

codes = []
for args, kill, log in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        if kill:
            os.environ["ART_ADR_KILL_AT"] = kill
        code = 1
        try:
            main(["train", *args], prog_name="art-adr")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(codes))
"""


def _drive(jobs: list[tuple[list[str], str | None, Path]]) -> list[int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env.pop("ART_ADR_KILL_AT", None)
    payload = json.dumps([[args, kill, str(log)] for args, kill, log in jobs])
    proc = subprocess.run([sys.executable, "-c", DRIVER, payload], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# (kill point, exit code of the interrupted run, how it goes on: "resume" = --resume, "rerun" = same command)
SCENARIOS = [
    ("locked", -9, "rerun"),             # lock taken, nothing written: a stale lock file
    ("config", -9, "resume"),            # only config.yaml: --resume starts from scratch
    ("step:1", -9, "rerun"),             # mid first epoch, no checkpoint: the same command starts again
    ("validation:1", -9, "resume"),      # during the first validation
    ("epoch-end:2", -9, "resume"),       # epoch 2 trained and validated, nothing saved
    ("last-tmp:2", -9, "resume"),        # last.pt written to its temp file, not renamed
    ("after-last:1", -9, "resume"),      # last.pt saved, best.pt (epoch 1 is best) not
    ("best-tmp:1", -9, "resume"),        # best.pt half way (temp file)
    ("after-best:1", -9, "resume"),      # checkpoints saved, metrics.jsonl not yet
    ("after-metrics:2", -9, "resume"),   # metrics saved, plot stale
    ("after-plot:2", -9, "resume"),      # between epochs
    ("step:3", -9, "resume"),            # mid last epoch
    ("final-tmp:3", -9, "resume"),       # final.pt half way
    ("after-final:3", -9, "resume"),     # final.pt saved, lock still there
    ("step:2:TERM", 143, "resume"),      # SIGTERM mid-epoch: stops after the step, last.pt = epoch 1
    ("validation:2:TERM", 143, "resume"),  # SIGTERM during validation: stops after epoch 2's checkpoint
    ("validation:3:TERM", 143, "resume"),  # ... also in the last epoch (--resume then writes final.pt)
    ("validation:1:INT", 130, "rerun"),  # Ctrl-C before the first checkpoint
]


FAST = {"validation:1:INT", "after-last:1", "last-tmp:2", "step:2:TERM", "validation:3:TERM"}


def test_the_kill_harness_covers_every_point():
    assert {s[0].split(":")[0] for s in SCENARIOS} == set(KILL_POINTS)


@pytest.mark.parametrize("subset", ["fast", pytest.param("rest", marks=pytest.mark.slow)])
def test_kill_harness_every_interruption_resumes_bit_identical(tmp_path, subset):
    """Kill (or SIGTERM / Ctrl-C) a run at a point, go on as a user would, compare with an uninterrupted run."""
    scenarios = [s for s in SCENARIOS if (s[0] in FAST) == (subset == "fast")]
    ref = tmp_path / "ref"
    dirs = {spec: tmp_path / spec.replace(":", "-") for spec, _, _ in scenarios}
    first = [(TINY + ["--out", str(ref)], None, tmp_path / "ref.log")]
    first += [(TINY + ["--out", str(d)], spec, d.with_suffix(".log")) for spec, d in dirs.items()]
    codes = _drive(first)
    assert codes[0] == 0, (tmp_path / "ref.log").read_text()
    for (spec, code, _), got in zip(scenarios, codes[1:]):
        assert got == code, (spec, dirs[spec].with_suffix(".log").read_text()[-2000:])

    # what the kills left behind (the states a resume must repair)
    ck = {spec: d / "checkpoints" for spec, d in dirs.items()}
    if subset == "fast":
        assert list(ck["last-tmp:2"].glob(".last.pt.*.tmp"))
        assert load_checkpoint(ck["last-tmp:2"] / "last.pt")["epoch"] == 1
        assert (ck["after-last:1"] / "last.pt").is_file() and not (ck["after-last:1"] / "best.pt").exists()
        assert load_checkpoint(ck["step:2:TERM"] / "last.pt")["epoch"] == 1
        term_log = dirs["step:2:TERM"].with_suffix(".log").read_text()
        assert "stopped by SIGTERM" in term_log and "--resume" in term_log and "Traceback" not in term_log
        assert load_checkpoint(ck["validation:3:TERM"] / "last.pt")["epoch"] == 3
        assert not (ck["validation:3:TERM"] / "final.pt").exists()
        int_log = dirs["validation:1:INT"].with_suffix(".log").read_text()
        assert "interrupted" in int_log and "last.pt" not in int_log and "no checkpoint yet" in int_log
    else:
        assert (dirs["locked"] / ".lock").is_file() and not (dirs["locked"] / "config.yaml").exists()
        assert not (dirs["after-best:1"] / "metrics.jsonl").exists()
        assert load_checkpoint(ck["validation:2:TERM"] / "last.pt")["epoch"] == 2

    second = []
    for spec, _, how in scenarios:
        args = TINY + ["--out", str(dirs[spec])] if how == "rerun" else ["--out", str(dirs[spec]), "--resume", "-q"]
        second.append((args, None, dirs[spec].with_suffix(".log")))
    for (spec, _, _), got in zip(scenarios, _drive(second)):
        assert got == 0, (spec, dirs[spec].with_suffix(".log").read_text()[-2000:])

    final, best = load_checkpoint(ref / "checkpoints" / "final.pt"), load_checkpoint(ref / "checkpoints" / "best.pt")
    rows = metric_rows(ref / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for spec, d in dirs.items():
        assert_same(final, load_checkpoint(d / "checkpoints" / "final.pt"), spec)
        assert_same(best, load_checkpoint(d / "checkpoints" / "best.pt"), spec)
        assert metric_rows(d / "metrics.jsonl") == rows, spec
        assert len((d / "metrics.csv").read_text().splitlines()) == 4, spec
        assert (d / "curves.png").stat().st_size > 0 and (d / "config.yaml").is_file(), spec
        assert not list(d.rglob("*.tmp")) and not (d / ".lock").exists(), spec


def _base_run(tmp_path: Path) -> Path:
    """A run stopped after epoch 1 of 2 (last.pt, no final.pt), made in-process."""
    out = tmp_path / "base"
    result = CliRunner().invoke(main, ["train", *TINY, "--epochs", "2", "--stop-after-epochs", "1", "--out",
                                       str(out)])
    assert result.exit_code == 0, result.output
    return out


def _fails_cleanly(args: list[str], *needles: str) -> str:
    result = CliRunner().invoke(main, args)
    # `train` first says what it is doing (status lines); what follows them is the one error line
    assert "Traceback" not in result.output and "Error: " in result.output, result.output
    out = result.output[result.output.index("Error: "):]
    assert result.exit_code == 2, out
    assert len(out.strip().splitlines()) == 1, out
    for needle in needles:
        assert needle in out, (needle, out)
    return out


def test_broken_run_files_are_one_line_errors_and_resume_survives_a_device_change(tmp_path):
    base = _base_run(tmp_path)

    def copy(name: str) -> Path:
        return Path(shutil.copytree(base, tmp_path / name))

    garbled = copy("garbled")
    (garbled / "config.yaml").write_text("epochs: [1, 2\nlr: 0.1\n")
    _fails_cleanly(["train", "--out", str(garbled), "--resume"], "config.yaml", "not a valid run config")
    (garbled / "config.yaml").write_text("- just\n- a list\n")
    _fails_cleanly(["train", "--out", str(garbled), "--resume"], "not a valid run config")

    corrupt = copy("corrupt")
    (corrupt / "checkpoints" / "last.pt").write_bytes(b"\x00garbage")
    _fails_cleanly(["train", "--out", str(corrupt), "--resume"], "last.pt", "not a readable checkpoint")

    wrong = copy("wrong")
    state = load_checkpoint(wrong / "checkpoints" / "last.pt")
    state["student"].pop(next(iter(state["student"])))
    save_checkpoint(wrong / "checkpoints" / "last.pt", state)
    _fails_cleanly(["train", "--out", str(wrong), "--resume"], "does not fit this run")

    short = copy("short")
    state = load_checkpoint(short / "checkpoints" / "last.pt")
    state["history"] = []
    save_checkpoint(short / "checkpoints" / "last.pt", state)
    _fails_cleanly(["train", "--out", str(short), "--resume"], "inconsistent")

    # extending a run is refused with how to start a new one
    longer = CliRunner().invoke(main, ["train", "--out", str(base), "--resume", "--epochs", "5"])
    assert longer.exit_code == 2 and "Traceback" not in longer.output
    assert "cannot be extended" in longer.output and "start a new run" in longer.output

    # a run saved with --device cpu resumes with --device auto (a GPU node resuming a CPU run: same path)
    result = CliRunner().invoke(main, ["train", "--out", str(base), "--resume", "--device", "auto", "-q"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(base / "checkpoints" / "final.pt")["epoch"] == 2


def test_divergence_and_disk_full_are_one_line_errors(tmp_path, monkeypatch):
    import art_adr.runs.train
    from art_adr.trainer import AdversarialTrainerADR

    def full(path: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    out = tmp_path / "full"
    with monkeypatch.context() as m:
        m.setattr(art_adr.runs.train, "save_checkpoint", full)
        _fails_cleanly(["train", *TINY, "--epochs", "1", "--out", str(out)], "disk full", "--resume")
    assert not list(out.rglob("*.tmp")) and not (out / ".lock").exists()
    result = CliRunner().invoke(main, ["train", "--out", str(out), "--resume", "-q"])  # space freed: goes on
    assert result.exit_code == 0, result.output

    def nan_step(self: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(float("nan")), torch.zeros((), dtype=torch.long)

    monkeypatch.setattr(AdversarialTrainerADR, "train_step", nan_step)
    out = _fails_cleanly(["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "nan")], "non-finite",
                         "lower --lr", "no finite epoch was saved")
    assert "fit()" not in out  # the API's restore note is not shown on the command line


def test_one_process_per_run_directory(tmp_path, monkeypatch):
    out = tmp_path / "busy"
    with RunLock(out):  # another live process (here: this one) holds the directory
        _fails_cleanly(["train", *TINY, "--out", str(out)], "in use by another art-adr", str(os.getpid()))
        assert "config.yaml" not in os.listdir(out)
        _fails_cleanly(["benchmark", "--dataset", "fashion-mnist", "--out", str(out), "-q"], "in use")
    assert not out.exists()  # released (and the empty directory it made removed)

    # a lock file left by a dead process is stale; a live holder on this host is not (also without flock)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    out.mkdir()
    (out / RunLock.NAME).write_text(f"{int(dead.stdout)} {socket.gethostname()}\n")
    with RunLock(out):
        pass
    import fcntl

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    (out / RunLock.NAME).write_text(f"{int(dead.stdout)} {socket.gethostname()}\n")
    RunLock(out).release()
    (out / RunLock.NAME).write_text(f"{os.getppid()} {socket.gethostname()}\n")
    with pytest.raises(RunError, match="in use"):
        RunLock(out)


def test_outputs_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("x"))
        save_checkpoint(tmp_path / "c.pt", {"student": {}, "model": {}})
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o640
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("y"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644 and not list(tmp_path.glob(".*.tmp"))


def _trainer(make_classifier: Any) -> Any:
    from art_adr.trainer import AdversarialTrainerADR

    return AdversarialTrainerADR(make_classifier(), eps=0.1, eps_step=0.05, max_iter=1, verbose=False, seed=3)


def test_rng_states_restore_only_into_matching_devices(make_classifier, monkeypatch, recwarn):
    a = _trainer(make_classifier)
    torch.rand(3, generator=a.generator)
    state = a.state_dict()
    assert state["rng"]["attack_device"] == "cpu" and state["rng"]["cuda"] == []

    b = _trainer(make_classifier)  # same device: exact
    b.load_state_dict(state)
    assert torch.equal(b.generator.get_state(), a.generator.get_state())
    assert not [w for w in recwarn.list if issubclass(w.category, RuntimeWarning)]

    # a CUDA (Philox, 16-byte) attack-generator state, as saved by a GPU run, resumed on the CPU
    gpu_state = {**state, "rng": {**state["rng"], "attack": torch.zeros(16, dtype=torch.uint8),
                                  "attack_device": "cuda", "cuda": [torch.zeros(16, dtype=torch.uint8)]}}
    for rng in (gpu_state["rng"], {k: v for k, v in gpu_state["rng"].items() if k != "attack_device"}):
        c = _trainer(make_classifier)
        with pytest.warns(RuntimeWarning, match="saved on cuda"):
            c.load_state_dict({**gpu_state, "rng": rng})
        ref = torch.Generator().manual_seed(c.seed + c.step)
        assert torch.equal(c.generator.get_state(), ref.get_state())

    # on cuda:1 only this device's CUDA state is restored; a run saved on one GPU warns instead of crashing
    calls = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device=None: calls.append((s, device)))
    d = _trainer(make_classifier)
    d.device = torch.device("cuda", 1)
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(3)]
    d.load_state_dict({**state, "rng": {**state["rng"], "cuda": states}})
    assert len(calls) == 1 and torch.equal(calls[0][0], states[1]) and calls[0][1] == 1
    assert calls[0][0].device.type == "cpu"
    with pytest.warns(RuntimeWarning, match="no CUDA RNG state was saved for cuda:1"):
        d.load_state_dict({**state, "rng": {**state["rng"], "cuda": states[:1]}})
    assert len(calls) == 1


def test_last_finite_restore_on_rank_above_0_keeps_its_own_generator_silently(make_classifier, recwarn):
    """After a divergence, a DDP rank > 0 restores its own in-memory snapshot: its own attack-generator state,
    without the "attack generator states were saved for 1 process(es)" warning meant for checkpoints."""
    t = _trainer(make_classifier)
    t.rank, t.world_size = 1, 2  # as under torchrun (the restore itself uses no collective)
    torch.rand(5, generator=t.generator)
    t.loop.snapshot_if_finite()
    mine = t.generator.get_state().clone()
    torch.rand(7, generator=t.generator)
    assert "restored to the start of epoch 1" in t.loop.restore_last_finite()
    assert torch.equal(t.generator.get_state(), mine)
    assert not [w for w in recwarn.list if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in recwarn]
    # a checkpoint without per-rank states still warns on rank 1 (it continues from rank 0's)
    with pytest.warns(RuntimeWarning, match=r"saved for 1 process\(es\), this run has 2 \(rank 1 continues"):
        t.load_state_dict(_trainer(make_classifier).state_dict())
    # a 2-process checkpoint resumed by one process (fewer GPUs): rank 0's state, with a warning
    two = _trainer(make_classifier).state_dict()
    other = torch.Generator().manual_seed(99).get_state()
    two["rng"]["attack_ranks"] = [two["rng"]["attack"], other]
    one = _trainer(make_classifier)
    with pytest.warns(RuntimeWarning, match=r"saved for 2 process\(es\), this run has 1"):
        one.load_state_dict(two)
    assert torch.equal(one.generator.get_state(), two["rng"]["attack"])
    t.load_state_dict(two)  # 2 → 2 processes: rank 1 gets its own state, silently
    assert torch.equal(t.generator.get_state(), other)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="gloo on Linux")
def test_two_process_ddp_stop_and_resume_is_exact(tmp_path):
    """Ranks seed their attack generators apart: last.pt keeps every rank's state, so DDP resumes exactly."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ART_ADR_KILL_AT", None)

    def torchrun(port: int, *args: str) -> None:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
               "-m", "art_adr.cli", "train", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    straight, split = tmp_path / "straight", tmp_path / "split"
    torchrun(29541, *TINY, "--epochs", "2", "--out", str(straight))
    torchrun(29542, *TINY, "--epochs", "2", "--out", str(split), "--stop-after-epochs", "1")
    assert len(load_checkpoint(split / "checkpoints" / "last.pt")["rng"]["attack_ranks"]) == 2
    torchrun(29543, "--out", str(split), "--resume", "-q")
    assert_same(load_checkpoint(straight / "checkpoints" / "final.pt"),
                load_checkpoint(split / "checkpoints" / "final.pt"))

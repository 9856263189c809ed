"""Many runs at once: benchmark and sweep runs as `art-adr train --out RUN_DIR --resume` jobs, on local GPUs
(subprocesses with CUDA_VISIBLE_DEVICES) or through submitit (SLURM's sbatch script, requeue after SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from art_adr import launch
from art_adr.checkpoint import load_checkpoint
from art_adr.cli import main
from art_adr.experiments.table1 import plan_runs
from art_adr.launch import Launcher, LaunchError, launch_runs, prepare_run
from art_adr.runs import RunLock, config_diff, load_run_config
from conftest import assert_same, metric_rows

pytest.importorskip("submitit")

TINY = ["--epochs", "1", "--subset", "192", "--n-examples", "24", "--set", "max_iter=2", "--set", "val_size=64",
        "--set", "eval_max_iter=2", "--set", "arch_kwargs={width: 4}", "--attacks", "pgd", "--which", "student",
        "--device", "cpu", "-q"]
OVERRIDES = {"epochs": 1, "subset": 192, "max_iter": 2, "val_size": 64, "eval_max_iter": 2, "arch_kwargs": {"width": 4},
             "device": "cpu", "seed": 0}
RECIPES = ["fashion-mnist-at", "fashion-mnist-at-adr"]


def _script(path: Path, text: str) -> Path:
    path.write_text("#!" + sys.executable + "\n" + textwrap.dedent(text))
    path.chmod(0o755)
    return path


def _fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, states: dict[str, str] | None = None) -> Path:
    """`srun`, `sbatch` (keeps every script it is given, answers job ids 4242, 4243, ...) and `sacct` (answers
    `states`) on PATH: submitit then runs its own SLURM code path, without a cluster."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "sbatch"
    log.mkdir(exist_ok=True)
    _script(bin_dir / "srun", "")
    _script(bin_dir / "sbatch", f"""
        import shutil, sys
        from pathlib import Path
        n = len(list(Path({str(log)!r}).glob("*.sh")))
        shutil.copy(sys.argv[1], Path({str(log)!r}) / f"{{n}}.sh")
        print(f"Submitted batch job {{4242 + n}}")
    """)
    (tmp_path / "sacct.json").write_text(json.dumps(states or {}))
    _script(bin_dir / "sacct", f"""
        import json
        states = json.load(open({str(tmp_path / "sacct.json")!r}))
        print("JobID|State|NodeList")
        for job, state in states.items():
            print(f"{{job}}|{{state}}|node1")
    """)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    from submitit.slurm.slurm import SlurmJob

    SlurmJob.watcher.clear()
    return log


def test_slurm_launcher_sbatch_script_one_train_job_per_run_and_rerun_submits_only_unfinished(tmp_path, monkeypatch):
    log = _fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "bm"
    args = ["benchmark", "--recipes", ",".join(RECIPES), "--out", str(out), *TINY, "--launcher", "slurm",
            "--slurm-partition", "gpu-long", "--gpus-per-run", "2", "--timeout-min", "90",
            "--slurm-array-parallelism", "1", "--set-slurm", "qos=high", "--set-slurm", "cpus_per_task=8",
            "--set-slurm", "mem_gb=32", "--logger", "tensorboard", "--no-wait"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "2 run(s) not finished yet" in r.output and "rerun the same command" in r.output
    scripts = sorted(log.glob("*.sh"))
    assert len(scripts) == 1  # one job array of two jobs
    lines = set(scripts[0].read_text().splitlines())
    assert {"#SBATCH --partition=gpu-long", "#SBATCH --gpus-per-node=2", "#SBATCH --time=90",
            "#SBATCH --array=0-1%1", "#SBATCH --qos=high", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB",
            "#SBATCH --signal=USR2@90", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1"} <= lines, lines
    assert any("-m submitit.core._submit" in line and line.startswith("srun") for line in lines)

    from submitit.core.utils import DelayedSubmission

    records = json.loads((out / "submitit" / "jobs.json").read_text())
    assert sorted(records.values()) == ["4242_0", "4242_1"]
    plans = {p.config.recipe: p.config for p in plan_runs(None, recipes=RECIPES, overrides=OVERRIDES)}
    for run_dir, job_id in records.items():
        job = DelayedSubmission.load(out / "submitit" / job_id / f"{job_id}_submitted.pkl").function
        # exactly `art-adr train --out RUN_DIR --resume` of the run's resolved config, written before submitting
        assert job.argv() == [sys.executable, "-m", "art_adr.cli", "train", "--out", run_dir, "--resume",
                              "--logger", "tensorboard", "-q"]
        saved = load_run_config(run_dir)
        assert config_diff(saved.to_dict(), plans[saved.recipe].to_dict()) == [] and saved.device == "cpu"
        assert not (Path(run_dir) / "checkpoints").exists()

    # rerun while both jobs are queued/running: nothing is submitted again
    at, adr = (str(out / "runs" / f"{name}-s0") for name in RECIPES)
    (tmp_path / "sacct.json").write_text(json.dumps({"4242_0": "RUNNING", "4242_1": "PENDING"}))
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0 and "2 run(s) not finished yet" in r.output and len(list(log.glob("*.sh"))) == 1
    # the AT run finished; the ADR job failed: only the ADR run is submitted again, on its own
    (out / "runs" / f"{RECIPES[0]}-s0" / "checkpoints").mkdir()
    (out / "runs" / f"{RECIPES[0]}-s0" / "checkpoints" / "final.pt").write_bytes(b"")
    (tmp_path / "sacct.json").write_text(json.dumps({"4242_0": "COMPLETED", "4242_1": "FAILED"}))
    from submitit.slurm.slurm import SlurmJob

    SlurmJob.watcher.clear()
    with RunLock(adr, "train"):  # ... unless a process holds its lock: then it is being trained, not submitted
        r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0 and "1 run(s) not finished yet" in r.output and len(list(log.glob("*.sh"))) == 1
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0 and "1 run(s) not finished yet" in r.output
    scripts = sorted(log.glob("*.sh"))
    assert len(scripts) == 2 and "#SBATCH --array" not in scripts[1].read_text()
    assert json.loads((out / "submitit" / "jobs.json").read_text()) == {at: "4242_0", adr: "4243"}


def test_slurm_failures_are_one_line_saying_what_slurm_answered(tmp_path, monkeypatch):
    args = ["benchmark", "--recipes", RECIPES[0], "--out", str(tmp_path / "bm"), *TINY, "--launcher", "slurm",
            "--no-wait"]
    (tmp_path / "empty").mkdir()
    with monkeypatch.context() as m:
        m.setenv("PATH", str(tmp_path / "empty"))
        r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert r.output.startswith("Error: --launcher slurm:") and "srun" in r.output, r.output
    _fake_slurm(tmp_path, monkeypatch)
    for answer, needle in (("sys.stderr.write('sbatch: error: invalid partition name'); sys.exit(1)",
                            "sbatch refused the job(s) of 1 run(s): sbatch: error: invalid partition name"),
                           ("print('the queue is on holiday')", "sbatch gave no job id")):
        _script(tmp_path / "bin" / "sbatch", f"import sys\n{answer}\n")
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        assert r.output.startswith("Error: ") and needle in r.output, r.output


def test_gpu_ids_are_checked_against_the_gpus_torch_sees(monkeypatch):
    monkeypatch.setattr(launch, "gpu_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    launch.check_gpus(("0", "1", "GPU-8a1b"))
    with pytest.raises(LaunchError, match="device 2 asked for, but torch sees only 2"):
        launch.check_gpus(("1", "2"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # this shell's two GPUs, by their ids
    launch.check_gpus(("2", "3"))
    monkeypatch.setattr(launch, "gpu_count", lambda: 0)
    with pytest.raises(LaunchError, match="torch sees no CUDA GPU"):
        launch.check_gpus(("0",))


def test_launcher_option_errors_are_one_line(tmp_path):
    base = ["benchmark", "--recipes", RECIPES[0], "--out", str(tmp_path / "x"), "-q"]
    for extra, needle in ((["--launcher", "slurm", "--gpus", "0,1"], "--gpus is for --launcher local"),
                          (["--slurm-partition", "gpu"], "need --launcher slurm"),
                          (["--no-wait"], "--no-wait needs --launcher slurm"),
                          (["--gpus", ","], "--gpus takes a comma list"),
                          (["--logger", "visdom"], "logger must be a comma list"),
                          (["--jobs", "2", "--gpus", "0"], "--jobs N (N >= 1) is for --launcher local without"),
                          (["--launcher", "slurm", "-j", "2"], "--jobs N (N >= 1) is for --launcher local"),
                          (["--gpus", "garbage"], "--gpus: 'garbage' is not a device id"),
                          (["--gpus", "0"] if not torch.cuda.is_available() else ["--gpus", "99"],
                           "torch sees no CUDA GPU" if not torch.cuda.is_available() else "torch sees only")):
        r = CliRunner().invoke(main, base + extra)
        assert r.exit_code == 2 and r.output.startswith("Error: ") and needle in r.output, (extra, r.output)
        assert len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["sweep", "--recipe", RECIPES[1], "--temperatures", "2", "--interpolations", "0.5",
                                  "--out", str(tmp_path / "s"), "--gpus", "garbage", "-q"])
    assert r.exit_code == 2 and "--gpus: 'garbage' is not a device id" in r.output, r.output
    with pytest.raises(LaunchError, match="--set-slurm"):
        launch.make_executor(tmp_path / "s", Launcher("slurm", cluster="local", slurm={"colour": "red"}), "x")
    with pytest.raises(LaunchError, match="cuda:N"):
        config = plan_runs(None, recipes=RECIPES[:1], overrides={**OVERRIDES, "device": "cuda:1"})[0].config
        launch_runs([(tmp_path / "r", config)], Launcher(gpus=("0", "1")), tmp_path)
    with pytest.raises(LaunchError, match="--jobs trains on the CPU"):
        config = plan_runs(None, recipes=RECIPES[:1], overrides={**OVERRIDES, "device": "cuda"})[0].config
        launch_runs([(tmp_path / "r", config)], Launcher(jobs=2), tmp_path)
    with pytest.raises(LaunchError, match="N >= 1"):
        Launcher(jobs=-1).validate()


def test_job_threads_share_the_cores_unless_omp_num_threads_is_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [launch.job_threads(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert launch.job_threads(2) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert launch.job_threads(2) == 4
    assert Launcher(jobs=2).validate().in_process is False and Launcher().in_process is True


# a stand-in for `art-adr train` that records what it got, waits until every run has started (so they must run
# at the same time), and leaves a finished run
FAKE_TRAIN = """
    import json, os, sys, time
    from pathlib import Path
    args = sys.argv[1:]
    run = Path(args[args.index("--out") + 1])
    record = Path({record!r})
    (record / (run.name + ".json")).write_text(json.dumps({{"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                                            "omp": os.environ.get("OMP_NUM_THREADS"),
                                                            "args": args}}))
    for _ in range(600):
        if len(list(record.glob("*.json"))) >= {expected}:
            break
        time.sleep(0.05)
    else:
        sys.exit(3)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "final.pt").write_bytes(b"")
"""


def test_local_gpus_run_one_run_per_device_at_the_same_time(tmp_path, monkeypatch):
    record = tmp_path / "record"
    record.mkdir()
    fake = _script(tmp_path / "fake_train", FAKE_TRAIN.format(record=str(record), expected=2))
    monkeypatch.setattr(launch, "TRAIN_COMMAND", [str(fake)])
    plans = plan_runs(None, recipes=RECIPES + ["fashion-mnist-trades"], overrides=OVERRIDES)
    runs = [(tmp_path / "out" / "runs" / p.config.recipe, p.config) for p in plans]
    left = launch_runs(runs, Launcher(gpus=("3", "5")), tmp_path / "out", loggers=["tensorboard"], verbose=False,
                       command="test")
    assert left == []
    got = {p.stem: json.loads(p.read_text()) for p in record.glob("*.json")}
    assert sorted(got) == sorted(p.config.recipe for p in plans)
    # the first two started together, one per device; the third took the device the first to end gave back
    assert {got[RECIPES[0]]["cuda"], got[RECIPES[1]]["cuda"]} == {"3", "5"}
    assert got["fashion-mnist-trades"]["cuda"] in ("3", "5")
    for (run_dir, config) in runs:
        assert got[run_dir.name]["args"] == ["--out", str(run_dir), "--resume", "--logger", "tensorboard", "-q"]
        assert load_run_config(run_dir).to_dict() == config.to_dict()
    assert (tmp_path / "out" / "logs" / f"{RECIPES[0]}.log").is_file()


def test_local_jobs_run_n_cpu_jobs_at_the_same_time_with_no_gpu_visible(tmp_path, monkeypatch):
    record = tmp_path / "record"
    record.mkdir()
    fake = _script(tmp_path / "fake_train", FAKE_TRAIN.format(record=str(record), expected=2))
    monkeypatch.setattr(launch, "TRAIN_COMMAND", [str(fake)])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launch, "job_threads", lambda jobs: 7 * jobs)
    plans = plan_runs(None, recipes=RECIPES + ["fashion-mnist-trades"], overrides={**OVERRIDES, "device": "auto"})
    runs = [(tmp_path / "out" / "runs" / p.config.recipe, p.config) for p in plans]
    assert launch_runs(runs, Launcher(jobs=2), tmp_path / "out", verbose=False, command="test") == []
    got = {p.stem: json.loads(p.read_text()) for p in record.glob("*.json")}
    assert sorted(got) == sorted(p.config.recipe for p in plans)  # two at once (each waits for the other), then one
    assert all(g["cuda"] == "" and g["omp"] == "14" for g in got.values())
    assert all(g["args"] == ["--out", str(r), "--resume", "-q"] for (r, _), g in zip(runs, map(got.get, RECIPES)))


# a stand-in for `art-adr train` under submitit: the first attempt stops as a SIGTERM'd run does (exit 143, its
# checkpoint kept), the requeued one must come with --resume and finishes the run
FAKE_PREEMPTED = """
    import os, signal, sys
    from pathlib import Path
    args = sys.argv[1:]
    run = Path(args[args.index("--out") + 1])
    attempts = run / "attempts"
    with attempts.open("a") as f:
        f.write(" ".join(args) + "\\n")
    if len(attempts.read_text().splitlines()) == 1:
        sys.exit(128 + signal.SIGTERM)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "final.pt").write_bytes(b"")
"""


def test_submitit_job_stopped_by_sigterm_is_requeued_with_resume(tmp_path, monkeypatch):
    fake = _script(tmp_path / "fake_train", FAKE_PREEMPTED)
    monkeypatch.setattr(launch, "TRAIN_COMMAND", [str(fake)])
    plans = plan_runs(None, recipes=RECIPES, overrides=OVERRIDES)
    runs = [(tmp_path / "out" / "runs" / p.config.recipe, p.config) for p in plans]
    left = launch_runs(runs, Launcher("slurm", cluster="local", poll_s=0.1), tmp_path / "out", verbose=False)
    assert left == []
    for run_dir, _ in runs:
        attempts = (run_dir / "attempts").read_text().splitlines()
        assert attempts == [f"--out {run_dir} --resume -q"] * 2
    logs = "".join(p.read_text() for p in (tmp_path / "out" / "submitit").rglob("*_log.*"))
    assert logs.count("Requeued job") == 2 and "Calling checkpoint method" in logs


def test_prepare_run_refuses_a_run_directory_with_other_options(tmp_path):
    config = plan_runs(None, recipes=RECIPES[:1], overrides=OVERRIDES)[0].config
    assert prepare_run(tmp_path / "r", config, "test") and (tmp_path / "r" / "config.yaml").is_file()
    assert prepare_run(tmp_path / "r", config, "test")  # the same run: fine
    other = plan_runs(None, recipes=RECIPES[:1], overrides={**OVERRIDES, "epochs": 2})[0].config
    with pytest.raises(ValueError, match="other options"):
        prepare_run(tmp_path / "r", other, "test")
    with RunLock(tmp_path / "r", "train"):
        assert not prepare_run(tmp_path / "r", config, "test")


def test_submitit_and_tensorboard_are_imported_only_when_asked_for():
    code = ("import sys; from art_adr.cli import main\n"
            "import art_adr.launch, art_adr.loggers, art_adr.experiments, art_adr.cli.launch_options\n"
            "for cmd in ('train', 'benchmark', 'sweep'):\n"
            "    try:\n        main([cmd, '--help'])\n    except SystemExit:\n        pass\n"
            "print('IMPORTED', [m for m in ('submitit', 'tensorboard', 'wandb', 'mlflow') if m in sys.modules])")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "IMPORTED []" in proc.stdout, proc.stdout[-500:]


def _same_checkpoint(a: dict, b: dict, where: str = "") -> None:
    import torch

    timing = {"seconds", "train_seconds", "images_per_s"}
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) - timing == set(b) - timing, where
        for k in set(a) - timing:
            _same_checkpoint(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same_checkpoint(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


@pytest.mark.slow
def test_benchmark_through_submitit_requeued_after_sigterm_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    """Two runs as submitit (local executor) jobs; each gets SIGTERM after epoch 2 of 3, stops at its checkpoint,
    is requeued with --resume and ends with the final.pt of an uninterrupted `art-adr train` of its config."""
    import subprocess

    from art_adr.checkpoint import load_checkpoint
    from art_adr.experiments.table1 import run_benchmark

    overrides = {**OVERRIDES, "epochs": 3}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ref = tmp_path / "ref"
    config = plan_runs(None, recipes=RECIPES[1:], overrides=overrides)[0].config
    prepare_run(ref, config, "test")
    subprocess.run([*launch.TRAIN_COMMAND, "--out", str(ref), "--resume", "-q"], check=True, timeout=900)

    monkeypatch.setenv("ART_ADR_KILL_AT", "epoch-end:2:TERM")  # in the jobs: SIGTERM once epoch 2 is trained
    out = tmp_path / "bm"
    result = run_benchmark(None, out, recipes=RECIPES, overrides=overrides, n_examples=24, attacks=("clean", "pgd"),
                           models=("student",), launcher=Launcher("slurm", cluster="local", poll_s=0.5),
                           verbose=False)
    assert [r["method"] for r in result["rows"]] == ["AT", "AT + ADR"] and (out / "table1.md").is_file()
    logs = "".join(p.read_text() for p in (out / "submitit").rglob("*_log.*"))
    assert logs.count("Requeued job") == 2 and logs.count("stopped by SIGTERM") == 2
    run_dir = out / "runs" / f"{RECIPES[1]}-s0"
    _same_checkpoint(load_checkpoint(ref / "checkpoints" / "final.pt"),
                     load_checkpoint(run_dir / "checkpoints" / "final.pt"))
    assert [json.loads(x)["epoch"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


@pytest.mark.slow
def test_sweep_two_by_one_through_submitit_local_executor(tmp_path):
    from art_adr.experiments.sweep import run_sweep

    out = tmp_path / "sw"
    result = run_sweep("fashion-mnist-at-adr", out, temperatures=[1.5, 2.5], interpolations=[0.7],
                       overrides={k: v for k, v in OVERRIDES.items() if k != "seed"},
                       launcher=Launcher("slurm", cluster="local", poll_s=0.5), loggers=["tensorboard"],
                       verbose=False)
    assert result["unfinished"] == [] and len(result["cells"]) == 2 and (out / "sweep.json").is_file()
    records = json.loads((out / "submitit" / "jobs.json").read_text())
    assert sorted(Path(r).name for r in records) == ["tau1.5-1_lam0.7-1_s0", "tau2.5-2_lam0.7-1_s0"]
    from art_adr.loggers import logged_scalars

    for run in records:
        assert logged_scalars(Path(run) / "tb")["val/pgd_acc"] == {1}
    assert (out / "tb").is_dir()


# a stand-in for `art-adr train` that trains until SIGTERM, then stops as a run does (exit 143, noting it)
FAKE_LONG = """
    import signal, sys, time
    from pathlib import Path
    args = sys.argv[1:]
    run = Path(args[args.index("--out") + 1])
    signal.signal(signal.SIGTERM, lambda *a: (run.joinpath("stopped").write_text("TERM"), sys.exit(143)))
    run.joinpath("started").write_text("")
    for _ in range(1200):
        time.sleep(0.05)
"""

PARENT = """
import sys
from pathlib import Path
from art_adr import launch
from art_adr.experiments.table1 import plan_runs
launch.TRAIN_COMMAND = [sys.argv[1]]
out = Path(sys.argv[2])
runs = [(out / "runs" / p.config.recipe, p.config) for p in plan_runs(None, recipes={recipes!r}, overrides={o!r})]
try:
    launch.launch_runs(runs, launch.Launcher(gpus=("0", "1")), out, verbose=False)
except launch.LaunchInterrupted as exc:
    print(exc)
    sys.exit(128 + exc.signum)
"""


def test_sigterm_to_the_parent_stops_every_local_job_at_its_checkpoint(tmp_path):
    import subprocess
    import time

    fake = _script(tmp_path / "fake_train", FAKE_LONG)
    out = tmp_path / "out"
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(recipes=RECIPES, o=OVERRIDES), str(fake),
                               str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = [out / "runs" / name for name in RECIPES]
    for _ in range(1200):  # both children running (the parent imports torch first: up to a minute when busy)
        if all((r / "started").is_file() for r in runs) or parent.poll() is not None:
            break
        time.sleep(0.1)
    parent.send_signal(signal.SIGTERM)
    stdout, stderr = parent.communicate(timeout=120)
    assert parent.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stdout and "rerun the same command" in stdout
    assert all((r / "stopped").read_text() == "TERM" for r in runs)


@pytest.mark.slow
def test_benchmark_cli_with_local_gpus_trains_real_runs_one_per_device(tmp_path, monkeypatch):
    record = tmp_path / "record"
    record.mkdir()
    wrapper = _script(tmp_path / "train_on_device", f"""
        import json, os, sys
        from pathlib import Path
        args = sys.argv[1:]
        name = Path(args[args.index("--out") + 1]).name
        Path({str(record)!r}, name + ".json").write_text(json.dumps(os.environ.get("CUDA_VISIBLE_DEVICES")))
        os.execv(sys.executable, [sys.executable, "-m", "art_adr.cli", "train", *args])
    """)
    monkeypatch.setattr(launch, "TRAIN_COMMAND", [str(wrapper)])
    monkeypatch.setattr(launch, "gpu_count", lambda: 2)  # the jobs train on the CPU (--device cpu)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "bm"
    r = CliRunner().invoke(main, ["benchmark", "--recipes", ",".join(RECIPES), "--out", str(out), *TINY,
                                  "--launcher", "local", "--gpus", "0,1", "--logger", "tensorboard"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "| AT + ADR |" in r.output and (out / "table1.md").is_file() and (out / "tb").is_dir()
    got = {p.stem: json.loads(p.read_text()) for p in record.glob("*.json")}
    assert sorted(got.values()) == ["0", "1"] and sorted(got) == sorted(f"{n}-s0" for n in RECIPES)
    for name in RECIPES:
        assert (out / "runs" / f"{name}-s0" / "tb").is_dir() and (out / "logs" / f"{name}-s0.log").is_file()


def _numbers(out: Path) -> tuple[list[dict], dict[str, list[dict]]]:
    """table1.json's per-seed rows (without the run paths) and every run's metrics.jsonl rows (without timings)."""
    rows = [{k: v for k, v in r.items() if k != "run"} for r in json.loads((out / "table1.json").read_text())["rows"]]
    return rows, {f.parent.name: metric_rows(f) for f in sorted((out / "runs").glob("*/metrics.jsonl"))}


def test_benchmark_with_jobs_gives_the_numbers_of_the_in_process_benchmark(tmp_path, monkeypatch):
    import torch

    from art_adr.experiments import table1

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    warmed = []
    real_warm = table1.warm_evaluations
    monkeypatch.setattr(table1, "warm_evaluations", lambda tasks, jobs, verbose: warmed.append(len(tasks)) or
                        real_warm(tasks, jobs, verbose))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the jobs (OMP_NUM_THREADS=1)
    try:
        args = ["benchmark", "--recipes", ",".join(RECIPES), *TINY, "--which", "both"]
        serial = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "serial")], catch_exceptions=False)
        jobs = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "jobs"), "--jobs", "2"],
                                  catch_exceptions=False)
    finally:
        torch.set_num_threads(threads)
    assert serial.exit_code == 0 and jobs.exit_code == 0, (serial.output, jobs.output)
    assert warmed == [4]  # 2 runs × (student, teacher), evaluated by two CPU workers
    assert _numbers(tmp_path / "jobs") == _numbers(tmp_path / "serial")
    table = [o.split("\n| Method")[1].split("\n\n")[0] for o in (jobs.output, serial.output)]
    assert table[0] == table[1] and "| AT + ADR | teacher |" in table[0]
    for name in RECIPES:
        assert_same(*(load_checkpoint(tmp_path / o / "runs" / f"{name}-s0" / "checkpoints" / "final.pt")
                      for o in ("jobs", "serial")), name)
    assert (tmp_path / "jobs" / "logs" / f"{RECIPES[0]}-s0.log").is_file()

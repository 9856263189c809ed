"""The GPU suite's bare host, simulated on CPU (issue 24 §1): a Python that holds only torch (with its declared
runtime dependencies), numpy, scipy and pip, gets the wheel set of ``benchmarks/gpu_requirements.txt`` for this
interpreter (``benchmarks/gpu_wheels.sh --python X.Y``, the same pins) installed by ``benchmarks/gpu_suite.sh
--install-only`` (the suite's own install code), then runs with ``python -P`` what the suite runs: a tiny
``art-adr train`` → ``--resume`` → ``evaluate``, pytest's collection of the CUDA tests and ``throughput.py
--preset tiny``. A second, cheap host lacks one wheel (cloudpickle, which joblib needs) and must fail loudly.

The wheels are downloaded once into ``$ART_ADR_WHEEL_CACHE`` (default ``~/.cache/art-adr/gpu-wheels-cpXY``).
The real host has Python 3.12; this one is the interpreter running the tests (torch for another Python is not
at hand), which is why the wheel set is fetched per interpreter.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from bare_venv import clean_env, closure, make_bare_python
from bare_venv import norm as _norm

ROOT = Path(__file__).resolve().parents[1]
BASE_DISTRIBUTIONS = ("torch", "numpy", "scipy", "pip")  # what the lent GPU machines have (pip: the installer)
TAG = f"{sys.version_info.major}.{sys.version_info.minor}"
WHEELS = Path(os.environ.get("ART_ADR_WHEEL_CACHE",
                             Path.home() / ".cache" / "art-adr" / f"gpu-wheels-cp{TAG.replace('.', '')}"))
DROPPED = "cloudpickle"  # the wheel the second host lacks


def base_closure(names: tuple[str, ...] = BASE_DISTRIBUTIONS) -> list[md.Distribution]:
    """The installed distributions ``names`` and, recursively, their declared runtime requirements (markers
    evaluated for this interpreter, no extras); a declared requirement that is not installed is left out."""
    return closure(names)


def _env(site: Path) -> dict[str, str]:
    return clean_env(PYTHONPATH=str(site))


def install(python: Path, wheels: Path, site: Path) -> subprocess.CompletedProcess:
    """``gpu_suite.sh --install-only``: the suite's own install of ``wheels`` and of this tree into ``site``."""
    env = {**_env(site), "PYTHON": str(python), "GPU_SUITE_SITE": str(site), "OUT": str(site.parent / "suite-out")}
    env.pop("PYTHONPATH")
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--install-only", "--wheels",
                           str(wheels)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def run(python: Path, site: Path, *args: str, safe_path: bool = True) -> subprocess.CompletedProcess:
    """``python -P ARGS`` in the tree (art_adr from ``site``, not ./art_adr); a script runs as the suite runs it,
    without ``-P``: its own folder (benchmarks/) first on sys.path, the tree's root not on it."""
    flags = ["-P"] if safe_path else []
    return subprocess.run([str(python), *flags, *args], cwd=ROOT, env=_env(site), capture_output=True, text=True,
                          timeout=600)


def _wheel_set() -> Path:
    """The pinned wheels for this interpreter (gpu_wheels.sh downloads only what the cache folder lacks)."""
    proc = subprocess.run(["bash", "benchmarks/gpu_wheels.sh", str(WHEELS), "--python", TAG], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"gpu_wheels.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return WHEELS


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    wheels = _wheel_set()
    root = tmp_path_factory.mktemp("host")
    python = make_bare_python(root / "venv", base_closure())
    return python, wheels, root


def _ok(proc: subprocess.CompletedProcess, what: str) -> str:
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


TRAIN = ["-m", "art_adr.cli", "train", "--dataset", "synthetic",
         "--set", "dataset_kwargs={n: 192, shape: [3, 16, 16], num_classes: 4}", "--set", "arch_kwargs={width: 8}",
         "--val-size", "32", "--max-iter", "1", "--batch-size", "32", "--eps", "8/255", "--set", "eval_max_iter=1",
         "--device", "cpu", "-q"]


@pytest.mark.slow
def test_the_bare_host_is_bare(host):
    python, _, root = host
    proc = run(python, root / "nothing", "-c", "import sklearn")
    assert proc.returncode != 0 and "No module named 'sklearn'" in proc.stderr  # system site-packages are out
    _ok(run(python, root / "nothing", "-c", "import torch, numpy, scipy, pip"), "the base imports")


@pytest.mark.slow
def test_suite_installs_and_runs_on_a_host_with_only_torch_numpy_scipy(host):
    python, wheels, root = host
    site = root / "site"
    t0 = time.perf_counter()
    host_json = root / "host.json"  # the suite's first step, before anything is installed (no packaging yet)
    _ok(run(python, root / "nothing", "benchmarks/gpu_host_check.py", str(wheels), "--out", str(host_json)),
        "gpu_host_check.py")
    checks = {c["check"]: c for c in json.loads(host_json.read_text())["checks"]}
    assert checks["pip"]["ok"] and checks["numpy"]["ok"] and checks["scipy"]["ok"], checks
    assert "required by" in checks["numpy"]["detail"] and checks["torch"]["ok"], checks
    _ok(install(python, wheels, site), "gpu_suite.sh --install-only")
    where = _ok(run(python, site, "-c", "import art_adr, art, sklearn; print(art_adr.__file__)"), "imports")
    assert where.strip().startswith(str(site)), where  # the installed art-adr, not the tree's
    out = root / "run"
    _ok(run(python, site, *TRAIN, "--epochs", "2", "--stop-after-epochs", "1", "--out", str(out)), "train")
    _ok(run(python, site, "-m", "art_adr.cli", "train", "--out", str(out), "--resume", "--device", "cpu", "-q"),
        "train --resume")
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    _ok(run(python, site, "-m", "art_adr.cli", "evaluate", str(out), "--attacks", "clean,pgd", "--n-examples", "32",
            "--eval-max-iter", "2", "--device", "cpu", "--out", str(root / "ev"), "-q"), "evaluate")
    assert json.loads((root / "ev" / "evaluation.json").read_text())["models"]
    collected = _ok(run(python, site, "-m", "pytest", "-q", "-m", "cuda", "--collect-only", "-p", "no:cacheprovider",
                        "tests/test_cuda.py"), "pytest --collect-only of the CUDA tests")
    summary = collected.strip().splitlines()[-1]  # "16 tests collected in 0.06s"; errors would be named here
    assert re.fullmatch(r"\d+ tests collected in .*", summary) and int(summary.split()[0]) >= 16, collected[-2000:]
    thr = root / "throughput.json"
    _ok(run(python, site, "benchmarks/throughput.py", "--preset", "tiny", "--device", "cpu", "--threads", "1",
            "--quiet", "--out", str(thr), safe_path=False), "throughput.py --preset tiny")
    rows = json.loads(thr.read_text())["configs"][0]["rows"]
    assert {r["row"] for r in rows} >= {"ours-at", "art-madry", "plain-pgd-at"}
    print(f"simulated host: install + train + resume + evaluate + collect + throughput in "
          f"{time.perf_counter() - t0:.0f} s")


@pytest.mark.slow
def test_a_missing_wheel_fails_the_host_loudly(host):
    """The same install without the cloudpickle wheel: ``art-adr train`` stops naming the missing module."""
    python, wheels, root = host
    fewer = root / f"wheels-without-{DROPPED}"
    fewer.mkdir()
    dropped = [w for w in wheels.glob("*.whl") if _norm(w.name).startswith(f"{DROPPED}-")]
    assert len(dropped) == 1, sorted(p.name for p in wheels.glob("*.whl"))
    for w in wheels.glob("*.whl"):
        if w not in dropped:
            (fewer / w.name).symlink_to(w)
    site = root / "site-fewer"
    install(python, fewer, site)  # the suite's install says nothing of a wheel that is not there
    proc = run(python, site, *TRAIN, "--epochs", "1", "--out", str(root / "fewer-run"))
    assert proc.returncode != 0
    assert f"No module named '{DROPPED}'" in proc.stdout + proc.stderr, proc.stderr[-3000:]


def test_base_closure_follows_declared_requirements():
    names = {_norm(d.metadata["Name"]) for d in base_closure(("scipy",))}
    assert names == {"scipy", "numpy"}
    torch_deps = {_norm(d.metadata["Name"]) for d in base_closure(("torch",))}
    assert {"torch", "sympy", "networkx", "jinja2", "filelock", "fsspec", "typing-extensions"} <= torch_deps
    assert not torch_deps & {"scikit-learn", "joblib", "click", "matplotlib"}
    assert sysconfig.get_paths()["purelib"]


def test_a_run_without_matplotlib_skips_its_curves_with_a_note(tmp_path, monkeypatch, capsys):
    from art_adr.config import RunConfig
    from art_adr.runs import curves

    history = [{"epoch": 1, "loss": 1.0, "train_robust_acc": 0.1, "clean_acc": 0.5, "pgd_acc": 0.2}]
    monkeypatch.setattr(curves, "have_matplotlib", lambda: False)
    curves.plot_run(tmp_path, history, RunConfig(val_attack="pgd"))
    assert not (tmp_path / "curves.png").exists()
    assert capsys.readouterr().err.strip().splitlines() == [
        f"note: {tmp_path / 'curves.png'} not drawn: matplotlib is not installed (metrics.jsonl has the numbers)"]
    monkeypatch.undo()
    curves.plot_run(tmp_path, history, RunConfig(val_attack="pgd"))  # with matplotlib: drawn
    assert (tmp_path / "curves.png").is_file()


def test_sanity_plots_and_table_curves_are_skipped_without_matplotlib(tmp_path, monkeypatch, capsys):
    from art_adr.evaluation import write_sanity_plots
    from art_adr.experiments.table1 import write_table
    from art_adr.runs import curves

    monkeypatch.setattr(curves, "have_matplotlib", lambda: False)
    result = {"eps_curve": {"eps": [1 / 255], "accuracy": [50.0], "steps": 10},
              "steps_curve": {"steps": [10], "accuracy": [50.0], "eps": 8 / 255}, "plots": {}}
    assert write_sanity_plots(result, tmp_path, "student") == {} and not list(tmp_path.glob("*.png"))
    written = write_table([], {}, tmp_path, "synthetic", {})
    assert "png" not in written and written["json"].is_file() and not (tmp_path / "curves.png").exists()
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 2 and all("matplotlib is not installed" in n for n in notes)

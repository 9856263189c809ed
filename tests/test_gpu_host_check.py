"""``benchmarks/gpu_host_check.py`` (issue 24 §2): the GPU suite's first step reports what the host lacks and
names the steps it cannot run, on fake hosts made with monkeypatch and temporary folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import gpu_host_check as hc  # noqa: E402


def _wheel(folder: Path, name: str, *requires: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}-1.0-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-1.0.dist-info/METADATA", meta)
    return path


def _checks(report: dict) -> dict[str, dict]:
    return {c["check"]: c for c in report["checks"]}


@pytest.fixture
def good_host(monkeypatch, tmp_path):
    """A host with everything: a compiler, Python.h, an H100, plenty of disk."""
    include = tmp_path / "include"
    include.mkdir()
    (include / "Python.h").write_text("")
    paths = {"include": str(include)}
    monkeypatch.setattr(hc.sysconfig, "get_paths", lambda: paths)
    monkeypatch.setattr(hc.shutil, "which", lambda c: f"/usr/bin/{c}" if c in ("cc", "gcc") else None)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 2**30))
    monkeypatch.setattr(hc.shutil, "disk_usage", lambda p: types.SimpleNamespace(free=50 * 2**30))
    _wheel(tmp_path / "whl", "needs-numpy", "numpy>=1.25", "scipy>=1.10; python_version >= '3.0'",
           "numpy>=99; extra == 'docs'")
    return tmp_path


def test_a_complete_host_runs_every_step(good_host):
    report = hc.check_host(good_host / "whl", good_host / "site")
    checks = _checks(report)
    assert report["ok"] and report["skip"] == {}, report
    assert checks["gpu"]["name"] == "NVIDIA H100 80GB HBM3" and checks["gpu"]["memory_gib"] == 80.0
    assert "required by 1 wheels" in checks["numpy"]["detail"]  # the docs extra's numpy>=99 does not count
    assert checks["torch"]["ok"] and "recompile_limit" in checks["torch"]["detail"]


def test_without_a_compiler_or_python_h_the_compiled_steps_are_skipped(good_host, monkeypatch):
    monkeypatch.setattr(hc.shutil, "which", lambda c: None)
    report = hc.check_host(good_host / "whl", good_host / "site")
    assert not _checks(report)["c-compiler"]["ok"]
    assert set(report["skip"]) == {"tests-compiled", "throughput-compiled"}
    assert "no C compiler" in report["skip"]["tests-compiled"]
    (good_host / "include" / "Python.h").unlink()
    monkeypatch.setenv("CC", "clang-17")
    monkeypatch.setattr(hc.shutil, "which", lambda c: "/opt/clang-17" if c == "clang-17" else None)
    report = hc.check_host(good_host / "whl", good_host / "site")
    assert _checks(report)["c-compiler"]["detail"] == "/opt/clang-17"
    assert "no Python.h" in report["skip"]["throughput-compiled"]


def test_numpy_older_than_a_wheel_needs_is_named(good_host):
    _wheel(good_host / "whl", "future-thing", "numpy>=99")
    report = hc.check_host(good_host / "whl", good_host / "site")
    numpy = _checks(report)["numpy"]
    assert not numpy["ok"] and "future-thing-1.0-py3-none-any.whl needs numpy>=99" in numpy["detail"]
    assert not report["ok"] and report["skip"] == {}  # reported; the steps run (and say what fails)


def test_torch_without_the_names_compile_needs_skips_the_compiled_steps(good_host, monkeypatch):
    monkeypatch.setattr(torch._dynamo, "config", types.SimpleNamespace(cache_size_limit=8))  # torch 2.5
    report = hc.check_host(good_host / "whl", good_host / "site")
    assert not _checks(report)["torch"]["ok"]
    assert "torch >= 2.6" in report["skip"]["tests-compiled"]
    assert hc.torch_floor() == "2.6"


def test_no_gpu_no_pip_and_little_disk_are_reported(good_host, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hc.shutil, "disk_usage", lambda p: types.SimpleNamespace(free=2**29))
    find_spec = hc.importlib.util.find_spec
    monkeypatch.setattr(hc.importlib.util, "find_spec", lambda n, *a: None if n == "pip" else find_spec(n, *a))
    report = hc.check_host(good_host / "whl", good_host / "site")
    checks = _checks(report)
    assert not checks["pip"]["ok"] and "cannot install" in checks["pip"]["detail"]
    assert not checks["disk"]["ok"] and checks["disk"]["free_gib"] == 0.5
    assert set(report["skip"]) == set(hc.GPU_STEPS) and set(report["skip"].values()) == {"no CUDA GPU"}


def test_the_suite_records_the_host_and_skips_what_it_cannot_run(tmp_path):
    """The real gpu_suite.sh on this CPU machine: the host step is recorded, every GPU step is skipped with the
    reason (not failed), suite.json is written, and the exit code says that nothing could run."""
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "OUT": str(tmp_path / "o"),
           "GPU_SUITE_SITE": str(tmp_path / "site")}
    proc = subprocess.run(["bash", str(BENCH / "gpu_suite.sh"), "--wheels", str(tmp_path / "none")], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    suite = json.loads((tmp_path / "o" / "suite.json").read_text())
    assert suite["host"]["skip"]["tests"] == "no CUDA GPU" and _checks(suite["host"])["c-compiler"]
    assert set(suite["steps"]) == {"tests", "throughput", "tests-compiled", "throughput-compiled"}
    assert all(s["skipped"] and s["reason"] == "no CUDA GPU" for s in suite["steps"].values())
    assert suite["ok"] and set(suite["skipped"]) == set(suite["steps"]) and "NCCL" in suite["never_run"]


def test_summary_merges_both_test_steps_both_throughput_files_and_the_skips(tmp_path):
    import gpu_summary

    def xml(name: str, *cases: tuple[str, str | None]) -> None:
        body = "".join(f'<testcase name="{c}" time="1.5">' + (f'<{k} message="m"/>' if k else "") + "</testcase>"
                       for c, k in cases)
        (tmp_path / name).write_text(f"<testsuites><testsuite>{body}</testsuite></testsuites>")

    xml("cuda-tests.xml", ("cycle[bf16]", None), ("cycle[bf16-apgd]", "failure"))
    xml("cuda-tests-compiled.xml", ("graphs[trades-reduce-overhead]", None), ("cycle[compile]", "skipped"))
    row = {"row": "ours-at-adr", "images_per_s": 1.0, "ms_per_batch": 1.0, "epoch_s": 1.0}
    config = {"name": "c", "arch": "resnet18", "amp": "bf16", "channels_last": True, "compile": False}
    (tmp_path / "throughput.json").write_text(json.dumps({"configs": [{"config": config, "rows": [row]}]}))
    compiled = {**config, "name": "c-ro", "compile": "reduce-overhead"}
    (tmp_path / "throughput-compiled.json").write_text(json.dumps({"configs": [{"config": compiled,
                                                                                 "rows": [row]}]}))
    stats = {"student forward": {"graphs": 5, "cudagraph_skips": 2}, "teacher forward": {"cudagraph_skips": 0}}
    (tmp_path / "cuda-graphs-trades-reduce-overhead.json").write_text(json.dumps({"stats": stats}))
    (tmp_path / "cuda-compile-reduce-overhead.json").write_text(json.dumps({"cudagraph_skips": 1, "history": []}))
    (tmp_path / "host.json").write_text(json.dumps({"skip": {"tests-compiled": "no C compiler"}}))
    steps = {"tests": {"exit_code": 1}, "throughput": {"exit_code": 0},
             "tests-compiled": {"exit_code": None, "skipped": True, "reason": "no C compiler"}}
    s = gpu_summary.summarize(tmp_path, steps)
    assert s["cuda_tests"]["counts"] == {"passed": 2, "failed": 1, "skipped": 1}
    assert [r["config"] for r in s["throughput_rows"]] == ["c", "c-ro"]
    assert s["cudagraph_skips"] == {"trades-reduce-overhead: student forward": 2,
                                    "trades-reduce-overhead: teacher forward": 0,
                                    "cycle compile-reduce-overhead": 1}  # a cycle named compile-...: a cycle
    assert set(s["cycles"]) == {"compile-reduce-overhead"} and set(s["compile"]) == {"trades-reduce-overhead"}
    assert s["skipped"] == {"tests-compiled": "no C compiler"} and s["host"]["skip"]
    assert not s["ok"]  # the failed tests step; the host-skipped step alone would not fail the suite
    assert gpu_summary.summarize(tmp_path, {k: v for k, v in steps.items() if k != "tests"})["ok"]

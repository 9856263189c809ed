"""The GPU suite's time caps rest on counted compilations (issue 24 §3): each compiled step's Dynamo graphs,
counted on CPU with ``backend="eager"`` (Dynamo's tracing, guards and recompiles, no code generation: the graphs
Inductor compiles on the GPU), must equal what ``benchmarks/gpu_suite.sh`` sizes its caps from (``COMPILES``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch._dynamo.utils import counters

import art_adr.compiling as compiling

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
# the CUDA cycles' arguments on CPU: the same batch (128, static), fewer and smaller images
CPU_SYNTH = ["--dataset", "synthetic", "--set", "dataset_kwargs={n: 320, shape: [3, 16, 16], num_classes: 10}",
             "--val-size", "64", "--max-iter", "1", "--batch-size", "128", "--eps", "8/255", "--eps-step", "2/255",
             "--set", "eval_max_iter=1", "--val-attack", "margin", "--device", "cpu", "-q"]


def suite_compiles() -> dict[str, int]:
    """``COMPILES`` of gpu_suite.sh: the graphs each compiled step compiles."""
    text = SUITE.read_text()
    found = re.search(r"^declare -A COMPILES=\((.*?)\)", text, re.M)
    assert found, "gpu_suite.sh declares no COMPILES"
    return {k: int(v) for k, v in re.findall(r"\[([\w-]+)\]=(\d+)", found.group(1))}


@pytest.fixture
def count_graphs(monkeypatch):
    monkeypatch.setattr(compiling, "BACKEND", "eager")
    torch._dynamo.reset()
    start = counters["stats"]["unique_graphs"]
    return lambda: counters["stats"]["unique_graphs"] - start


def _invoke(args: list[str]) -> None:
    from art_adr.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def cycle_graphs(name: str, out: Path) -> None:
    """The compiled cycle ``name`` of tests/test_cuda.py, train → resume → evaluate, on CPU."""
    import test_cuda

    args = [a for a in test_cuda.CYCLES[name] if a != "--channels-last"]  # graphs alike; NHWC is slow on CPU
    _invoke(["train", *CPU_SYNTH, *args, "--epochs", "2", "--stop-after-epochs", "1", "--out", str(out)])
    _invoke(["train", "--out", str(out), "--resume", "--device", "cpu", "-q"])
    _invoke(["evaluate", str(out), "--attacks", "clean,pgd", "--n-examples", "64", "--eval-max-iter", "2",
             "--which", "both", "--device", "cpu", "--out", str(out / "ev"), "-q"])


def graph_test_graphs(method: str, mode: str) -> None:
    """tests/test_cuda.py::test_compiled_graphs_are_counted_and_fixed on CPU (two fits, one trainer)."""
    import test_cuda

    trainer = test_cuda._cuda_trainer(amp="bf16", compile=mode, eval_batch_size=128, method=method)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (256, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, 256)
    for _ in range(2):
        trainer.fit(x, y, batch_size=128, nb_epochs=1, validation_data=(x, y))


def throughput_graphs(monkeypatch) -> None:
    """The compiled configurations of ``throughput.py --preset suite-compiled``, tiny on CPU (the plain loop's
    ``torch.compile`` with the eager backend too)."""
    from dataclasses import replace

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import throughput

    compile_ = torch.compile
    monkeypatch.setattr(throughput.torch, "compile", lambda m, mode=None, **kw: compile_(m, backend="eager"))
    for cfg in throughput.PRESETS["suite-compiled"]:
        small = replace(cfg, arch="small-cnn", amp=None, channels_last=False, image_size=16, batch_size=8,
                        steps=1, warmup=1, iters=1, model_kwargs={"width": 8, "in_channels": 3})
        model = throughput.build_model(small)
        for key in small.rows:
            throughput.time_row(key, model, small, torch.device("cpu"))


@pytest.mark.slow
def test_compiled_steps_compile_what_the_suite_caps_assume(tmp_path, count_graphs, monkeypatch):
    import test_cuda

    declared = suite_compiles()
    compiled_cycles = sorted(n for n in test_cuda.CYCLES if "compile" in n)
    per: dict[str, int] = {}
    for name in compiled_cycles:
        before = count_graphs()
        cycle_graphs(name, tmp_path / name)
        per[name] = count_graphs() - before
    for method, mode in sorted(test_cuda.COMPILED):
        before = count_graphs()
        graph_test_graphs(method, mode)
        per[f"graphs-{method}-{mode}"] = count_graphs() - before
    tests = count_graphs()
    throughput_graphs(monkeypatch)
    per["throughput"] = count_graphs() - tests
    print("graphs per compiled item:", per)
    assert {"tests-compiled": tests, "throughput-compiled": per["throughput"]} == declared, per


def _array(name: str) -> dict[str, int]:
    found = re.search(rf"^declare -A {name}=\((.*?)\)", SUITE.read_text(), re.M)
    assert found, name
    return {k: int(v) for k, v in re.findall(r"\[([\w-]+)\]=(\d+)", found.group(1))}


def test_the_suite_caps_rest_on_the_counts_and_fit_the_budget():
    """cap = RUN_S + COMPILES x S_PER_GRAPH for the compiled steps (as the script says it computes them, checked
    by running that part of it); the default steps' caps + ~20 s of install fit the budget less the summary's
    15 s, and the budget + 10 s of kill grace fits 8 minutes."""
    import subprocess

    declared = suite_compiles()
    assert set(declared) == {"tests-compiled", "throughput-compiled"} and all(v > 0 for v in declared.values())
    text = SUITE.read_text()
    block = text[text.index("declare -A COMPILES="):text.index("DATA_ARGS=()")]
    caps = dict(line.split("=") for line in subprocess.run(
        ["bash", "-c", block + 'for k in "${!CAP[@]}"; do echo "$k=${CAP[$k]}"; done'], capture_output=True,
        text=True, check=True).stdout.split())
    caps = {k: int(v) for k, v in caps.items()}
    run_s, per_graph = _array("RUN_S"), _array("S_PER_GRAPH")
    for step, graphs in declared.items():
        assert caps[step] == run_s[step] + graphs * per_graph[step]
    budget = int(re.search(r"^BUDGET=(\d+)", text, re.M).group(1))
    default = re.search(r'^STEPS="(.*)"', text, re.M).group(1).split(",")
    assert default == ["tests", "throughput", "tests-compiled", "throughput-compiled"]  # eager first
    assert sum(caps[s] for s in default) + 20 <= budget - 15
    assert budget + 10 <= 8 * 60

"""CUDA path (``pytest -m cuda``; skipped without a GPU): one train → resume → evaluate cycle per speed option,
training steps under ``torch.cuda.set_sync_debug_mode("error")`` and the compiled graphs per mode.

``benchmarks/gpu_suite.sh`` runs these and collects their JSON (``$ART_ADR_GPU_OUT/cuda-<name>.json``) into its one
``suite.json``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SYNTH = ["--dataset", "synthetic", "--set", "dataset_kwargs={n: 1088, shape: [3, 32, 32], num_classes: 10}",
         "--val-size", "64", "--max-iter", "3", "--batch-size", "128", "--eps", "8/255", "--eps-step", "2/255",
         "--set", "eval_max_iter=3", "--val-attack", "margin", "--device", "cuda", "-q"]
# (margin: the selecting validation attack of art-adr itself, fast; the "bf16-apgd" cycle validates with the default
# apgd, pyautoattack's APGD-CE + APGD-T, from the suite's wheel set)
DEVICE = "cuda"

CYCLES = {
    "bf16": ["--amp", "bf16"],
    "fp16-awp": ["--amp", "fp16", "--awp-rho", "0.005"],
    "fp16-awp-weights-only": ["--amp", "fp16", "--awp-rho", "0.005", "--set", "awp_variant=weights-only"],
    "channels-last-streamed": ["--channels-last", "--amp", "bf16"],  # + host-streamed batches (budget 0)
    "trades-fp16-awp": ["--method", "trades", "--amp", "fp16", "--awp-rho", "0.005"],
    "compile-reduce-overhead": ["--compile", "reduce-overhead", "--amp", "bf16", "--channels-last"],
    "bf16-apgd": ["--amp", "bf16", "--val-attack", "apgd"],  # the default validation attack, once on CUDA
    "ragged-last-batch": ["--amp", "bf16", "--batch-size", "100"],  # 1024 training images: a batch of 24 last
}


def _ragged_args(name: str) -> list[str]:
    """The ragged cycle keeps its last partial batch (``drop_last`` off, where the option exists)."""
    from art_adr.config import FIELDS

    return ["--set", "drop_last=false"] if name.startswith("ragged") and "drop_last" in FIELDS else []


def _record(name: str, payload: dict) -> None:
    out = os.environ.get("ART_ADR_GPU_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"cuda-{name}.json").write_text(json.dumps(payload, indent=2, default=str))


def _invoke(args: list[str]) -> None:
    from art_adr.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", sorted(CYCLES))
def test_train_resume_evaluate_cycle(name, tmp_path, monkeypatch):
    from art_adr.checkpoint import load_checkpoint
    from art_adr.loader import BUDGET_ENV

    if name.endswith("streamed"):
        monkeypatch.setenv(BUDGET_ENV, "0")
    from torch._dynamo.utils import counters

    out = tmp_path / name
    graphs, skips = counters["stats"]["unique_graphs"], counters["inductor"]["cudagraph_skips"]
    t0 = time.perf_counter()
    _invoke(["train", *SYNTH, *CYCLES[name], *_ragged_args(name), "--epochs", "2", "--stop-after-epochs", "1",
             "--out", str(out)])
    t1 = time.perf_counter()
    _invoke(["train", "--out", str(out), "--resume", "--device", DEVICE, "-q"])
    t2 = time.perf_counter()
    _invoke(["evaluate", str(out), "--attacks", "clean,pgd", "--n-examples", "64", "--eval-max-iter", "5",
             "--which", "both", "--device", DEVICE, "--out", str(tmp_path / "ev"), "-q"])
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    final = load_checkpoint(out / "checkpoints" / "final.pt", map_location="cpu")
    for part in ("student", "teacher"):
        for key, t in final[part].items():
            if t.is_floating_point():
                assert torch.isfinite(t).all(), f"{part}.{key} is not finite"
    assert all(math.isfinite(r["loss"]) for r in history)
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    _record(name, {"args": CYCLES[name], "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                   "train_first_epoch_s": t1 - t0, "resume_s": t2 - t1, "history": history,
                   "graphs_compiled": counters["stats"]["unique_graphs"] - graphs,
                   "cudagraph_skips": counters["inductor"]["cudagraph_skips"] - skips,
                   "evaluation": report.get("models")})


def test_art_preprocessing_and_streaming_on_cuda(monkeypatch):
    from art.estimators.classification import PyTorchClassifier

    from art_adr import AdversarialTrainerADR
    from art_adr.loader import BUDGET_ENV, DeviceBatches

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(),
                            optimizer=torch.optim.SGD(model.parameters(), lr=0.05), input_shape=(3, 16, 16),
                            nb_classes=10, clip_values=(0.0, 1.0), preprocessing=([0.5, 0.4, 0.3], [0.2, 0.2, 0.2]),
                            device_type="gpu")
    trainer = AdversarialTrainerADR(clf, eps=0.03, eps_step=0.01, max_iter=2, amp="fp16", awp_rho=0.01,
                                    verbose=False)
    assert trainer.forwards.teacher.mean.is_cuda
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (256, 3, 16, 16), dtype=np.uint8)
    y = rng.integers(0, 10, 256)
    monkeypatch.setenv(BUDGET_ENV, "0")
    trainer.fit(x, y, batch_size=64, nb_epochs=1)
    assert math.isfinite(trainer.history[-1]["loss"])
    xs, ys = torch.as_tensor(x), torch.as_tensor(y)
    device = torch.device("cuda")
    on_host = list(DeviceBatches(xs, ys, 64, seed=3).epoch(0))  # same CPU permutation, no copies
    streamed = list(DeviceBatches(xs, ys, 64, seed=3, device=device, stream=True).epoch(0))  # pinned staging
    assert len(on_host) == len(streamed) == 4
    for (xa, ya), (xb, yb) in zip(on_host, streamed):
        assert xb.is_cuda and torch.equal(xa, xb.cpu()) and torch.equal(ya, yb.cpu())


# ---------------------------------------------------------------- host syncs and compiled graphs on the GPU
def _cuda_trainer(amp=None, fused=True, method="at", **kwargs):
    from art.estimators.classification import PyTorchClassifier

    from art_adr import AdversarialTrainerADR, AdversarialTrainerMARTADR, AdversarialTrainerTRADESADR
    from art_adr.models import create_model

    torch.manual_seed(0)
    model = create_model("small-cnn", 10, in_channels=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, fused=fused or None)
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), optimizer=opt, input_shape=(3, 32, 32),
                            nb_classes=10, clip_values=(0.0, 1.0), device_type="gpu")
    cls = {"at": AdversarialTrainerADR, "trades": AdversarialTrainerTRADESADR, "mart": AdversarialTrainerMARTADR}
    return cls[method](clf, eps=8 / 255, eps_step=2 / 255, max_iter=3, amp=amp, val_attack="margin", verbose=False,
                       **kwargs)


SYNC_CASES = {
    "fp32": {}, "bf16": {"amp": "bf16"}, "bf16-awp-bn-momentum": {"amp": "bf16", "awp_rho": 0.005, "bn_momentum": 0.01},
    "bf16-channels-last": {"amp": "bf16", "channels_last": True}, "fp16-fused-awp": {"amp": "fp16", "awp_rho": 0.005},
}


@pytest.mark.parametrize("name", sorted(SYNC_CASES))
def test_training_steps_run_under_sync_debug_mode_error(name):
    """No training step waits for the GPU: torch raises on any synchronising call inside the steps."""
    trainer = _cuda_trainer(**SYNC_CASES[name])
    g = torch.Generator(device=DEVICE).manual_seed(0)
    x = torch.rand(128, 3, 32, 32, device=DEVICE, generator=g)
    if trainer.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,), device=DEVICE, generator=g)
    for _ in range(2):  # buffers allocated, scaler initialised
        trainer.train_step(x, y)
    torch.cuda.synchronize()
    error = None
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.train_step(x, y)
    except RuntimeError as exc:
        error = str(exc).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    _record(f"sync-{name}", {"case": SYNC_CASES[name], "steps": 3, "error": error})
    assert error is None, error


# (method, mode): student graphs (tests/test_compile_syncs.py counts the same on CPU); AT under reduce-overhead also
# runs in the compile-reduce-overhead cycle (train -> resume -> evaluate)
COMPILED = {("at", "default"): 4, ("trades", "reduce-overhead"): 5, ("mart", "reduce-overhead"): 4}


@pytest.mark.parametrize("method, mode", sorted(COMPILED))
def test_compiled_graphs_are_counted_and_fixed(method, mode):
    """Static shapes: the same graphs as Dynamo's eager backend counts on CPU, none recompiled in epoch 2; the
    CUDA-graph skips Inductor reports per compiled function are recorded."""
    trainer = _cuda_trainer(amp="bf16", compile=mode, channels_last=True, eval_batch_size=128, method=method)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (512, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, 512)
    t0 = time.perf_counter()
    trainer.fit(x, y, batch_size=128, nb_epochs=1, validation_data=(x[:256], y[:256]))
    t1 = time.perf_counter()
    first = trainer.compile_stats()
    trainer.fit(x, y, batch_size=128, nb_epochs=1, validation_data=(x[:256], y[:256]))
    t2 = time.perf_counter()
    stats = trainer.compile_stats()
    name = mode if method == "at" else f"{method}-{mode}"
    _record(f"graphs-{name}", {"method": method, "mode": mode, "stats": stats, "first_epoch_s": t1 - t0,
                                "second_epoch_s": t2 - t1, "history": trainer.history})
    assert stats == first
    student = COMPILED[(method, mode)]
    assert stats["student forward"]["graphs"] == student and stats["teacher forward"]["graphs"] == 2, stats
    assert all(math.isfinite(r["loss"]) for r in trainer.history)

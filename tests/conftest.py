"""Shared fixtures: tiny models and a learnable synthetic task, CPU only."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from compare_runs import TIMING, same  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module (AutoAttack's small batches run slower with two on a busy machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """A learnable 4-class task: class prototypes on 1×8×8 images plus noise, in [0, 1]."""
    rng = np.random.default_rng(0)
    protos = rng.uniform(0.0, 1.0, size=(4, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, 384)
    x = np.clip(protos[y] + rng.normal(0, 0.1, (384, 1, 8, 8)), 0, 1).astype(np.float32)
    return x, y.astype(np.int64)


class TinyNet(torch.nn.Module):
    """Conv-BN-ReLU then linear: the smallest net with BatchNorm buffers."""

    def __init__(self, classes: int = 4, channels: int = 1) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8 * 16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        h = torch.nn.functional.adaptive_avg_pool2d(h, 4)
        return self.fc(h.flatten(1))


@pytest.fixture
def make_classifier():
    """Factory for an ART PyTorchClassifier around a seeded TinyNet."""
    from art.estimators.classification import PyTorchClassifier

    def factory(seed: int = 0, lr: float = 0.05, classes: int = 4, shape=(1, 8, 8), **kw):
        torch.manual_seed(seed)
        model = TinyNet(classes, shape[0])
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        kw.setdefault("clip_values", (0.0, 1.0))
        return PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), optimizer=opt,
                                 input_shape=shape, nb_classes=classes, **kw)

    return factory


def easy_run(run_dir: Path, seed: int = 0, **config_changes) -> Path:
    """A finished 'run' on synthetic data without training: a small-cnn with weights scaled up (easy to attack);
    ``config_changes`` go into its ``RunConfig``. No ``metrics.jsonl``."""
    import yaml

    from art_adr.checkpoint import save_checkpoint
    from art_adr.config import RunConfig
    from art_adr.data import model_inputs
    from art_adr.models import create_model

    config = RunConfig(dataset="synthetic", arch="small-cnn", arch_kwargs={"in_channels": 3, "width": 4},
                       eps=64 / 255, eps_step=16 / 255, epochs=2, seed=seed, **config_changes)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    torch.manual_seed(seed)
    nets = [create_model("small-cnn", 10, **model_inputs("synthetic"), in_channels=3, width=4) for _ in range(2)]
    for net in nets:
        with torch.no_grad():
            net.net.fc.weight.mul_(200)
    for tag, epoch in (("best", 1), ("final", 2)):
        save_checkpoint(run_dir / "checkpoints" / f"{tag}.pt", {
            "model": {"arch": "small-cnn", "num_classes": 10, "dataset": "synthetic",
                      "kwargs": {"in_channels": 3, "width": 4}}, "config": config.to_dict(),
            "student": nets[0].state_dict(), "teacher": nets[1].state_dict(), "epoch": epoch})
    return run_dir


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal checkpoints (or any nested values): every tensor bit-identical, every value equal, timings aside —
    ``benchmarks/compare_runs.py``'s comparison, the one ``benchmarks/bit_identity.sh`` uses too."""
    diff = same(a, b, where)
    assert diff is None, diff


def metric_rows(path: Path) -> list[dict[str, Any]]:
    """A run's ``metrics.jsonl`` rows without their timings."""
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in path.read_text().splitlines() if line.strip()]

"""RobustBench: autoattack adapter under robustbench.eval.benchmark, export round trip, leaderboard placement."""

from __future__ import annotations

import inspect
import json
import pickle
import struct
import sys

import numpy as np
import pytest
import torch
from torch import nn

from art_adr.checkpoint import save_checkpoint
from art_adr.models import create_model
from art_adr.robustbench import (
    ExportError,
    export_robustbench,
    format_leaderboard,
    install_autoattack_adapter,
    leaderboard_table,
    load_leaderboard,
    register_exported,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # AutoAttack is far slower oversubscribed


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python-2 ``str`` opcodes, like the original CIFAR pickles."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_cifar10_test(root, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fake ``cifar-10-batches-py`` (test_batch + batches.meta) in the on-disk pickle format."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    y = [int(v) for v in rng.integers(0, 10, n)]
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    for name, obj in (("test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": y, b"data": x}),
                      ("batches.meta", {b"label_names": [b"c%d" % i for i in range(10)], b"num_vis": 3072})):
        with open(base / name, "wb") as f:
            _Py2Pickler(f, protocol=2).dump(obj)
    return x.reshape(n, 3, 32, 32), np.asarray(y)


def test_adapter_provides_upstream_autoattack_api():
    install_autoattack_adapter()
    assert install_autoattack_adapter() is False  # idempotent
    import autoattack
    from autoattack.state import EvaluationState  # noqa: F401

    params = inspect.signature(autoattack.AutoAttack).parameters
    assert {"norm", "eps", "seed", "version", "attacks_to_run", "log_path", "device"} <= set(params)
    assert "bs" in inspect.signature(autoattack.AutoAttack.run_standard_evaluation).parameters


def test_robustbench_benchmark_runs_through_adapter(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    from art_adr.data import load_dataset
    from art_adr.robustbench import import_robustbench

    x, y = write_cifar10_test(tmp_path / "data", n=6)
    ours = load_dataset("cifar10", "test", tmp_path / "data")  # the same pickles, read by art_adr.data
    assert np.array_equal(ours.x, x) and np.array_equal(ours.y, y)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # fake files, real md5s differ
    rb = import_robustbench()
    assert rb.eval.AutoAttack is sys.modules["autoattack"].AutoAttack
    calls = []
    original = rb.eval.AutoAttack.run_standard_evaluation

    def spy(self, *a, **k):
        calls.append(k)
        return original(self, *a, **k)

    monkeypatch.setattr(rb.eval.AutoAttack, "run_standard_evaluation", spy)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)).eval()
    with torch.no_grad():
        model[1].weight.mul_(50)  # not robust: APGD-CE breaks every point, later attacks are skipped
    clean, robust = rb.eval.benchmark(model, n_examples=6, dataset="cifar10", threat_model="Linf",
                                      data_dir=str(tmp_path / "data"), device=torch.device("cpu"),
                                      batch_size=6, eps=8 / 255)
    with torch.no_grad():
        expected = (model(torch.from_numpy(x).float() / 255).argmax(1).numpy() == y).mean()
    assert clean == pytest.approx(expected)
    assert 0.0 <= robust <= clean and calls and calls[0]["bs"] == 6


@pytest.fixture(scope="module")
def rn18_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    student = create_model("resnet18", 10, dataset="cifar10").eval()
    teacher = create_model("resnet18", 10, dataset="cifar10").eval()
    path = tmp_path_factory.mktemp("ckpt") / "c.pt"
    save_checkpoint(path, {"model": {"arch": "resnet18", "num_classes": 10, "dataset": "cifar10", "kwargs": {}},
                           "config": {}, "student": student.state_dict(), "teacher": teacher.state_dict()})
    return path, teacher


def test_export_bundle_and_robustbench_round_trip(tmp_path, rn18_checkpoint):
    path, teacher = rn18_checkpoint
    name = "Wu2024Annealing_RN18"
    paths = export_robustbench(path, tmp_path, name, which="teacher", clean_acc=82.406, autoattack_acc=50.38)
    assert paths["weights"] == tmp_path / "models" / "cifar10" / "Linf" / f"{name}.pt"
    info = json.loads(paths["model_info"].read_text())
    assert info["eps"] == "8/255" and info["clean_acc"] == "82.41" and info["autoattack_acc"] == "50.38"
    assert info["reported"] == "50.38" and info["dataset"] == "cifar10" and info["architecture"] == "ResNet-18"
    assert info["venue"] == "ICLR 2024" and "footnote" in info and info["additional_data"] is False
    assert list(info)[:3] == ["link", "name", "authors"]
    sd = torch.load(paths["weights"], weights_only=True)["state_dict"]
    assert all(v.device.type == "cpu" for v in sd.values())
    assert not any("model." in k or "module." in k for k in sd)
    issue = paths["issue"].read_text()
    assert "[New Model] Wu2024Annealing_RN18" in issue and "**Robust accuracy**: 50.38%" in issue
    assert not any(p.name.startswith(".export-") for p in tmp_path.iterdir())

    from robustbench.utils import load_model

    register_exported(tmp_path, name, "cifar10")
    rb_model = load_model(name, model_dir=tmp_path / "models", dataset="cifar10", threat_model="Linf")
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs, ours = rb_model(x), teacher(x)
    # identical weights; only the pooling kernel differs (RobustBench avg_pool2d(4) vs our adaptive pool)
    assert torch.equal(theirs.argmax(1), ours.argmax(1))
    assert torch.equal(theirs, ours)

    with pytest.raises(ExportError, match="refusing to overwrite"):
        export_robustbench(path, tmp_path, name, which="teacher", clean_acc=1, autoattack_acc=1)


def test_export_errors_leave_nothing(tmp_path, rn18_checkpoint):
    path, _ = rn18_checkpoint
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="autoattack_acc is required"):
        export_robustbench(path, out, "Name2024X", clean_acc=80.0)
    with pytest.raises(ExportError, match="no L∞ leaderboard"):
        export_robustbench(path, out, "Name2024X", dataset="tinyimagenet", clean_acc=1, autoattack_acc=1)
    with pytest.raises(ExportError, match="model name"):
        export_robustbench(path, out, "bad name!", clean_acc=1, autoattack_acc=1)
    small = tmp_path / "small.pt"
    save_checkpoint(small, {"model": {"arch": "small-cnn", "num_classes": 10, "dataset": "cifar10",
                                      "kwargs": {"in_channels": 3}},
                            "student": create_model("small-cnn", 10, "cifar10", in_channels=3).state_dict()})
    with pytest.raises(ExportError, match="no RobustBench class"):
        export_robustbench(small, out, "Name2024X", clean_acc=1, autoattack_acc=1)
    assert not out.exists() or not any(out.rglob("*"))


def test_leaderboard_ranking_and_placement():
    snap = load_leaderboard()
    assert "2025-03-31" in snap["source"] and snap["date"] == "2025-03-31"
    rows = leaderboard_table("cifar10", "Linf")
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    top = rows[0]
    entry = next(e for e in snap["entries"]["cifar10/Linf"] if e["model_id"] == top["model_id"])
    assert top["score"] == float(entry.get("external") or entry["autoattack_acc"])
    ours = {"name": "ADR", "clean_acc": 82.41, "autoattack_acc": 50.38, "architecture": "ResNet-18"}
    placed = leaderboard_table("cifar10", ours=ours)
    mine = next(r for r in placed if r["ours"])
    assert mine["rank"] == 1 + sum(r["score"] > 50.38 for r in rows) and len(placed) == len(rows) + 1
    assert mine["date"] == "2025-03-31"
    text = format_leaderboard(placed)
    assert f"rank {mine['rank']} of {len(placed)}" in text and "**ADR**" in text
    assert leaderboard_table("cifar100", ours=ours)[0]["source"] == snap["source"]
    with pytest.raises(ValueError, match="no imagenet/Linf"):
        leaderboard_table("imagenet")

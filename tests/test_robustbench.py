"""RobustBench: autoattack adapter under robustbench.eval.benchmark, export round trip, leaderboard placement."""

from __future__ import annotations

import inspect
import json
import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from art_adr.checkpoint import save_checkpoint
from art_adr.data import model_inputs
from art_adr.models import create_model
from art_adr.robustbench import (
    ADR_PAPER,
    PLACEHOLDERS,
    ExportError,
    export_robustbench,
    format_leaderboard,
    install_autoattack_adapter,
    leaderboard_table,
    load_leaderboard,
    model_info,
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


def fake_report(checkpoint, n: int, *, dataset: str = "cifar10", which: str = "teacher", clean: float = 82.0,
                aa: float = 50.0, eps: float = 8 / 255, norm: str = "inf", version: str = "standard",
                split: str = "test") -> dict:
    """An ``art-adr evaluate`` report of ``checkpoint`` (its real SHA-256) with the given AutoAttack numbers."""
    from art_adr.evaluation import build_report
    from art_adr.evaluation.identity import checkpoint_info

    cumulative = {"clean": clean, "apgd-ce": aa, "apgd-t": aa, "fab-t": aa, "square": aa}
    entry = {"results": {"clean": clean, "aa": aa}, "time_s": {"clean": 0.1, "aa": 1.0},
             "autoattack": {"version": version, "seed": 0, "attacks": ["apgd-ce", "apgd-t", "fab-t", "square"],
                            "cumulative": cumulative, "warnings": []}}
    settings = {"attacks": ["clean", "aa"], "pgd_steps": 10, "restarts": 1, "eps_step": None, "cw_steps": 10,
                "aa_version": version}
    return build_report({which: entry}, checkpoint=str(checkpoint), checkpoint_info=checkpoint_info(checkpoint),
                        dataset=dataset, n_examples=n, eps=eps, seed=0, batch_size=n, device="cpu",
                        settings=settings, norm=norm, split=split)


@pytest.fixture(scope="module")
def rn18_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    student = create_model("resnet18", 10, **model_inputs("cifar10")).eval()
    teacher = create_model("resnet18", 10, **model_inputs("cifar10")).eval()
    path = tmp_path_factory.mktemp("ckpt") / "c.pt"
    save_checkpoint(path, {"model": {"arch": "resnet18", "num_classes": 10, "dataset": "cifar10", "kwargs": {}},
                           "config": {}, "student": student.state_dict(), "teacher": teacher.state_dict()})
    return path, teacher


def test_export_bundle_and_robustbench_round_trip(tmp_path, rn18_checkpoint):
    path, teacher = rn18_checkpoint
    name = "Wu2024Annealing_RN18"
    paths = export_robustbench(path, tmp_path, name, which="teacher", report=fake_report(path, 10000, clean=82.406,
                                                                                        aa=50.38))
    assert paths["weights"] == tmp_path / "models" / "cifar10" / "Linf" / f"{name}.pt"
    info = json.loads(paths["model_info"].read_text())
    assert info["eps"] == "8/255" and info["clean_acc"] == "82.41" and info["autoattack_acc"] == "50.38"
    assert info["reported"] == "50.38" and info["dataset"] == "cifar10" and info["architecture"] == "ResNet-18"
    assert info["venue"] == "ICLR 2024" and info["footnote"].startswith("+WA") and info["additional_data"] is False
    assert info["name"] == ADR_PAPER["name"] and info["link"] == ADR_PAPER["link"]
    assert info["unreliable"] is False and "external" not in info and "n_examples" not in info
    assert list(info)[:3] == ["link", "name", "authors"]
    sd = torch.load(paths["weights"], weights_only=True)["state_dict"]
    assert all(v.device.type == "cpu" for v in sd.values())
    assert not any("model." in k or "module." in k for k in sd)
    issue = paths["issue"].read_text()
    assert "[New Model] Wu2024Annealing_RN18" in issue and "**Robust accuracy**: 50.38%" in issue
    assert "[x]" not in issue and "- [ ] I want to add my models to the Model Zoo" in issue  # consent: the user's
    assert "- [ ] I agree to release my model(s) under MIT license" in issue and "yours to tick" in issue
    assert "gdrive_id" in issue and "AutoAttack standard" in issue and "first 10000 cifar10" in issue
    assert json.loads(paths["report"].read_text())["checkpoint_info"]["sha256"] in paths["autoattack_log"].read_text()
    assert "robust accuracy after Square: 50.38%" in paths["autoattack_log"].read_text()
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
        export_robustbench(path, tmp_path, name, which="teacher", clean_acc=1, autoattack_acc=1,
                           external_numbers=True)


def test_model_info_has_every_field_of_the_shipped_schema():
    """Every key of the RobustBench entries in the shipped snapshot (model_info at commit 78fcc9e), same types."""
    snap = load_leaderboard()
    entries = snap["entries"]["cifar10/Linf"] + snap["entries"]["cifar100/Linf"]
    schema = {k for e in entries for k in e} - {"model_id"}  # model_id: the file name, not a field
    info = model_info(dataset="cifar10", architecture="ResNet-18", clean_acc=82.4, autoattack_acc=50.38,
                      external=49.9)
    assert set(info) == schema
    for key, value in info.items():
        types = {type(e[key]) for e in entries if e.get(key) is not None}
        assert value is None and key == "footnote" or type(value) in types, (key, value, types)
    assert info["unreliable"] is False and info["footnote"] is None and info["external"] == "49.90"
    # external only when an adaptive-attack number is given (as in RobustBench's own entries)
    assert "external" not in model_info(dataset="cifar10", architecture="ResNet-18", clean_acc=82.4,
                                        autoattack_acc=50.38)
    with pytest.raises(ExportError, match="external must be a percentage"):
        model_info(dataset="cifar10", architecture="ResNet-18", clean_acc=1, autoattack_acc=1, external=120)
    with pytest.raises(ExportError, match="external 51.00 is above autoattack_acc"):
        model_info(dataset="cifar10", architecture="ResNet-18", clean_acc=80, autoattack_acc=50, external=51)
    with pytest.raises(ExportError, match="cannot exceed clean"):
        model_info(dataset="cifar10", architecture="ResNet-18", clean_acc=30, autoattack_acc=60)


def test_export_refuses_partial_evaluation_unless_allowed(tmp_path, rn18_checkpoint):
    path, _ = rn18_checkpoint
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="from 500 of the 10000 cifar10 test images.*allow-partial"):
        export_robustbench(path, out, "X2024Y", which="teacher", report=fake_report(path, 500))
    with pytest.raises(ExportError, match="from 20 of the 10000"):
        export_robustbench(path, out, "X2024Y", clean_acc=80, autoattack_acc=50, n_examples=20, external_numbers=True)
    with pytest.raises(ExportError, match="contradicts the evaluation report"):
        export_robustbench(path, out, "X2024Y", which="teacher", report=fake_report(path, 10000), n_examples=500)
    with pytest.raises(ExportError, match="integer in \\[1, 10000\\]"):
        export_robustbench(path, out, "X2024Y", clean_acc=80, autoattack_acc=50, n_examples=20000,
                           external_numbers=True)
    with pytest.raises(ExportError, match="n_examples: expected int"):
        export_robustbench(path, out, "X2024Y", which="teacher", report={**fake_report(path, 1), "n_examples": None})
    with pytest.raises(ExportError, match="L2 norm"):
        export_robustbench(path, out, "X2024Y", which="teacher", report=fake_report(path, 10000, norm="2"))
    assert not out.exists() or not any(out.rglob("*"))

    paths = export_robustbench(path, out, "X2024Y", which="teacher", report=fake_report(path, 500), allow_partial=True)
    info = json.loads(paths["model_info"].read_text())
    assert "n_examples" not in info and info["clean_acc"] == "82.00" and info["autoattack_acc"] == "50.00"
    assert info["footnote"].startswith("Partial evaluation: 500 of the 10000 test images") and "+WA" in info["footnote"]
    issue = paths["issue"].read_text()
    assert "partial evaluation, 500 of the 10000 test images" in issue and "first 500 cifar10 test images" in issue
    full = export_robustbench(path, out, "X2024Z", which="teacher", report=fake_report(path, 10000), allow_partial=True)
    assert "n_examples" not in json.loads(full["model_info"].read_text())


def test_numbers_say_where_they_come_from(tmp_path, rn18_checkpoint):
    """Typed numbers are recorded as external, never as "AutoAttack standard"; a weaker AutoAttack says so."""
    path, _ = rn18_checkpoint
    typed = export_robustbench(path, tmp_path / "a", "X2024Y", clean_acc=80, autoattack_acc=45, external_numbers=True)
    issue, info = typed["issue"].read_text(), json.loads(typed["model_info"].read_text())
    assert "AutoAttack standard" not in issue and "**Evaluation method**: external" in issue
    assert info["footnote"].startswith("External numbers: supplied by the submitter")
    assert not typed["report"].exists() and not typed["autoattack_log"].exists()
    paper = export_robustbench(path, tmp_path / "b", "X2024Y", which="teacher",
                               report=fake_report(path, 10000, version="paper"))
    issue, info = paper["issue"].read_text(), json.loads(paper["model_info"].read_text())
    assert "AutoAttack standard" not in issue and "AutoAttack 'paper'" in issue
    assert info["footnote"].startswith("AutoAttack version 'paper', not 'standard'.")


def test_run_without_adr_is_not_exported_under_the_adr_paper(tmp_path, rn18_checkpoint):
    path, _ = rn18_checkpoint
    ckpt = torch.load(path, weights_only=True)
    for method, label in (("at", "PGD-AT (art-adr)"), ("trades", "TRADES (art-adr)")):
        plain = tmp_path / f"{method}.pt"
        torch.save({**ckpt, "config": {"adr": False, "method": method}}, plain)
        paths = export_robustbench(plain, tmp_path / method, "X2024Y", clean_acc=80, autoattack_acc=45,
                                   external_numbers=True)
        info = json.loads(paths["model_info"].read_text())
        assert info["name"] == label and info["name"] != ADR_PAPER["name"]
        assert {info["link"], info["authors"], info["venue"]} == set(PLACEHOLDERS.values())
        assert ADR_PAPER["link"] not in paths["issue"].read_text()
    adr = tmp_path / "adr.pt"
    torch.save({**ckpt, "config": {"adr": True, "method": "trades"}}, adr)
    info = json.loads(export_robustbench(adr, tmp_path / "adr", "X2024Y", clean_acc=80, autoattack_acc=45,
                                         external_numbers=True)["model_info"].read_text())
    assert info["name"] == ADR_PAPER["name"] and info["authors"] == ADR_PAPER["authors"]
    mine = export_robustbench(plain, tmp_path / "mine", "X2024Y", clean_acc=80, autoattack_acc=45,
                              external_numbers=True, paper_name="My TRADES", link="https://example.org/p",
                              authors="Me", venue="arXiv 2025")
    info = json.loads(mine["model_info"].read_text())
    assert (info["name"], info["link"], info["authors"], info["venue"]) == (
        "My TRADES", "https://example.org/p", "Me", "arXiv 2025")


def test_readme_loading_snippet_runs_in_a_fresh_interpreter(tmp_path, rn18_checkpoint):
    """The export guide's RobustBench block, as written, in a new Python process: plain ``import robustbench``
    (no art_adr import before it) and ``load_model`` of an exported bundle give our logits."""
    path, teacher = rn18_checkpoint
    readme = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "export.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "register_exported(" in b)
    assert code.index("robustbench") < code.index("art_adr"), "the snippet must import robustbench first"
    name = re.search(r'load_model\("(\w+)"', code).group(1)
    export_robustbench(path, tmp_path / "submission", name, which="teacher", clean_acc=80, autoattack_acc=45,
                       external_numbers=True)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    torch.save(x, tmp_path / "x.pt")
    check = ("\nimport torch\nwith torch.no_grad():\n"
             "    torch.save(model(torch.load('x.pt')), 'logits.pt')\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", code + check], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "logits.pt"), teacher(x))


def test_export_errors_leave_nothing(tmp_path, rn18_checkpoint):
    path, _ = rn18_checkpoint
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="both clean_acc and autoattack_acc"):
        export_robustbench(path, out, "Name2024X", clean_acc=80.0, external_numbers=True)
    with pytest.raises(ExportError, match="marked as measured elsewhere"):
        export_robustbench(path, out, "Name2024X", clean_acc=80.0, autoattack_acc=50.0)
    with pytest.raises(ExportError, match="evaluation report of this checkpoint"):
        export_robustbench(path, out, "Name2024X")
    with pytest.raises(ExportError, match="exclude each other"):
        export_robustbench(path, out, "Name2024X", report=fake_report(path, 10000), clean_acc=1, autoattack_acc=1,
                           external_numbers=True)
    with pytest.raises(ExportError, match="trained on 'cifar10', not 'tinyimagenet'"):
        export_robustbench(path, out, "Name2024X", dataset="tinyimagenet", report=fake_report(path, 10000))
    with pytest.raises(ExportError, match="model name"):
        export_robustbench(path, out, "bad name!", report=fake_report(path, 10000))
    with pytest.raises(ExportError, match="sha256"):  # a report of another checkpoint
        export_robustbench(path, out, "Name2024X", report={**fake_report(path, 10000), "checkpoint_info": {
            "file": "other.pt", "epoch": None, "sha256": "0" * 64}})
    with pytest.raises(ExportError, match="no AutoAttack result for the student"):
        export_robustbench(path, out, "Name2024X", report=fake_report(path, 10000))  # the report is the teacher's
    with pytest.raises(ExportError, match="holdout split"):
        export_robustbench(path, out, "Name2024X", which="teacher", report=fake_report(path, 10000, split="holdout"))
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
    # an entry ranked by a lower external number shows it (the table ranks by it)
    ext = next(e for e in snap["entries"]["cifar10/Linf"]
               if e.get("external") and float(e["external"]) != float(e["autoattack_acc"]))
    text = format_leaderboard(placed, context=len(placed))
    assert "| ranked by |" in text and f"{float(ext['external']):.2f} (external)" in text
    assert leaderboard_table("cifar100", ours=ours)[0]["source"] == snap["source"]
    with pytest.raises(ValueError, match="no imagenet/Linf"):
        leaderboard_table("imagenet")


def test_evaluate_placement_names_runs_without_adr_neutrally(monkeypatch):
    import art_adr.robustbench as rb
    from art_adr.cli.evaluate import _placement

    seen = []
    real = rb.leaderboard_table
    monkeypatch.setattr(rb, "leaderboard_table",
                        lambda *a, ours=None, **k: seen.append(ours) or real(*a, ours=ours, **k))
    entry = {"results": {"clean": 80.0, "aa": 45.0}}
    _placement(entry, "cifar10", "resnet18", "student", 10_000, {"adr": False, "method": "trades"})
    _placement(entry, "cifar10", "resnet18", "student", 10_000, {"adr": True, "method": "at"})
    assert seen[0]["paper"] == "TRADES (art-adr)" and seen[1]["paper"] == rb.ADR_PAPER["name"]

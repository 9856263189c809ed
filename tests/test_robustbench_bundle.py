"""RobustBench-format bundles beyond RobustBench's leaderboards: art-adr's own architectures as self-contained files
that load without art-adr, ``export --check`` on fresh and tampered bundles, and the CPU chain train → evaluate
→ export → load on Fashion-MNIST."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from art_adr import data
from art_adr.checkpoint import save_checkpoint
from art_adr.cli import main
from art_adr.data import model_inputs
from art_adr.models import create_model
from art_adr.robustbench import BundleCheckError, ExportError, check_bundle, export_robustbench
from art_adr.robustbench.standalone import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _checkpoint(path: Path, arch: str, dataset: str, scale: float = 1.0, **kwargs) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = create_model(arch, 10, **model_inputs(dataset), **kwargs).eval()
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
    save_checkpoint(path, {"model": {"arch": arch, "num_classes": 10, "dataset": dataset, "kwargs": kwargs},
                           "config": {}, "student": model.state_dict(), "teacher": None})
    return path, model


def _report(path: Path, dataset: str, n: int, eps: float = 0.1) -> dict:
    from test_robustbench import fake_report

    return fake_report(path, n, dataset=dataset, which="student", clean=40.0, aa=10.0, eps=eps)


def test_fashion_mnist_mlp_bundle_loads_without_art_adr(tmp_path):
    """A user without art-adr (nor RobustBench) rebuilds the model from the bundle alone: bit-identical logits."""
    ck, model = _checkpoint(tmp_path / "mlp.pt", "mlp", "fashion-mnist", hidden=32)
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="not the fashion-mnist test set at ε=8/255"):
        export_robustbench(ck, out, "Me2026Tiny_MLP", eps=8 / 255, report=_report(ck, "fashion-mnist", 50))
    paths = export_robustbench(ck, out, "Me2026Tiny_MLP", report=_report(ck, "fashion-mnist", 50))  # its ε
    assert paths["architecture"] == out / "model_zoo" / "architectures" / "art_adr_mlp.py"
    assert "import art_adr" not in paths["architecture"].read_text()
    assert "Not a submission" in paths["issue"].read_text() and "- [x] I use an architecture" in paths[
        "issue"].read_text()
    info = json.loads(paths["model_info"].read_text())
    assert info["dataset"] == "fashion-mnist" and info["footnote"] == "Evaluated on the first 50 test images."
    assert info["eps"] == "0.1"
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path / "x.pt")
    site = str(Path(torch.__file__).resolve().parents[1])
    code = (
        "import importlib.util, sys\n"
        f"sys.path[:0] = [{str(out)!r}, {site!r}]\n"
        "assert importlib.util.find_spec('art_adr') is None, 'art_adr is importable'\n"
        "sys.modules['robustbench'] = None  # RobustBench is not needed either\n"
        "import torch\nfrom load_bundle import load_model\n"
        "model = load_model('Me2026Tiny_MLP', dataset='fashion-mnist')\n"
        "with torch.no_grad():\n"
        f"    torch.save(model(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'logits.pt')!r})\n"
    )
    env = {"OMP_NUM_THREADS": "1", "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "logits.pt"), model(x))


@pytest.mark.parametrize("arch, dataset, kwargs", [
    ("small-cnn", "synthetic", {"in_channels": 3, "width": 4}),
    ("conv-fc", "fashion-mnist", {"width": 4, "hidden": 16}),
    ("conv-bn", "fashion-mnist", {"widths": [4, 8], "hidden": 16}),
])
def test_own_architectures_load_bit_exact(tmp_path, arch, dataset, kwargs):
    ck, model = _checkpoint(tmp_path / "c.pt", arch, dataset, **kwargs)
    export_robustbench(ck, tmp_path / "b", "X2026Y", eps=0.1, report=_report(ck, dataset, 20))
    loaded = load_model("X2026Y", dataset=dataset, bundle_dir=tmp_path / "b")
    shape = model_inputs(dataset)["input_shape"]
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_own_architecture_on_cifar10_loads_through_robustbench(tmp_path):
    """RobustBench's dataset, art-adr's class: RobustBench's ``load_model`` with the bundle's architecture file."""
    from robustbench.utils import load_model as rb_load_model

    from art_adr.robustbench import register_exported

    ck, model = _checkpoint(tmp_path / "c.pt", "small-cnn", "cifar10", in_channels=3, width=4)
    out = tmp_path / "b"
    export_robustbench(ck, out, "X2026Cnn", eps=8 / 255, report=_report(ck, "cifar10", 10000, eps=8 / 255))
    register_exported(out, "X2026Cnn", "cifar10")
    rb_model = rb_load_model("X2026Cnn", model_dir=out / "models", dataset="cifar10", threat_model="Linf")
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(rb_model(x), model(x))
    lines = check_bundle(out, data_dir=tmp_path / "no-cifar")  # no test set here: the re-evaluation is skipped
    assert any("robustbench.utils.load_model" in t for t in lines) and lines[-1].startswith("re-evaluation skipped")


# ------------------------------------------------------------------------------------------------ --check
@pytest.fixture(scope="module")
def checked_bundle(tmp_path_factory):
    """A bundle of a small-cnn on the synthetic test set with a real evaluation (clean + AutoAttack on 8 images)."""
    from art_adr.evaluation import evaluate_checkpoint

    tmp = tmp_path_factory.mktemp("check")
    ck, _ = _checkpoint(tmp / "c.pt", "small-cnn", "synthetic", scale=3.0, in_channels=3, width=4)
    report = evaluate_checkpoint(ck, attacks=("clean", "aa"), n_examples=8, spec={"eps": 8 / 255}, batch_size=8,
                                 device="cpu", progress=False)
    export_robustbench(ck, tmp / "bundle", "X2026Check", report=report)
    return tmp / "bundle"


def _tampered(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_json(path: Path, **changes) -> None:
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj, indent=2))


def _sha(path: Path) -> str:
    from art_adr.evaluation import file_sha256

    return file_sha256(path)


def test_check_passes_on_a_fresh_bundle(checked_bundle):
    lines = check_bundle(checked_bundle)
    assert "numbers are the evaluation report's" in lines and any("load_bundle.py" in t for t in lines)
    assert any(t.startswith("clean accuracy re-evaluated: ") for t in lines)
    res = CliRunner().invoke(main, ["export", "--check", str(checked_bundle)], catch_exceptions=False)
    assert res.exit_code == 0 and "passes the checks" in res.output


def test_check_fails_on_changed_weights(checked_bundle, tmp_path):
    b = _tampered(checked_bundle, tmp_path / "b")
    weights = b / "models" / "synthetic" / "Linf" / "X2026Check.pt"
    sd = torch.load(weights, weights_only=True)
    sd["state_dict"]["net.fc.bias"] += 0.5
    torch.save(sd, weights)
    with pytest.raises(BundleCheckError, match="not the exported weights"):
        check_bundle(b)
    manifest = b / "evaluation" / "X2026Check" / "manifest.json"
    _rewrite_json(manifest, weights_sha256=_sha(weights))  # a consistent forgery: the logits still tell
    with pytest.raises(BundleCheckError, match="logits differ from those recorded at export"):
        check_bundle(b)
    res = CliRunner().invoke(main, ["export", "--check", str(b)], catch_exceptions=False)
    assert res.exit_code == 2 and res.output.count("\n") == 1 and res.output.startswith("Error: bundle check failed")


def test_check_fails_on_changed_numbers(checked_bundle, tmp_path):
    b = _tampered(checked_bundle, tmp_path / "b")
    info = b / "model_info" / "synthetic" / "Linf" / "X2026Check.json"
    _rewrite_json(info, clean_acc="99.00")
    with pytest.raises(BundleCheckError, match="clean_acc 99.00 is not the evaluation report's"):
        check_bundle(b)
    # the report changed with it (and its hash in the manifest): the re-evaluation tells
    report = b / "evaluation" / "X2026Check" / "evaluation.json"
    obj = json.loads(report.read_text())
    old = obj["models"]["student"]["results"]["clean"]
    new = 0.0 if old > 50 else 100.0
    obj["models"]["student"]["results"]["clean"] = new
    obj["models"]["student"]["results"]["aa"] = 0.0
    report.write_text(json.dumps(obj))
    _rewrite_json(info, clean_acc=f"{new:.2f}", autoattack_acc="0.00", reported="0.00")
    with pytest.raises(BundleCheckError, match="changed after export"):
        check_bundle(b)
    _rewrite_json(b / "evaluation" / "X2026Check" / "manifest.json", report_sha256=_sha(report))
    with pytest.raises(BundleCheckError, match="re-evaluated clean accuracy .* contradicts the report's"):
        check_bundle(b)


def test_check_fails_on_missing_file_and_bad_schema(checked_bundle, tmp_path):
    b = _tampered(checked_bundle, tmp_path / "b")
    (b / "evaluation" / "X2026Check" / "autoattack.log").unlink()
    with pytest.raises(BundleCheckError, match="missing file evaluation/X2026Check/autoattack.log"):
        check_bundle(b)
    b = _tampered(checked_bundle, tmp_path / "c")
    (b / "model_zoo" / "architectures" / "art_adr_small_cnn.py").unlink()
    with pytest.raises(BundleCheckError, match="missing file model_zoo/architectures/art_adr_small_cnn.py"):
        check_bundle(b)
    b = _tampered(checked_bundle, tmp_path / "d")
    _rewrite_json(b / "model_info" / "synthetic" / "Linf" / "X2026Check.json", n_examples=8)
    with pytest.raises(BundleCheckError, match="unknown \\['n_examples'\\]"):
        check_bundle(b)
    with pytest.raises(BundleCheckError, match="not an art-adr bundle"):
        check_bundle(tmp_path)
    res = CliRunner().invoke(main, ["export", "--check", str(tmp_path / "nowhere")], catch_exceptions=False)
    assert res.exit_code == 2 and "does not exist" in res.output


# ------------------------------------------------------------------------------------------------ CPU chain
@pytest.mark.skipif(not (data.FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="Fashion-MNIST is not installed here")
def test_cpu_chain_train_evaluate_export_load(tmp_path):
    """train a tiny Fashion-MNIST MLP → AutoAttack → export → check → load the bundle back (README's quick start)."""
    run, out = tmp_path / "run", tmp_path / "bundle"
    steps = [
        ["train", "-d", "fashion-mnist", "--arch", "mlp", "--set", "arch_kwargs={hidden: 32}", "--epochs", "1",
         "--subset", "256", "--val-size", "64", "--max-iter", "2", "--eval-max-iter", "2", "--out", run, "-q"],
        ["evaluate", run, "--attacks", "clean,aa", "--n-examples", "16", "--eps", "0.1", "--out", run / "ev", "-q"],
        ["export", run, "--name", "Me2026Tiny_MLP", "--report", run / "ev" / "evaluation.json", "--out", out],
        ["export", "--check", out],
    ]
    outputs = []
    for args in steps:
        res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert res.exit_code == 0, (args[0], res.output)
        outputs.append(res.output)
    assert "RobustBench has no L∞ leaderboard for 'fashion-mnist'" in outputs[2]
    assert "ok: clean accuracy re-evaluated: " in outputs[3]
    from art_adr.checkpoint import load_model as art_load

    ours, _ = art_load(run)
    loaded = load_model("Me2026Tiny_MLP", dataset="fashion-mnist", bundle_dir=out)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), ours(x))


def test_check_reads_the_bundles_own_class_file(checked_bundle, tmp_path):
    check_bundle(checked_bundle)  # the class of the fresh bundle loaded first in this process
    b = _tampered(checked_bundle, tmp_path / "b")
    arch = b / "model_zoo" / "architectures" / "art_adr_small_cnn.py"
    arch.write_text(arch.read_text().replace("return self.fc(self.features(x))", "return -self.fc(self.features(x))"))
    with pytest.raises(BundleCheckError, match="logits differ"):
        check_bundle(b)
    res = CliRunner().invoke(main, ["export", "--check", str(b), str(b)], catch_exceptions=False)
    assert res.exit_code == 2 and "drop RUN_OR_CHECKPOINT" in res.output


def test_overwrite_with_external_numbers_leaves_no_stale_report(tmp_path):
    ck, _ = _checkpoint(tmp_path / "c.pt", "mlp", "fashion-mnist", hidden=8)
    out = tmp_path / "b"
    first = export_robustbench(ck, out, "X2026Y", eps=0.1, report=_report(ck, "fashion-mnist", 20))
    assert first["report"].exists() and first["autoattack_log"].exists()
    with pytest.raises(ExportError, match="refusing to overwrite"):
        export_robustbench(ck, out, "X2026Y", eps=0.1, clean_acc=50, autoattack_acc=20, external_numbers=True)
    export_robustbench(ck, out, "X2026Y", eps=0.1, clean_acc=50, autoattack_acc=20, external_numbers=True,
                       overwrite=True)
    assert not first["report"].exists() and not first["autoattack_log"].exists()
    assert "numbers are marked external" in check_bundle(out)

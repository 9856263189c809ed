"""``art-adr evaluate`` / ``art-adr export`` through click's CliRunner: outputs and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from art_adr.checkpoint import save_checkpoint
from art_adr.cli import main
from art_adr.data import model_inputs
from art_adr.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")  # AutoAttack is far slower oversubscribed


def _small_checkpoint(path, dataset="synthetic", num_classes=10):
    """A small-cnn on 3×32×32 'synthetic' data, weights scaled up so that it is easy to attack."""
    torch.manual_seed(0)
    models = []
    for _ in range(2):
        m = create_model("small-cnn", num_classes, **model_inputs(dataset), in_channels=3, width=4)
        with torch.no_grad():
            m.net.fc.weight.mul_(200)
        models.append(m.state_dict())
    save_checkpoint(path, {"model": {"arch": "small-cnn", "num_classes": num_classes, "dataset": dataset,
                                     "kwargs": {"in_channels": 3, "width": 4}},
                           "config": {}, "student": models[0], "teacher": models[1]})
    return path


@pytest.fixture
def ckpt(tmp_path):
    return _small_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_evaluate_run_dir_both_models_with_aa_and_sanity(tmp_path, ckpt):
    out = tmp_path / "eval"
    res = _invoke("evaluate", ckpt.parent.parent, "--which", "both", "--n-examples", 4, "--eps", "64/255",
                  "--eval-max-iter", 2, "--batch-size", 4, "--out", out, "--sanity", "--sanity-max-iter", "1,2",
                  "--sanity-eps-max-iter", 4, "-q")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "evaluation.json").read_text())
    from art_adr.evaluation import validate_report

    validate_report(report)
    assert set(report["models"]) == {"student", "teacher"} and report["n_examples"] == 4
    assert report["dataset"] == "synthetic" and report["eps_text"] == "64/255"
    for entry in report["models"].values():
        assert set(entry["results"]) == {"clean", "pgd", "margin", "aa"}
        assert entry["autoattack"]["version"] == "standard" and "passed" in entry["sanity"]
    assert (out / "evaluation.md").read_text() in res.output + "\n" or "| student |" in res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["evaluation.json", "evaluation.md", "sanity_student_eps.png", "sanity_student_steps.png",
         "sanity_teacher_eps.png", "sanity_teacher_steps.png"])


def test_evaluate_paper_autoattack_protocol(tmp_path, ckpt):
    out = tmp_path / "eval"
    res = _invoke("evaluate", ckpt, "--which", "teacher", "--attacks", "clean,aa", "--aa-version", "paper",
                  "--n-examples", 4, "--eps", "64/255", "--batch-size", 4, "--out", out, "-q")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "evaluation.json").read_text())
    aa = report["models"]["teacher"]["autoattack"]
    assert report["settings"]["aa_version"] == "paper" and aa["version"] == "paper"
    assert aa["settings"]["apgd-t"] == {"n_iter": 10, "n_restarts": 1, "n_target_classes": 9}
    assert aa["settings"]["square"]["n_queries"] == 5000
    assert "AutoAttack (paper)" in res.output and "AutoAttack 'paper'" in res.output


def test_evaluate_checkpoint_file_default_out(tmp_path, ckpt):
    res = _invoke("evaluate", ckpt, "--attacks", "clean,pgd", "--n-examples", 3, "--eval-max-iter", 1,
                  "-q")
    assert res.exit_code == 0, res.output
    report = json.loads((ckpt.parent / "evaluation-best" / "evaluation.json").read_text())
    assert set(report["models"]["student"]["results"]) == {"clean", "pgd"}


@pytest.mark.parametrize("args, message", [
    (["--dataset", "no-such-dataset"], "unknown dataset"),
    (["--eps", "0"], "eps must be in (0, 1]"),
    (["--eps", "2"], "eps must be in (0, 1]"),
    (["--eps", "eight"], "fraction like 8/255"),
    (["--attacks", "pgd,foo"], "unknown attack"),
    (["--robustbench"], "--robustbench needs one of cifar10, cifar100"),
    (["--dataset", "cifar100"], "checkpoint has 10 classes but cifar100 has 100"),
])
def test_evaluate_bad_input_one_line_error(tmp_path, ckpt, args, message):
    out = tmp_path / "out"
    res = _invoke("evaluate", ckpt, "--out", out, "-q", *args)
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_evaluate_missing_data_and_bad_files(tmp_path, ckpt):
    out = tmp_path / "out"
    res = _invoke("evaluate", ckpt, "--dataset", "cifar10", "--data-dir", tmp_path / "nodata", "--out", out)
    assert res.exit_code == 2 and "nodata does not exist" in res.output and not out.exists()
    (tmp_path / "nodata").mkdir()
    res = _invoke("evaluate", ckpt, "--dataset", "cifar10", "--data-dir", tmp_path / "nodata", "--out", out)
    assert res.exit_code == 2 and "cifar10 test split not found" in res.output and not out.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    res = _invoke("evaluate", junk, "--out", out)
    assert res.exit_code == 2 and "not a readable checkpoint" in res.output and not out.exists()
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(ckpt.read_bytes()[:200])
    res = _invoke("evaluate", truncated, "--out", out)
    assert res.exit_code == 2 and "Error:" in res.output and "Traceback" not in res.output
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    res = _invoke("evaluate", other, "--out", out)
    assert res.exit_code == 2 and "not an art-adr checkpoint" in res.output
    res = _invoke("evaluate", tmp_path / "missing.pt", "--out", out)
    assert res.exit_code == 2 and "checkpoint not found" in res.output and not out.exists()


def test_evaluate_wrong_architecture_weights(tmp_path, ckpt):
    obj = torch.load(ckpt, weights_only=True)
    obj["model"]["kwargs"]["width"] = 8  # weights were saved for width 4
    bad = tmp_path / "bad.pt"
    torch.save(obj, bad)
    res = _invoke("evaluate", bad, "--out", tmp_path / "out")
    assert res.exit_code == 2 and "weights do not fit small-cnn" in res.output


def test_export_errors_are_one_line(tmp_path, ckpt):
    out = tmp_path / "bundle"
    res = _invoke("export", ckpt, "--name", "Wu2024Annealing", "--out", out, "--external-numbers", "--clean-acc", 80)
    assert res.exit_code == 2 and "--autoattack-acc" in res.output
    res = _invoke("export", ckpt, "--name", "Wu2024Annealing", "--out", out, "--clean-acc", 80,
                  "--autoattack-acc", 50)
    assert res.exit_code == 2 and "need --external-numbers" in res.output
    res = _invoke("export", ckpt, "--name", "Wu2024Annealing", "--out", out)
    assert res.exit_code == 2 and "--report evaluation.json" in res.output
    res = _invoke("export", ckpt, "--out", out, "--report", "r.json")
    assert res.exit_code == 2 and "--name" in res.output
    res = _invoke("export", ckpt, "--name", "Wu2024Annealing", "--out", out, "--report", tmp_path / "none.json")
    assert res.exit_code == 2 and "cannot read evaluation report" in res.output and "Traceback" not in res.output
    res = _invoke("export", ckpt, "--name", "Wu2024Annealing", "--out", out, "--external-numbers", "--clean-acc", 80,
                  "--autoattack-acc", 50, "--eps", "3")
    assert res.exit_code == 2 and "eps must be in (0, 1]" in res.output
    assert not out.exists() or not any(out.rglob("*"))


def test_export_robustbench_bundle_via_cli(tmp_path):
    from test_robustbench import fake_report

    torch.manual_seed(0)
    model = create_model("preact-resnet18", 100, **model_inputs("cifar100"))
    ck = tmp_path / "c.pt"
    save_checkpoint(ck, {"model": {"arch": "preact-resnet18", "num_classes": 100, "dataset": "cifar100",
                                   "kwargs": {}}, "config": {}, "student": model.state_dict(), "teacher": None})
    report = tmp_path / "evaluation.json"
    report.write_text(json.dumps(fake_report(ck, 10000, dataset="cifar100", which="student", clean=56.1, aa=26.87)))
    out = tmp_path / "bundle"
    res = _invoke("export", ck, "--name", "Wu2024Annealing_PRN18", "--out", out, "--report", report,
                  "--reported", 26.87, "--venue", "ICLR 2024")
    assert res.exit_code == 0, res.output
    info = json.loads((out / "model_info" / "cifar100" / "Linf" / "Wu2024Annealing_PRN18.json").read_text())
    assert info["clean_acc"] == "56.10" and info["autoattack_acc"] == "26.87" and info["dataset"] == "cifar100"
    entry = (out / "model_zoo" / "cifar100" / "Linf" / "Wu2024Annealing_PRN18.py").read_text()
    assert "DMPreActResNet(num_classes=100" in entry
    assert "Placement: rank" in res.output and "**Wu2024Annealing_PRN18**" in res.output
    assert (out / "evaluation" / "Wu2024Annealing_PRN18" / "evaluation.json").read_text() == report.read_text()
    res = _invoke("export", ck, "--which", "teacher", "--name", "X2024Y", "--out", out, "--report", report)
    assert res.exit_code == 2 and "no teacher weights" in res.output


def _rb_checkpoint(path, config=None):
    """A cifar10 ResNet-18 checkpoint (RobustBench has its class), student only."""
    torch.manual_seed(0)
    model = create_model("resnet18", 10, **model_inputs("cifar10"))
    save_checkpoint(path, {"model": {"arch": "resnet18", "num_classes": 10, "dataset": "cifar10", "kwargs": {}},
                           "config": config or {}, "student": model.state_dict(), "teacher": None})
    return path


def test_export_partial_evaluation_needs_allow_partial(tmp_path):
    from test_robustbench import fake_report

    ck = _rb_checkpoint(tmp_path / "c.pt")
    report = tmp_path / "evaluation.json"
    report.write_text(json.dumps(fake_report(ck, 4, which="student", clean=50.0, aa=25.0)))
    out = tmp_path / "bundle"
    res = _invoke("export", ck, "--name", "X2024Y", "--out", out, "--report", report)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "from 4 of the 10000 cifar10 test images" in res.output and "--allow-partial" in res.output
    res = _invoke("export", ck, "--name", "X2024Y", "--out", out, "--external-numbers", "--clean-acc", 50,
                  "--autoattack-acc", 25, "--n-examples", 100)
    assert res.exit_code != 0 and "from 100 of the 10000" in res.output
    assert not out.exists() or not any(out.rglob("*"))

    res = _invoke("export", ck, "--name", "X2024Y", "--out", out, "--report", report, "--allow-partial",
                  "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "partial evaluation on 4 of the 10000 test images" in res.output
    info = json.loads((out / "model_info" / "cifar10" / "Linf" / "X2024Y.json").read_text())
    assert "n_examples" not in info and info["footnote"].startswith("Partial evaluation: 4 of the 10000")
    assert info["unreliable"] is False and info["autoattack_acc"] == "25.00"
    res = _invoke("export", ck, "--name", "X2024Z", "--out", out, "--external-numbers", "--clean-acc", 50,
                  "--autoattack-acc", 25)
    assert res.exit_code == 0 and "partial evaluation" not in res.output  # external accuracies: all 10 000
    assert "external numbers" in res.output
    assert "n_examples" not in json.loads((out / "model_info" / "cifar10" / "Linf" / "X2024Z.json").read_text())


def test_export_without_adr_gets_a_neutral_name(tmp_path):
    ck = _rb_checkpoint(tmp_path / "c.pt", config={"adr": False, "method": "at"})
    out = tmp_path / "bundle"
    res = _invoke("export", ck, "--name", "X2024Y", "--out", out, "--external-numbers", "--clean-acc", 80,
                  "--autoattack-acc", 45)
    assert res.exit_code == 0, res.output
    info = json.loads((out / "model_info" / "cifar10" / "Linf" / "X2024Y.json").read_text())
    assert info["name"] == "PGD-AT (art-adr)" and "arxiv.org/abs/2305.12118" not in json.dumps(info)
    assert "trained without ADR" in res.output and "--link" in res.output
    res = _invoke("export", ck, "--name", "X2024Y", "-o", out, "--external-numbers", "--clean-acc", 80,
                  "--autoattack-acc", 45, "--overwrite", "-q")  # quiet: no list of written files, the note stays
    assert res.exit_code == 0 and "model_info:" not in res.output and "trained without ADR" in res.output


def test_export_device_and_option_defaults(tmp_path, ckpt):
    import click

    from art_adr.cli.export import export_command

    res = _invoke("export", ckpt, "--name", "X2024Y", "--out", tmp_path / "b", "--external-numbers", "--clean-acc",
                  80, "--autoattack-acc", 50, "--device", "tpu")
    assert res.exit_code == 2 and "unknown device 'tpu'" in res.output and "Traceback" not in res.output
    device = next(p for p in export_command.params if p.name == "device")
    assert device.default == "auto"
    undocumented = [p.name for p in export_command.params if isinstance(p, click.Option) and not p.is_flag
                    and not p.required and not p.show_default]
    assert undocumented == []
    helptext = _invoke("export", "--help").output
    assert "[default: auto]" in helptext and "--allow-partial" in helptext


def test_evaluate_robustbench_placement(tmp_path):
    from test_robustbench import write_cifar10_test

    write_cifar10_test(tmp_path / "data", n=4)
    ck = _small_checkpoint(tmp_path / "c10.pt", dataset="cifar10")
    out = tmp_path / "out"
    res = _invoke("evaluate", ck, "--robustbench", "--attacks", "clean", "--n-examples", 4, "--data-dir",
                  tmp_path / "data", "--batch-size", 4, "--out", out, "-q")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "evaluation.json").read_text())
    rb = report["models"]["student"]["robustbench"]
    assert rb["dataset"] == "cifar10" and rb["protocol"] is False and rb["snapshot_date"] == "2025-03-31"
    assert report["models"]["student"]["autoattack"]["version"] == "standard"
    assert f"rank {rb['rank']} of {rb['total']}" in res.output
    res = _invoke("evaluate", ck, "--robustbench", "--eps", "4/255", "--data-dir", tmp_path / "data")
    assert res.exit_code == 2 and "ε = 8/255" in res.output

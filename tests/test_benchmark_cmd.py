"""`art-adr benchmark`: the Table-1 experiment end to end on a tiny budget, and --runs re-tabulation."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from art_adr.benchmark import PAPER_TABLE1, method_label, plan_runs
from art_adr.cli import main

TINY = ["--epochs", "1", "--subset", "192", "--n-eval", "24", "--set", "max_iter=2", "--set", "val_size=64",
        "--set", "eval_max_iter=2", "-q"]


def test_plan_runs_uses_recipes_and_labels():
    plans = plan_runs("cifar100", awp=True, wa=True)
    assert [p.label for p in plans] == ["AT + WA + AWP", "AT + ADR + WA + AWP", "TRADES + WA + AWP",
                                        "TRADES + ADR + WA + AWP"]
    assert plans[1].config.temperature == (2.0, 1.0)
    fm = plan_runs("fashion-mnist", methods=["at-adr"], wa=True)[0]
    assert fm.label == "AT + ADR + WA" and fm.config.best_metric == "teacher_pgd_acc"
    assert set(PAPER_TABLE1["cifar10"]) == {method_label(p.config) for p in plan_runs("cifar10")}
    with pytest.raises(ValueError, match="unknown method"):
        plan_runs("cifar10", methods=["mart"])


def test_fashion_mnist_benchmark_writes_tables_and_plot_then_reuses_runs(tmp_path):
    out = tmp_path / "bm"
    result = CliRunner().invoke(main, ["benchmark", "--dataset", "fashion-mnist", "--attack", "pgd",
                                       "--out", str(out), *TINY], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "| TRADES + ADR |" in result.output
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert [r["method"] for r in rows] == ["AT", "AT + ADR", "TRADES", "TRADES + ADR"]
    for r in rows:
        assert float(r["robust_best"]) <= float(r["clean_best"]) + 1e-9
        assert float(r["robust_diff"]) == pytest.approx(float(r["robust_best"]) - float(r["robust_final"]))
    data = json.loads((out / "table1.json").read_text())
    assert data["dataset"] == "fashion-mnist" and len(data["rows"]) == 4
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and (out / "table1.md").is_file()
    # a second call reuses the finished runs and cached evaluations (and --runs only tabulates)
    runs = sorted(str(p) for p in (out / "runs").iterdir())
    again = CliRunner().invoke(main, ["benchmark", "--runs", runs[0], "--runs", runs[1], "--attack", "pgd",
                                      "--n-eval", "24", "--out", str(tmp_path / "t"), "-q"])
    assert again.exit_code == 0, again.output
    assert len(json.loads((tmp_path / "t" / "table1.json").read_text())["rows"]) == 2


def test_benchmark_bad_input_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(main, ["benchmark", "--dataset", "mnist3d", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "no recipe" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["benchmark"])
    assert r.exit_code != 0 and "--dataset" in r.output


@pytest.mark.slow
def test_benchmark_with_autoattack_on_a_handful_of_points(tmp_path):
    out = tmp_path / "aa"
    result = CliRunner().invoke(main, ["benchmark", "--dataset", "fashion-mnist", "--methods", "at-adr",
                                       "--out", str(out), *TINY[:4], "--n-eval", "8", *TINY[6:]],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = json.loads((out / "table1.json").read_text())["rows"][0]
    assert row["robust_attack"] == "aa" and row["robust_best"] <= row["clean_best"]

"""`art-adr benchmark`: the Table-1 experiment end to end on a tiny budget, and --runs re-tabulation."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from art_adr.cli import main
from art_adr.experiments.common import parse_seeds
from art_adr.experiments.table1 import PAPER_TABLE1, aggregate_rows, format_markdown, method_label, plan_runs
from art_adr.methods import METHODS

TINY = ["--epochs", "1", "--subset", "192", "--n-examples", "24", "--set", "max_iter=2", "--set", "val_size=64",
        "--set", "eval_max_iter=2", "-q", "--set", "arch_kwargs={width: 4}"]


def test_plan_runs_uses_recipes_and_labels():
    plans = plan_runs("cifar100", awp=True, wa=True)
    assert [p.label for p in plans] == ["AT + WA + AWP", "AT + ADR + WA + AWP", "TRADES + WA + AWP",
                                        "TRADES + ADR + WA + AWP"]
    assert plans[1].config.temperature == (2.0, 1.0)
    fm = plan_runs("fashion-mnist", methods=["at-adr"], wa=True)[0]
    assert fm.label == "AT + ADR + WA" and fm.config.best_metric == "teacher_robust_acc"
    assert set(PAPER_TABLE1["cifar10"]) == {method_label(p.config) for p in plan_runs("cifar10")}
    with pytest.raises(ValueError, match="unknown method"):
        plan_runs("cifar10", methods=["no-such-method"])
    with pytest.raises(ValueError, match="no recipe 'cifar10-mart'"):  # registered, but the paper has no MART
        plan_runs("cifar10", methods=["mart"])


def test_fashion_mnist_benchmark_writes_tables_and_plot_then_reuses_runs(tmp_path):
    out = tmp_path / "bm"
    result = CliRunner().invoke(main, ["benchmark", "--dataset", "fashion-mnist", "--attacks", "pgd",
                                       "--out", str(out), *TINY], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "| TRADES + ADR |" in result.output
    rows = list(csv.DictReader((out / "table1.csv").open()))
    seed_rows = [r for r in rows if r["kind"] == "seed"]
    assert [r["method"] for r in seed_rows if r["which"] == "student"] == ["AT", "AT + ADR", "TRADES", "TRADES + ADR"]
    assert [r["which"] for r in seed_rows[:2]] == ["student", "teacher"]  # both models of every run
    assert len(rows) == 16 and {r["kind"] for r in rows[8:]} == {"aggregate"}
    for r in seed_rows:
        assert float(r["robust_best"]) <= float(r["clean_best"]) + 1e-9
        assert float(r["robust_diff"]) == pytest.approx(float(r["robust_best"]) - float(r["robust_final"]))
    data = json.loads((out / "table1.json").read_text())
    assert data["dataset"] == "fashion-mnist" and len(data["rows"]) == 8 and len(data["aggregate"]) == 8
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and (out / "table1.md").is_file()
    # a second call reuses the finished runs and cached evaluations (and --runs only tabulates)
    runs = sorted(str(p) for p in (out / "runs").iterdir())
    again = CliRunner().invoke(main, ["benchmark", "--runs", runs[0], "--runs", runs[1], "--attacks", "pgd",
                                      "--n-examples", "24", "--out", str(tmp_path / "t"), "-q"])
    assert again.exit_code == 0, again.output
    assert len(json.loads((tmp_path / "t" / "table1.json").read_text())["rows"]) == 4


def test_plan_runs_with_recipe_prefix_or_named_recipes():
    assert [p.config.recipe for p in plan_runs(None, ["at", "trades-adr"], recipe_prefix="fashion-mnist")] == \
        ["fashion-mnist-at", "fashion-mnist-trades-adr"]
    plans = plan_runs(None, recipes=["fashion-mnist-trades", "fashion-mnist-at-adr"], wa=True)
    assert [p.label for p in plans] == ["TRADES + WA", "AT + ADR + WA"]
    with pytest.raises(ValueError, match="no recipe 'fashion-mnist-xx-at'"):
        plan_runs(None, ["at"], recipe_prefix="fashion-mnist-xx")


def test_aggregate_rows_mean_population_std_and_markdown():
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("3-5,3") == [3, 4, 5]
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds("a,b")
    rows = [{"method": "AT", "recipe": "r", "which": w, "seed": s, "kind": "seed", "robust_attack": "aa",
             "robust_best": rb, "robust_final": rf, "robust_diff": rb - rf, "aa_best": rb, "aa_final": rf,
             "aa_diff": rb - rf, "pgd_best": 60.0, "pgd_final": 50.0, "pgd_diff": 10.0, "clean_best": 80.0,
             "clean_final": 81.0, "clean_diff": -1.0, "best_epoch": s + 3, "final_epoch": 10, "n_examples": 100}
            for s, rb, rf in ((0, 52.80, 50.0), (1, 52.28, 51.0), (2, 52.74, 50.5), (3, 52.55, 50.5),
                              (4, 52.63, 50.0)) for w in ("student", "teacher")]
    agg = aggregate_rows(rows)
    assert [(r["which"], r["n_seeds"], r["seeds"]) for r in agg] == [("student", 5, "0,1,2,3,4"),
                                                                      ("teacher", 5, "0,1,2,3,4")]
    # the paper's Table 7 (AT robust accuracy over five runs): mean 52.60, std 0.182 (population std)
    assert agg[0]["robust_best"] == pytest.approx(52.60) and agg[0]["robust_best_std"] == pytest.approx(0.182, abs=1e-3)
    assert agg[0]["aa_diff"] == pytest.approx(52.60 - 50.4) and agg[0]["best_epochs"] == "3,4,5,6,7"
    md = format_markdown(agg, "fashion-mnist")
    assert "| AT | student | 5 | 60.00 ± 0.00 | 50.00 ± 0.00 | 10.00 ± 0.00 | 52.60 ± 0.18 |" in md
    assert "PGD-10 best" in md and "AutoAttack best" in md and "mean ± std over 5 seeds" in md
    assert "AutoAttack (paper) best" in format_markdown(rows[:2], "x", version="paper")
    assert "± " not in format_markdown(rows[:2], "x")  # one seed: plain numbers


def test_benchmark_seeds_per_seed_rows_aggregate_and_single_seed_layout_reuse(tmp_path):
    out = tmp_path / "bm"
    args = ["benchmark", "--dataset", "fashion-mnist", "--methods", "at-adr", "--out", str(out), *TINY]
    r = CliRunner().invoke(main, [*args, "--seeds", "0,1", "--attacks", "pgd"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["fashion-mnist-at-adr-s0", "fashion-mnist-at-adr-s1"]
    data = json.loads((out / "table1.json").read_text())
    assert [(x["seed"], x["which"]) for x in data["rows"]] == [(0, "student"), (0, "teacher"), (1, "student"),
                                                              (1, "teacher")]
    assert data["seeds"] == [0, 1] and data["n_seeds"] == 2 and data["models"] == ["student", "teacher"]
    student = data["aggregate"][0]
    assert student["n_seeds"] == 2 and student["which"] == "student"
    assert student["pgd_best"] == pytest.approx((data["rows"][0]["pgd_best"] + data["rows"][2]["pgd_best"]) / 2)
    assert "± " in (out / "table1.md").read_text() and (out / "curves.png").is_file()
    assert len(list(csv.DictReader((out / "table1.csv").open()))) == 6
    # a run dir of the single-seed layout (runs/<recipe>) holding the same run is reused in place; margin (CW-∞) is
    # added to the table while the cached PGD result is reused
    (out / "runs" / "fashion-mnist-at-adr-s0").rename(out / "runs" / "fashion-mnist-at-adr")
    legacy = out / "runs" / "fashion-mnist-at-adr"
    final, pgd_cache = legacy / "checkpoints" / "final.pt", legacy / "eval-teacher-n24-clean-pgd-standard-s0.json"
    stamps = final.stat().st_mtime_ns, pgd_cache.stat().st_mtime_ns
    r = CliRunner().invoke(main, [*args, "--seed", "0", "--attacks", "pgd,margin", "--which", "teacher"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads((out / "table1.json").read_text())
    assert data["runs"] == [str(legacy)] and (final.stat().st_mtime_ns, pgd_cache.stat().st_mtime_ns) == stamps
    assert not (out / "runs" / "fashion-mnist-at-adr-s0").exists()
    assert [x["which"] for x in data["rows"]] == ["teacher"] and data["rows"][0]["robust_attack"] == "pgd"
    assert {"pgd_best", "margin_best", "clean_best"} <= set(data["rows"][0]) and "CW-∞-10 best" in r.output
    r = CliRunner().invoke(main, [*args, "--attacks", "pgd,xx"])
    assert r.exit_code != 0 and "--attacks" in r.output


def _easy_run(run_dir, seed=0):
    """conftest.easy_run as an AT+ADR recipe's run, with a two-epoch metrics.jsonl."""
    from conftest import easy_run

    easy_run(run_dir, seed, recipe="easy-at-adr")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "pgd_acc": 0.1 * e, "clean_acc": 0.5,
                                                                "teacher_pgd_acc": 0.2}) + "\n" for e in (1, 2)))
    return run_dir


@pytest.mark.usefixtures("one_thread")
def test_benchmark_runs_with_paper_autoattack_and_two_seeds(tmp_path):
    runs = [_easy_run(tmp_path / f"r{s}", seed=s) for s in (0, 1)]
    out = tmp_path / "t"
    r = CliRunner().invoke(main, ["benchmark", "--runs", str(runs[0]), "--runs", str(runs[1]), "--attacks", "aa",
                                  "--aa-version", "paper", "--n-examples", "6", "--out", str(out), "-q"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads((out / "table1.json").read_text())
    assert data["autoattack_version"] == "paper" and data["seeds"] == [0, 1]
    assert [(x["seed"], x["which"]) for x in data["rows"]] == [(0, "student"), (0, "teacher"), (1, "student"),
                                                              (1, "teacher")]
    assert [(a["which"], a["n_seeds"]) for a in data["aggregate"]] == [("student", 2), ("teacher", 2)]
    assert all(x["aa_best"] <= x["clean_best"] for x in data["rows"])
    assert "AutoAttack (paper) best" in r.output and "mean ± std over 2 seeds" in r.output
    cache = json.loads((runs[1] / "eval-teacher-n6-clean-aa-paper-s1.json").read_text())
    assert cache["version"] == "paper" and cache["best"]["epoch"] == 1 and cache["final"]["epoch"] == 2


def test_benchmark_bad_input_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(main, ["benchmark", "--dataset", "mnist3d", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "no recipe" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["benchmark"])
    assert r.exit_code != 0 and "--dataset" in r.output


@pytest.mark.slow
def test_benchmark_with_autoattack_on_a_handful_of_points(tmp_path):
    out = tmp_path / "aa"
    result = CliRunner().invoke(main, ["benchmark", "--dataset", "fashion-mnist", "--methods", "at-adr",
                                       "--out", str(out), *TINY[:4], "--n-examples", "8", *TINY[6:]],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = json.loads((out / "table1.json").read_text())["rows"][0]
    assert row["robust_attack"] == "aa" and row["robust_best"] <= row["clean_best"]


def test_mart_and_mart_adr_benchmark_through_the_registry(tmp_path):
    """MART / MART+ADR: recipes from the registry's generator, trained, evaluated and tabled by `benchmark`."""
    out = tmp_path / "mart"
    r = CliRunner().invoke(main, ["benchmark", "--dataset", "fashion-mnist", "--methods", "mart,mart-adr",
                                  "--out", str(out), *TINY, "--attacks", "pgd", "--which", "student"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads((out / "table1.json").read_text())
    assert [x["method"] for x in data["rows"]] == ["MART", "MART + ADR"]
    assert all(0 <= x["pgd_final"] <= x["clean_final"] <= 100 for x in data["rows"])
    r = CliRunner().invoke(main, ["benchmark", "--dataset", "fashion-mnist", "--methods", "no-such-method-adr"])
    assert r.exit_code != 0 and ", ".join(f"{m}, {m}-adr" for m in METHODS.names()) in r.output


def test_curves_show_the_validation_attack_that_selects_beside_pgd_and_clean(tmp_path, monkeypatch):
    import matplotlib.figure

    from art_adr.experiments import table1

    apgd = [{"epoch": e, "clean_acc": 0.8, "pgd_acc": 0.6, "apgd_acc": 0.5, "teacher_apgd_acc": 0.52}
            for e in (1, 2)]
    old = [{"epoch": e, "clean_acc": 0.8, "pgd_acc": 0.6, "teacher_pgd_acc": 0.61} for e in (1, 2)]
    assert table1._selecting_key(apgd) == "apgd_acc" and table1._selecting_key(old) is None
    titles = []
    real_savefig = matplotlib.figure.Figure.savefig

    def savefig(fig, *args, **kwargs):
        titles.append([ax.get_title() for ax in fig.axes])
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    table1.plot_methods({"AT + ADR": apgd, "AT": old}, tmp_path / "a.png", "fashion-mnist")
    table1.plot_methods({"AT": old}, tmp_path / "b.png", "fashion-mnist")  # runs from before val_attack
    assert titles == [["validation attack (APGD-CE+T; selects best.pt)", "PGD-10 validation accuracy",
                       "clean validation accuracy"], ["PGD-10 validation accuracy", "clean validation accuracy"]]
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"

"""`art-adr sweep`: the ADR τ × λ grid on tiny runs, end-value rules, hold-out selection, resume, heat map."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from art_adr.cli import main
from art_adr.config import ConfigError
from art_adr.experiments.sweep import cell_name, grid_configs, select_cell

TINY = ["--epochs", "1", "--subset", "192", "--val-size", "64", "--set", "max_iter=2", "--set", "eval_max_iter=2",
        "--set", "arch_kwargs={width: 4}", "-q"]


def test_grid_end_rules_and_recipe_checks():
    # fashion-mnist-at-adr: τ 2.0 → 1.5, λ 0.5 → 0.8
    cells = grid_configs("fashion-mnist-at-adr", [1.5, 2.5], [0.5, 0.9], seeds=[0, 1])
    assert [(c["temperature"], c["interpolation"]) for c in cells] == [
        ((1.5, 1.0), (0.5, 0.8)), ((1.5, 1.0), (0.9, 1.0)), ((2.5, 2.0), (0.5, 0.8)), ((2.5, 2.0), (0.9, 1.0))]
    assert [c.seed for c in cells[0]["configs"]] == [0, 1]
    cfg = cells[3]["configs"][1]
    assert cfg.temperature == (2.5, 2.0) and cfg.interpolation == (0.9, 1.0) and cfg.recipe == "fashion-mnist-at-adr"
    const = grid_configs("fashion-mnist-at-adr", [3.0], [0.7], ends="constant")[0]
    assert const["temperature"] == (3.0, 3.0) and const["interpolation"] == (0.7, 0.7)
    fixed = grid_configs("fashion-mnist-at-adr", [3.0], [0.3], temperature_end=1.0, interpolation_end=0.95)[0]
    assert fixed["temperature"] == (3.0, 1.0) and fixed["interpolation"] == (0.3, 0.95)
    teacher = grid_configs("fashion-mnist-at-adr", [2.0], [0.5], model="teacher")[0]["configs"][0]
    assert teacher.best_metric == "teacher_robust_acc"
    assert cell_name((2.0, 1.5), (0.7, 0.9), 3) == "tau2-1.5_lam0.7-0.9_s3"
    with pytest.raises(ConfigError, match="does not use ADR"):
        grid_configs("fashion-mnist-at", [2.0], [0.5])
    with pytest.raises(ConfigError, match="hold-out"):
        grid_configs("fashion-mnist-at-adr", [2.0], [0.5], overrides={"val_split": "test"})
    with pytest.raises(ConfigError, match="ends"):
        grid_configs("fashion-mnist-at-adr", [2.0], [0.5], ends="ratio")


def test_grid_on_a_recipe_with_auto_tau_or_lambda_needs_constant_or_fixed_ends():
    for name in ("temperature", "interpolation"):
        with pytest.raises(ConfigError, match=f"sets {name}: auto.*--ends constant or a fixed --{name}-end"):
            grid_configs("fashion-mnist-at-adr", [2.0], [0.5], overrides={name: "auto"})
    const = grid_configs("fashion-mnist-at-adr", [3.0], [0.7], ends="constant",
                         overrides={"temperature": "auto", "interpolation": "auto"})[0]
    assert const["temperature"] == (3.0, 3.0) and const["configs"][0].temperature == (3.0, 3.0)
    fixed = grid_configs("fashion-mnist-at-adr", [3.0], [0.3], temperature_end=1.0, overrides={"temperature": "auto"})
    assert fixed[0]["temperature"] == (3.0, 1.0) and fixed[0]["interpolation"] == pytest.approx((0.3, 0.6))


def test_select_cell_highest_score_then_clean_then_grid_order():
    cells = [{"val_robust": 50.0, "val_clean": 70.0}, {"val_robust": 52.0, "val_clean": 60.0},
             {"val_robust": 52.0, "val_clean": 65.0}, {"val_robust": 52.0, "val_clean": 65.0}]
    assert select_cell(cells) == 2
    aa = [dict(c, val_aa=a, val_aa_clean=70.0) for c, a in zip(cells, (40.0, 30.0, 30.0, 30.0))]
    assert select_cell(aa, "aa") == 0


def test_sweep_trains_grid_selects_on_holdout_resumes_and_adds_autoattack(tmp_path, monkeypatch):
    out = tmp_path / "sw"
    args = ["sweep", "--recipe", "fashion-mnist-at-adr", "--temperatures", "1.5,2.5", "--interpolations", "0.7",
            "--out", str(out), *TINY]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads((out / "sweep.json").read_text())
    assert data["format"] == "art-adr-sweep" and data["grid"]["ends"] == "gap"
    assert [c["temperature"] for c in data["cells"]] == [[1.5, 1.0], [2.5, 2.0]]
    assert [c["interpolation"] for c in data["cells"]] == [[0.7, 1.0], [0.7, 1.0]]
    scores = [c["val_robust"] for c in data["cells"]]
    assert all(c["val_metric"] == "apgd_acc" for c in data["cells"])
    assert data["selected"]["score"] == max(scores) and data["selected"]["index"] in (0, 1)
    assert data["selection"]["split"] == "holdout" and "never test images" in data["selection"]["rule"]
    for c in data["cells"]:  # the score is the run's own per-epoch hold-out validation, best epoch
        hist = [json.loads(x) for x in open(c["runs"][0] + "/metrics.jsonl")]
        assert c["val_robust"] == pytest.approx(100 * max(h["apgd_acc"] for h in hist if "apgd_acc" in h))
        assert 0 <= c["val_pgd"] <= 100  # PGD is logged beside it
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG" and "selected: τ" in r.output
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["tau1.5-1_lam0.7-1_s0", "tau2.5-2_lam0.7-1_s0"]

    # again with AutoAttack on the hold-out: the runs are reused, and the attacked images are hold-out images
    import art_adr.evaluation.pipeline as ev
    from art_adr.runs import load_data, load_run_config

    finals = [out / "runs" / d / "checkpoints" / "final.pt" for d in ("tau1.5-1_lam0.7-1_s0", "tau2.5-2_lam0.7-1_s0")]
    stamps = [f.stat().st_mtime_ns for f in finals]
    seen = []

    def fake_evaluate_model(model, x, y, *, attacks, **kw):
        seen.append((x.clone(), attacks, kw["aa_version"], kw["spec"]))
        return {"results": {"clean": 50.0, **{a: 10.0 * len(seen) for a in attacks if a != "clean"}}}

    monkeypatch.setattr(ev, "evaluate_model", fake_evaluate_model)
    r = CliRunner().invoke(main, [*args, "--attacks", "aa", "--n-examples", "16", "--aa-version", "paper"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert [f.stat().st_mtime_ns for f in finals] == stamps
    data = json.loads((out / "sweep.json").read_text())
    assert [c["val_aa"] for c in data["cells"]] == [10.0, 20.0] and data["selected"]["index"] == 1
    assert data["selection"]["attack"] == "aa" and data["selection"]["aa_version"] == "paper"
    val = load_data(load_run_config(finals[0].parent.parent))[1]
    assert len(seen) == 2 and seen[0][1] == ("clean", "aa") and seen[0][2] == "paper"
    run_config = load_run_config(finals[0].parent.parent)  # the run's own threat model
    assert (seen[0][3].norm, seen[0][3].eps, seen[0][3].step_size) == (run_config.norm, run_config.eps,
                                                                       run_config.eps_step)
    assert np.allclose(seen[0][0].numpy(), val.x[:16].astype(np.float32) / 255)
    assert "hold-out AutoAttack" in r.output
    # cached: a third call attacks nothing
    r = CliRunner().invoke(main, [*args, "--attacks", "aa", "--n-examples", "16", "--aa-version", "paper"])
    assert r.exit_code == 0 and len(seen) == 2
    # any other registered attack scores the cells the same way (one registry): margin on the hold-out
    from art_adr.attacks import ATTACKS

    r = CliRunner().invoke(main, [*args, "--attacks", "val,margin", "--n-examples", "16"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads((out / "sweep.json").read_text())
    assert [c["val_margin"] for c in data["cells"]] == [30.0, 40.0] and data["selected"]["index"] == 1
    assert len(seen) == 4 and seen[2][1] == ("clean", "margin") and data["selection"]["attack"] == "margin"
    assert f"hold-out {ATTACKS['margin'].label}" in r.output and (out / "sweep.png").is_file()
    r = CliRunner().invoke(main, [*args, "--attacks", "aa,margin"])
    assert r.exit_code == 2 and "at most one of" in r.output
    # the removed old spellings are unknown options now
    r = CliRunner().invoke(main, [*args, "--attack", "aa"])
    assert r.exit_code == 2 and "No such option '--attack'" in r.output


def test_sweep_bad_input_is_one_line(tmp_path):
    r = CliRunner().invoke(main, ["sweep", "--recipe", "fashion-mnist-at", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "does not use ADR" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["sweep", "--recipe", "fashion-mnist-at-adr", "--temperatures", "a,b"])
    assert r.exit_code != 0 and "--temperatures" in r.output
    r = CliRunner().invoke(main, ["sweep", "--recipe", "fashion-mnist-at-adr", "--set", "temperature=2"])
    assert r.exit_code != 0 and "--temperatures" in r.output


def test_heatmap_and_markdown_with_seeds_and_autoattack(tmp_path):
    from art_adr.experiments.sweep import format_sweep, plot_heatmap

    cells = [{"temperature": [t, t - 0.5], "interpolation": [lam, min(1.0, lam + 0.2)], "seeds": [0, 1],
              "val_metric": "teacher_apgd_acc", "val_robust": 40 + t + lam, "val_robust_std": 0.5,
              "val_pgd": 45.0, "val_pgd_std": 0.4, "val_clean": 70.0, "val_clean_std": 1.0,
              "val_robust_best": 41.0, "val_robust_best_std": 0.1, "val_robust_final": 39.0,
              "val_robust_final_std": 0.2,
              "val_aa": 30 + t, "val_aa_std": 0.3, "val_aa_clean": 70.0, "val_aa_clean_std": 1.0}
             for t in (1.5, 2.0) for lam in (0.5, 0.7, 0.9)]
    summary = {"recipe": "r", "seeds": [0, 1], "cells": cells, "grid": {"temperatures": [1.5, 2.0],
                                                                        "interpolations": [0.5, 0.7, 0.9]},
               "selection": {"model": "teacher", "epoch": "final", "aa_version": "standard", "rule": "the rule"},
               "selected": {"index": 5}}
    assert plot_heatmap(summary, tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    md = format_sweep(summary)
    assert md.count("**←**") == 1 and "| 2→1.5 | 0.9→1 | 42.90 ± 0.50 | 45.00 ± 0.40 |" in md
    assert "Selection: the rule" in md and "hold-out APGD-CE+T (final)" in md

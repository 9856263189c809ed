"""The evaluation-attack registry (and docs/DESIGN.md's example of adding one), the one loader and subsetting rule
of a run's images, and the one cache of a run's evaluations."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from art_adr.cli import main
from art_adr.evaluation import EVAL_ATTACKS, attack_names, get_eval_attack, register_attack
from conftest import easy_run as _easy_run

pytestmark = pytest.mark.usefixtures("one_thread")  # AutoAttack is far slower oversubscribed
ROOT = Path(__file__).resolve().parents[1]


def test_registry_holds_the_builtin_attacks_in_order_with_columns_and_help():
    assert attack_names() == ("clean", "pgd", "cw", "apgd", "aa")
    import art_adr.evaluation as ev
    from art_adr.evaluation import robust_attack_names

    assert ev.ATTACKS == attack_names() and robust_attack_names() == ("pgd", "cw", "apgd", "aa")
    settings = {"pgd_steps": 10, "cw_steps": 20, "norm": "L2", "aa_version": "paper"}
    assert [get_eval_attack(a).column(settings) for a in attack_names()] == [
        "Clean", "PGD-10", "CW-L2-20", "APGD-CE+T-10", "AutoAttack (paper)"]
    assert get_eval_attack("aa").column({**settings, "aa_version": None}) == "AutoAttack"
    assert get_eval_attack("cw", cw_steps=7, aa_version="rand").cw_steps == 7  # options: only its own fields
    assert get_eval_attack("aa", cw_steps=7, aa_version="rand").aa_version == "rand"
    with pytest.raises(ValueError, match="choose from clean, pgd, cw, apgd, aa"):
        get_eval_attack("fgsm")
    with pytest.raises(ValueError, match="needs a new name"):
        register_attack(type("Again", (EVAL_ATTACKS["pgd"],), {}))  # the name "pgd" is taken


def test_registry_imports_without_torch():
    code = ("import sys; from art_adr.evaluation import EVAL_ATTACKS, attacks_help; attacks_help(); "
            "import art_adr.cli.evaluate; assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_designs_evaluation_attack_example_registers_and_runs(tmp_path, monkeypatch):
    """The PGD-50 example of docs/DESIGN.md, as a module of art_adr.evaluation: `evaluate --attacks` takes it, and
    Table 1 shows it (imported before the attack is registered: it reads the registry when it tabulates)."""
    from art_adr.experiments.table1 import format_markdown

    design = (ROOT / "docs" / "DESIGN.md").read_text()
    code = re.search(r"```python\n(.*?)```", design.split("## Adding an evaluation attack")[1], flags=re.S).group(1)
    module = types.ModuleType("art_adr.evaluation.pgd50")
    module.__package__ = "art_adr.evaluation"
    monkeypatch.setitem(sys.modules, "art_adr.evaluation.pgd50", module)  # dataclasses look their module up
    try:
        exec(compile(code, "DESIGN.md", "exec"), module.__dict__)
        assert attack_names()[-1] == "pgd50" and EVAL_ATTACKS["pgd50"].__name__ == "PGD50"
        run = _easy_run(tmp_path / "run")
        out = tmp_path / "ev"
        r = CliRunner().invoke(main, ["evaluate", str(run), "--attacks", "nope", "-q"])
        assert r.exit_code != 0 and "choose from clean,pgd,cw,apgd,aa,pgd50" in r.output
        r = CliRunner().invoke(main, ["evaluate", str(run), "--attacks", "clean,pgd,pgd50", "--n-examples", "8",
                                      "--out", str(out), "-q"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        report = json.loads((out / "evaluation.json").read_text())
        entry = report["models"]["student"]
        assert 0 <= entry["results"]["pgd50"] <= entry["results"]["pgd"] <= entry["results"]["clean"] <= 100
        assert entry["attacks"]["pgd50"] == "PGD-50 L∞ ε=64/255 α=0.012549, 5 restarts"  # α = 2.5·ε/50
        assert "| model | Clean | PGD-10 | PGD-50×5 |" in r.output
        row = {"method": "AT", "which": "student", "n_examples": 8, "pgd50_best": 1.0, "pgd50_final": 1.0,
               "pgd50_diff": 0.0, "clean_best": 2.0, "clean_final": 2.0, "clean_diff": 0.0, "best_epoch": 1,
               "kind": "aggregate"}
        assert "PGD-50×5 best" in format_markdown([row], "fashion-mnist")
    finally:
        EVAL_ATTACKS.pop("pgd50", None)
    assert attack_names() == ("clean", "pgd", "cw", "apgd", "aa")


def test_one_loader_and_first_n_for_test_set_and_holdout(tmp_path):
    from art_adr.checkpoint import load_checkpoint
    from art_adr.evaluation import first_n, load_split, run_split
    from art_adr.runs import load_data, load_run_config

    run = _easy_run(tmp_path / "run", val_split="holdout", val_size=40)
    config = load_run_config(run)
    train, val, test, _ = load_data(config)
    assert np.array_equal(run_split(config, "test", 5).x, test.x[:5]) and len(run_split(config)) == len(test)
    assert np.array_equal(run_split(config, "holdout", 7).y, val.y[:7]) and len(run_split(config, "holdout")) == 40
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    assert np.array_equal(load_split(ckpt, "holdout").x, val.x) and np.array_equal(load_split(ckpt).x, test.x)
    assert first_n(test, None) is test and first_n(test, 10**6) is test and len(first_n(test, 3)) == 3
    with pytest.raises(ValueError, match=">= 1"):
        first_n(test, 0)
    with pytest.raises(ValueError, match="split must be one of test, holdout"):
        run_split(config, "val")
    plain = load_run_config(_easy_run(tmp_path / "plain", val_split="test"))
    with pytest.raises(ValueError, match="val_split=holdout"):
        run_split(plain, "holdout")


def test_cache_evaluates_each_checkpoint_once_and_again_when_it_changes(tmp_path, monkeypatch):
    import art_adr.evaluation.pipeline as pipeline
    from art_adr.evaluation import cache_name, cached_evaluation

    run = _easy_run(tmp_path / "run")
    calls = []
    real = pipeline.evaluate_model

    def counting(model, x, y, **kw):
        calls.append((len(y), kw["attacks"]))
        return real(model, x, y, **kw)

    monkeypatch.setattr(pipeline, "evaluate_model", counting)
    kw = dict(which="student", attacks=("clean", "pgd"), n_examples=6, seed=0, device="cpu", progress=False)
    first = cached_evaluation(run, tags=("best",), **kw)
    assert calls == [(6, ("clean", "pgd"))] and set(first["best"]) >= {"epoch", "clean", "pgd", "sha256"}
    path = run / cache_name("student", 6, "pgd")
    assert path.name == "eval-student-n6-clean-pgd-standard-s0.json"  # the benchmark's name of earlier versions
    both = cached_evaluation(run, **kw)  # final added, best reused
    assert len(calls) == 2 and both["best"] == first["best"] and both["final"]["epoch"] == 2
    stamp = path.stat().st_mtime_ns
    assert cached_evaluation(run, **kw) == both and len(calls) == 2 and path.stat().st_mtime_ns == stamp
    ckpt = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    ckpt["epoch"] = 3
    torch.save(ckpt, run / "checkpoints" / "final.pt")
    again = cached_evaluation(run, **kw)  # the final checkpoint changed: evaluated again, best still cached
    assert len(calls) == 3 and again["final"]["epoch"] == 3 and again["best"] == first["best"]
    assert json.loads(path.read_text())["final"]["sha256"] == again["final"]["sha256"]
    other = cache_name("student", 6, "pgd", split="holdout", spec={"steps": 20})
    assert other.startswith("eval-student-holdout-n6-clean-pgd-standard-spec") and other.endswith("-s0.json")


def test_a_damaged_cache_is_stale_evaluated_again_and_said_once(tmp_path, monkeypatch, capsys):
    import pickle

    import art_adr.evaluation.pipeline as pipeline
    from art_adr.evaluation import cache_name, cached_evaluation

    run = _easy_run(tmp_path / "run")
    calls = []
    real = pipeline.evaluate_model
    monkeypatch.setattr(pipeline, "evaluate_model", lambda model, x, y, **kw: calls.append(1) or real(model, x, y,
                                                                                                       **kw))
    kw = dict(which="student", attacks=("clean", "pgd"), n_examples=4, seed=0, device="cpu", progress=False)
    good = cached_evaluation(run, **kw)
    path = run / cache_name("student", 4, "pgd")
    whole = json.loads(path.read_text())
    damaged = {"a list": b"[1, 2]", "a string entry": json.dumps({**whole, "best": "x"}).encode(),
               "no n_examples": json.dumps({k: v for k, v in whole.items() if k != "n_examples"}).encode(),
               "invalid JSON": b'{"best": ', "a pickle": pickle.dumps({"best": 1})}
    for what, data in damaged.items():
        path.write_bytes(data)
        calls.clear()
        capsys.readouterr()
        assert cached_evaluation(run, **kw) == good, what
        assert calls, what  # evaluated again ...
        err = capsys.readouterr().err
        assert err.count("is damaged") == 1 and str(path) in err, (what, err)  # ... said once, naming the file
        assert json.loads(path.read_text()) == whole, what
    calls.clear()
    assert cached_evaluation(run, **kw) == good and not calls and "is damaged" not in capsys.readouterr().err


def test_cache_reads_the_sweeps_former_files(tmp_path, monkeypatch):
    import art_adr.evaluation.pipeline as pipeline
    from art_adr.evaluation import cached_evaluation, file_sha256

    run = _easy_run(tmp_path / "run", seed=3, val_split="holdout", val_size=40)
    digest = file_sha256(run / "checkpoints" / "best.pt")
    old = {"epoch": 1, "n_val": 16, "version": "paper", "clean": 60.0, "aa": 12.5, "sha256": digest,
           "norm": "Linf", "eps": 64 / 255}
    (run / "sweep-aa-teacher-best-n16-paper.json").write_text(json.dumps(old))
    monkeypatch.setattr(pipeline, "evaluate_model", lambda *a, **k: pytest.fail("the cache was not read"))
    ev = cached_evaluation(run, which="teacher", attacks=("clean", "aa"), n_examples=16, version="paper", seed=3,
                           split="holdout", tags=("best",))
    assert ev["n_examples"] == 16 and (ev["best"]["aa"], ev["best"]["clean"], ev["best"]["epoch"]) == (12.5, 60.0, 1)

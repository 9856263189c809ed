"""The attack registry (and docs/DESIGN.md's example of adding one), the one loader and subsetting rule
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
import yaml
from click.testing import CliRunner

from art_adr.attacks import (
    ATTACKS,
    AttackSpec,
    attack_names,
    get_attack,
    register_attack,
    robust_attack_names,
    validating_attack_names,
)
from art_adr.cli import main
from conftest import easy_run as _easy_run

pytestmark = pytest.mark.usefixtures("one_thread")  # AutoAttack is far slower oversubscribed
ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ("clean", "pgd", "margin", "apgd", "aa")


def test_registry_holds_the_builtin_attacks_in_order_with_columns_and_help():
    assert attack_names()[:len(BUILT_IN)] == BUILT_IN and robust_attack_names() == attack_names()[1:]
    assert validating_attack_names() == tuple(n for n in attack_names() if ATTACKS[n].validates)
    assert {"pgd", "margin", "apgd"} <= set(validating_attack_names()) and "aa" not in validating_attack_names()
    settings = {"pgd_steps": 10, "cw_steps": 20, "norm": "L2", "aa_version": "paper"}
    assert [get_attack(a).column(settings) for a in BUILT_IN] == [
        "Clean", "PGD-10", "CW-L2-20", "APGD-CE+T-10", "AutoAttack (paper)"]
    assert get_attack("aa").column({**settings, "aa_version": None}) == "AutoAttack"
    assert get_attack("margin", cw_steps=7, aa_version="rand").cw_steps == 7  # options: only its own fields
    assert get_attack("aa", cw_steps=7, aa_version="rand").aa_version == "rand"
    with pytest.raises(ValueError, match=f"unknown attack 'no-such-attack'; registered: {', '.join(attack_names())}"):
        get_attack("no-such-attack")
    with pytest.raises(ValueError, match="needs a new name"):
        register_attack(type("Again", (ATTACKS["pgd"],), {}))  # the name "pgd" is taken


def test_registry_imports_without_torch():
    code = ("import sys; from art_adr.attacks import ATTACKS, attacks_help; attacks_help(); "
            "import art_adr.evaluation, art_adr.validation, art_adr.cli.evaluate, art_adr.cli.train; "
            "assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_margin_is_one_attack_for_validation_and_evaluation():
    """Validation's margin and the evaluation's former CW are one class: the same flags from the batch method and
    from the whole-set run (its loop), and the same PGD run as the validation's when cw_steps is the spec's k."""
    from conftest import TinyNet

    torch.manual_seed(0)
    model = TinyNet().eval()
    x, y = torch.rand(24, 1, 8, 8), torch.randint(0, 4, (24,))
    spec = AttackSpec(eps=0.3, steps=3)
    margin = get_attack("margin")
    whole = margin.run(model, x, y, spec=spec, seed=5, batch_size=8, start_flags=torch.ones(24, dtype=torch.bool))
    gen = torch.Generator().manual_seed(5)
    batches = torch.cat([margin.flags(model, x[i:i + 8], y[i:i + 8], spec, clip_values=(0.0, 1.0), generator=gen)
                         for i in range(0, 24, 8)])
    assert torch.equal(whole, batches)
    assert margin.details(spec) == spec.replace(loss="cw").describe() and margin.describe(spec) == "Margin-PGD-3"
    assert get_attack("margin", cw_steps=6).details(spec) == spec.replace(loss="cw", steps=6).describe()


def _design_example(monkeypatch) -> str:
    """Register docs/DESIGN.md's "Adding an attack" example as the module art_adr.attacks.<name>."""
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    code = re.search(r"```python\n(.*?)```", design.split("## Adding an attack")[1], flags=re.S).group(1)
    name = re.search(r'name: ClassVar\[str\] = "(\w+)"', code).group(1)
    module = types.ModuleType(f"art_adr.attacks.{name}")
    module.__package__ = "art_adr.attacks"
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
    exec(compile(code, "DESIGN.md", "exec"), module.__dict__)
    return name


TRAIN = ["--dataset", "synthetic", "--set", "dataset_kwargs={n: 160, shape: [1, 8, 8], num_classes: 4}",
         "--val-size", "32", "--max-iter", "1", "--batch-size", "64", "--eps", "0.1", "--eval-max-iter", "1",
         "--arch", "small-cnn", "--set", "arch_kwargs={width: 4}", "--epochs", "2", "-q"]


def test_the_designs_attack_example_validates_and_evaluates(tmp_path, monkeypatch):
    """The example of docs/DESIGN.md, as a module of art_adr.attacks: one class that `train --val-attack` selects
    best.pt with and `evaluate --attacks` runs; Table 1 shows it (imported before the attack is registered)."""
    from art_adr.experiments.table1 import format_markdown
    from art_adr.validation import resolve_best_metric
    from conftest import metric_rows

    before = attack_names()
    name = _design_example(monkeypatch)
    try:
        attack = ATTACKS[name]()
        assert attack_names() == (*before, name) and name in validating_attack_names()
        run = tmp_path / "run"
        r = CliRunner().invoke(main, ["train", *TRAIN, "--val-attack", name, "--out", str(run)],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        rows = [r for r in metric_rows(run / "metrics.jsonl") if f"{name}_acc" in r]
        last = rows[-1]
        assert 0 <= last[f"{name}_acc"] <= last["clean_acc"] and f"teacher_{name}_acc" in last
        config = yaml.safe_load((run / "config.yaml").read_text())
        key = resolve_best_metric(config["best_metric"], config["val_attack"])
        assert config["val_attack"] == name and key in (f"{name}_acc", f"teacher_{name}_acc")
        assert last["best_epoch"] == max(rows, key=lambda r: r[key])["epoch"]  # it selects best.pt
        r = CliRunner().invoke(main, ["train", *TRAIN, "--val-attack", "aa", "--out", str(tmp_path / "no")])
        assert r.exit_code != 0 and f"val_attack must be one of {', '.join(validating_attack_names())}" in r.output
        out = tmp_path / "ev"
        r = CliRunner().invoke(main, ["evaluate", str(run), "--attacks", "no-such-attack", "-q"])
        assert r.exit_code != 0 and f"choose from {','.join(attack_names())}" in r.output
        r = CliRunner().invoke(main, ["evaluate", str(run), "--attacks", f"clean,pgd,{name}", "--n-examples", "8",
                                      "--out", str(out), "-q"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        entry = json.loads((out / "evaluation.json").read_text())["models"]["student"]
        assert 0 <= entry["results"][name] <= entry["results"]["clean"] <= 100
        assert entry["attacks"][name] == attack.details(AttackSpec(eps=0.1))
        assert f"| model | Clean | PGD-10 | {attack.column({})} |" in r.output
        row = {"method": "AT", "which": "student", "n_examples": 8, f"{name}_best": 1.0, f"{name}_final": 1.0,
               f"{name}_diff": 0.0, "clean_best": 2.0, "clean_final": 2.0, "clean_diff": 0.0, "best_epoch": 1,
               "kind": "aggregate"}
        assert f"{attack.column({})} best" in format_markdown([row], "fashion-mnist")
    finally:
        ATTACKS.unregister(name)
    assert attack_names() == before


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


def test_cache_reads_the_files_of_margins_former_name_cw(tmp_path, monkeypatch):
    """Cache files written when margin was called cw (user data: ``-clean-cw-`` files, key ``cw``) still count,
    under the new name; an entry of a changed checkpoint is evaluated again."""
    import art_adr.evaluation.pipeline as pipeline
    from art_adr.evaluation import cache_name, cached_evaluation, file_sha256

    run = _easy_run(tmp_path / "run")
    digest = file_sha256(run / "checkpoints" / "best.pt")
    old = {"which": "student", "attacks": ["clean", "cw"], "version": "standard", "n_examples": 6,
           "best": {"epoch": 1, "clean": 50.0, "cw": 16.67, "sha256": digest, "norm": "Linf", "eps": 64 / 255},
           "final": {"epoch": 2, "clean": 50.0, "cw": 33.33, "sha256": "0" * 64, "norm": "Linf", "eps": 64 / 255}}
    (run / "eval-student-n6-clean-cw-standard-s0.json").write_text(json.dumps(old))
    assert cache_name("student", 6, "cw") == "eval-student-n6-clean-cw-standard-s0.json"  # the old file's name
    monkeypatch.setattr(pipeline, "evaluate_model", lambda *a, **k: pytest.fail("the former cache was not read"))
    kw = dict(which="student", attacks=("clean", "margin"), n_examples=6, seed=0, device="cpu", progress=False)
    ev = cached_evaluation(run, tags=("best",), **kw)
    assert (ev["best"]["margin"], ev["best"]["clean"], ev["n_examples"]) == (16.67, 50.0, 6) and "cw" not in ev["best"]
    monkeypatch.undo()
    ev = cached_evaluation(run, **kw)  # final.pt's hash differs from the old entry's: evaluated again
    assert ev["best"]["margin"] == 16.67 and ev["final"]["sha256"] == file_sha256(run / "checkpoints" / "final.pt")
    assert json.loads((run / cache_name("student", 6, "margin")).read_text())["best"]["margin"] == 16.67

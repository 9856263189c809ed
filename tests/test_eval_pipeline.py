"""One evaluation pipeline: AttackSpec, the one step-size rule, evaluate_checkpoint (norm-aware, checkpoint file /
epoch / hash in the report) and one CLI vocabulary across evaluate, analyze, benchmark and sweep."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import click
import pytest
import torch
from click.testing import CliRunner

from art_adr.attacks import AttackSpec, default_eps_step
from art_adr.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # AutoAttack is far slower oversubscribed

L2_EPS, L2_STEP = 0.1, 0.05


# ------------------------------------------------------------------------------------------- AttackSpec
def test_attack_spec_defaults_step_rule_and_text():
    spec = AttackSpec()
    assert (spec.norm, spec.eps, spec.steps, spec.restarts, spec.loss) == ("inf", 8 / 255, 10, 1, "ce")
    assert spec.step_size == pytest.approx(2 / 255) and spec.describe() == "PGD-10 L∞ ε=8/255 α=2/255"
    assert AttackSpec(norm="L2", eps=0.5, steps=20, restarts=3, loss="cw").describe() == \
        "CW-20 L2 ε=0.5 α=0.0625, 3 restarts"
    assert AttackSpec(norm=2).norm == "2" and AttackSpec(norm=float("inf")).threat_model == "Linf"
    assert AttackSpec(eps_step=1 / 255).step_size == pytest.approx(1 / 255)
    # the one rule: min(ε, 2.5·ε/k), ε/4 at 10 steps (the training recipes' ε 0.1 / α 0.025 and 8/255 / 2/255)
    assert default_eps_step(0.1, 10) == pytest.approx(0.025) and default_eps_step(0.3, 1) == 0.3
    assert default_eps_step(8 / 255, 100) == pytest.approx(0.2 / 255)
    import art_adr.evaluation as ev

    assert ev.default_eps_step is default_eps_step and ev.AttackSpec is AttackSpec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.eps = 0.1  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, field", [
    ({"norm": "1"}, "norm"), ({"eps": 0}, "eps"), ({"eps": float("nan")}, "eps"), ({"eps": "8/255"}, "eps"),
    ({"eps_step": 1.0}, "eps_step"), ({"eps_step": 0.0}, "eps_step"), ({"steps": -1}, "steps"),
    ({"steps": 2.5}, "steps"), ({"steps": True}, "steps"), ({"restarts": 0}, "restarts"), ({"loss": "mse"}, "loss"),
])
def test_attack_spec_rejects_bad_fields_naming_them(kwargs, field):
    with pytest.raises(ValueError, match=rf"AttackSpec\.{field} "):
        AttackSpec(**kwargs)


def test_attack_spec_from_config_keeps_the_runs_step_only_at_its_eps_and_steps():
    cfg = {"norm": "2", "eps": "0.5", "eps_step": 0.2, "max_iter": 3}
    spec = AttackSpec.from_config(cfg)
    assert (spec.norm, spec.eps, spec.step_size, spec.steps) == ("2", 0.5, 0.2, 3)
    assert AttackSpec.from_config(cfg, steps=3, eps=None).step_size == 0.2  # None changes are ignored
    # the evaluation's step count decides the step (issue 17: PGD-10 of a one-step run stepped α = ε ten times)
    assert AttackSpec.from_config(cfg, steps=10).step_size == pytest.approx(default_eps_step(0.5, 10))
    one_step = {"eps": 0.1, "eps_step": 0.1, "max_iter": 1}
    assert AttackSpec.from_config(one_step, steps=10).step_size == pytest.approx(0.025)
    assert AttackSpec.from_config(cfg, eps=0.25).step_size == pytest.approx(default_eps_step(0.25, 3))
    assert AttackSpec.from_config({}) == AttackSpec()
    with pytest.raises(ValueError, match="needs its own eps"):
        AttackSpec.from_config(cfg, norm="inf")
    assert AttackSpec.from_config(cfg, norm="inf", eps=8 / 255).threat_model == "Linf"


# ----------------------------------------------------------------------------------- a tiny L2-trained run
@pytest.fixture(scope="module")
def l2_run(tmp_path_factory):
    from art_adr.config import resolve_config
    from art_adr.runs import train_run

    config = resolve_config(None, {
        "dataset": "synthetic", "dataset_kwargs": {"n": 192, "shape": [1, 8, 8], "num_classes": 4}, "norm": "2",
        "eps": L2_EPS, "eps_step": L2_STEP, "max_iter": 2, "epochs": 1, "batch_size": 64, "val_size": 32,
        "eval_max_iter": 2})
    return train_run(config, tmp_path_factory.mktemp("l2") / "run", verbose=False)


def _test_tensors(run, n):
    from art_adr.checkpoint import load_checkpoint
    from art_adr.evaluation import load_split
    from art_adr.loader import to_unit_float

    ds = load_split(load_checkpoint(run)).subset(n)
    return to_unit_float(torch.as_tensor(ds.x)), torch.as_tensor(ds.y)


def test_l2_run_is_evaluated_in_l2_end_to_end_with_checkpoint_identity(l2_run, tmp_path):
    from art_adr.attacks import get_attack
    from art_adr.checkpoint import load_model
    from art_adr.evaluation import format_table, validate_report

    out = tmp_path / "ev"
    res = CliRunner().invoke(main, ["evaluate", str(l2_run), "--attacks", "clean,pgd,margin,aa", "--n-examples", "16",
                                    "--batch-size", "16", "--out", str(out), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "evaluation.json").read_text())
    validate_report(report)
    assert report["norm"] == "L2" and report["eps"] == pytest.approx(L2_EPS)
    # PGD-10 of a run trained with PGD-2: the one step rule for 10 steps (ε/4), not the run's α (issue 17)
    assert report["settings"]["eps_step"] == pytest.approx(L2_EPS / 4) and report["settings"]["spec"]["norm"] == "2"
    entry = report["models"]["student"]
    assert entry["autoattack"]["norm"] == "L2" and entry["attacks"]["pgd"] == "PGD-10 L2 ε=0.1 α=0.025"
    assert "L2 ε = 0.1" in res.output and "CW-L2-10" in res.output and "L∞" not in res.output.split("|")[0]
    # the checkpoint file, its epoch and its hash
    best = l2_run / "checkpoints" / "best.pt"
    model, ckpt = load_model(best)
    info = report["checkpoint_info"]
    assert info == {"file": str(best), "epoch": int(ckpt["epoch"]),
                    "sha256": hashlib.sha256(best.read_bytes()).hexdigest()}
    assert f"`{best}`, epoch {ckpt['epoch']}, sha256 {info['sha256'][:16]}" in format_table(report)
    # the PGD number is L2 PGD; L∞ PGD at the same radius (what the run used to be evaluated with) is far lower
    x, y = _test_tensors(l2_run, 16)
    pgd = get_attack("pgd")
    l2 = pgd.run(model, x, y, spec=AttackSpec(norm="2", eps=L2_EPS, eps_step=L2_EPS / 4, steps=10))
    linf = pgd.run(model, x, y, spec=AttackSpec(norm="inf", eps=L2_EPS, steps=10))
    assert entry["results"]["pgd"] == pytest.approx(100 * l2.float().mean().item())
    assert l2.sum() > linf.sum()
    assert entry["results"]["aa"] <= entry["results"]["pgd"] + 1e-9


def test_evaluate_checkpoint_norm_override_and_l2_sanity(l2_run):
    from art_adr.evaluation import evaluate_checkpoint, validate_report

    report = evaluate_checkpoint(l2_run, which="both", attacks=("clean", "pgd"), n_examples=8, device="cpu",
                                 progress=False, sanity={"steps_values": (1, 2), "eps_curve_steps": 5})
    validate_report(report)
    assert set(report["models"]) == {"student", "teacher"} and report["split"] == "test"
    sanity = report["models"]["student"]["sanity"]
    assert sanity["norm"] == "L2" and max(sanity["eps_curve"]["eps"]) == pytest.approx(math.sqrt(64))
    assert sanity["unbounded_zero"] and sanity["eps_curve"]["accuracy"][-1] == 0.0
    linf = evaluate_checkpoint(l2_run, attacks=("clean", "pgd"), n_examples=8, device="cpu", progress=False,
                               spec={"norm": "inf", "eps": 8 / 255})
    assert linf["norm"] == "Linf" and linf["settings"]["eps_step"] == pytest.approx(2 / 255)
    final = evaluate_checkpoint(l2_run, prefer="final", attacks=("clean",), n_examples=2, device="cpu",
                                progress=False)
    assert final["checkpoint_info"]["file"] == str(l2_run / "checkpoints" / "final.pt")
    holdout = evaluate_checkpoint(l2_run, attacks=("clean",), device="cpu", progress=False, split="holdout")
    assert holdout["split"] == "holdout" and holdout["n_examples"] == 32
    with pytest.raises(ValueError, match="needs its own eps"):
        evaluate_checkpoint(l2_run, spec={"norm": "inf"}, device="cpu")
    with pytest.raises(ValueError, match="split must be one of"):
        evaluate_checkpoint(l2_run, split="train", device="cpu")


def test_report_schema_requires_checkpoint_identity_and_a_known_norm(l2_run):
    from art_adr.evaluation import evaluate_checkpoint, validate_report

    report = evaluate_checkpoint(l2_run, attacks=("clean",), n_examples=4, device="cpu", progress=False)
    validate_report(report)
    with pytest.raises(ValueError, match="report.norm: expected one of Linf, L2"):
        validate_report({**report, "norm": "L3"})
    with pytest.raises(ValueError, match=r"report.checkpoint_info: missing"):
        validate_report({k: v for k, v in report.items() if k != "checkpoint_info"})
    with pytest.raises(ValueError, match=r"checkpoint_info.sha256: missing"):
        validate_report({**report, "checkpoint_info": {"file": "x", "epoch": None}})


def test_benchmark_evaluates_a_run_in_its_norm_and_caches_its_hash(l2_run):
    from art_adr.experiments.table1 import evaluate_run, format_markdown

    ev = evaluate_run(l2_run, 8, attacks=("clean", "pgd"), device="cpu", progress=False, which="student")
    digest = hashlib.sha256((l2_run / "checkpoints" / "final.pt").read_bytes()).hexdigest()
    assert ev["final"]["norm"] == "L2" and ev["final"]["eps"] == pytest.approx(L2_EPS)
    assert ev["final"]["sha256"] == digest
    rows = [{"method": "AT", "recipe": "r", "which": "student", "seed": 0, "kind": "seed", "robust_attack": "pgd",
             **{f"{k}_{m}": 1.0 for k in ("robust", "pgd", "clean") for m in ("best", "final", "diff")},
             "best_epoch": 1, "final_epoch": 1, "n_examples": 8, "norm": "L2", "eps": L2_EPS}]
    assert "L2 ε = 0.1" in format_markdown(rows, "synthetic")


# ------------------------------------------------------------------------------------------- one CLI
COMMANDS = ("evaluate", "analyze", "benchmark", "sweep")


def _command(name: str) -> click.Command:
    return main.get_command(click.Context(main), name)


@pytest.mark.parametrize("name", COMMANDS)
def test_same_names_and_documented_defaults_in_every_command(name):
    cmd = _command(name)
    opts = {o: p for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
    assert "--n-examples" in opts and "--quiet" in opts and "-q" in opts
    assert opts["--device"].default == "auto"
    if name != "analyze":  # analyze runs no AutoAttack
        assert list(opts["--aa-version"].type.choices) == ["standard", "rand", "paper"]
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.hidden:
            continue
        assert p.help, (name, p.opts)
        if not p.is_flag and not p.required and not p.multiple:
            assert p.show_default, (name, p.opts)  # a value or a sentence saying what the default is


def test_dataset_option_of_benchmark_says_when_it_is_required():
    text = " ".join(CliRunner().invoke(main, ["benchmark", "--help"]).output.split())
    assert "Required unless --recipe-prefix, --recipes or --runs" in text
    assert "(the CPU-sized default)" not in text


@pytest.mark.parametrize("args", [
    ["evaluate", "{ck}"], ["analyze", "{ck}"], ["benchmark", "--dataset", "fashion-mnist"],
    ["sweep", "--recipe", "fashion-mnist-at-adr"],
])
def test_bad_device_is_one_error_line_without_usage(args, l2_run, tmp_path):
    ck = str(l2_run / "checkpoints" / "best.pt")
    res = CliRunner().invoke(main, [a.format(ck=ck) for a in args] + ["--device", "tpu", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and res.output.startswith("Error: --device: unknown device 'tpu'"), res.output
    assert "Usage:" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_benchmark_runs_a_b_form(tmp_path):
    from test_benchmark_cmd import _easy_run

    runs = [_easy_run(tmp_path / f"r{s}", seed=s) for s in (0, 1)]
    out = tmp_path / "t"
    res = CliRunner().invoke(main, ["benchmark", "--runs", str(runs[0]), str(runs[1]), "--attacks", "pgd",
                                    "--which", "student", "--n-examples", "4", "--out", str(out), "-q"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "table1.json").read_text())
    assert data["runs"] == [str(r) for r in runs] and data["n_examples"] == 4
    assert "L∞ ε = 64/255" in res.output  # the runs' own threat model in the table title
    again = CliRunner().invoke(main, ["benchmark", "--runs", str(runs[0]), "--attacks", "pgd", "--which", "student",
                                      "--n-examples", "4", "--out", str(tmp_path / "t2"), "-q"])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "t2" / "table1.json").read_text())["n_examples"] == 4
    stray = CliRunner().invoke(main, ["benchmark", str(runs[0]), "--out", str(tmp_path / "t3")])
    assert stray.exit_code == 2 and "follow --runs" in stray.output


def test_evaluate_aa_version_paper(l2_run, tmp_path):
    res = CliRunner().invoke(main, ["evaluate", str(l2_run), "--attacks", "clean,aa", "--aa-version", "paper",
                                    "--n-examples", "2", "-q", "--out", str(tmp_path / "e")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e" / "evaluation.json").read_text())["settings"]["aa_version"] == "paper"

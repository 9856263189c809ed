"""Evaluation: ε parsing, PGD/CW/AutoAttack accuracies, AutoAttack checks captured, report schema, sanity."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from art_adr.attacks import AttackSpec
from art_adr.attacks.autoattack import capture_autoattack_warnings
from art_adr.budget import parse_eps
from art_adr.evaluation import (
    SCHEMA,
    build_report,
    default_eps_step,
    evaluate_model,
    format_eps,
    format_table,
    sanity_checks,
    validate_report,
    write_report,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # AutoAttack is far slower oversubscribed
INFO = {"file": "c.pt", "epoch": 3, "sha256": "0" * 64}


class Linear(nn.Module):
    """A linear 10-class model on 1×8×8 images with large weights: easy to attack."""

    def __init__(self, seed: int = 0, scale: float = 5.0, softmax: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc.weight.copy_(scale * torch.randn(10, 64, generator=g))
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        return out.softmax(1) if self.softmax else out


class Constant(nn.Module):
    """Logits independent of the input (zero gradients): no attack can succeed."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.arange(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 10) + 0.0 * x.flatten(1).sum(1, keepdim=True)


def _data(model: nn.Module, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 10  # two clean mistakes
    return x, y


def test_parse_eps_accepts_fractions_and_numbers():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps(" 0.5 ") == 0.5 and parse_eps(1) == 1.0
    assert format_eps(8 / 255) == "8/255" and format_eps(0.3) == "0.3"


@pytest.mark.parametrize("bad", ["0", "-1/255", "1.5", "abc", "1/0", "nan", "inf", ""])
def test_parse_eps_rejects_outside_unit_interval(bad):
    with pytest.raises(ValueError):
        parse_eps(bad)


@given(st.integers(1, 255), st.integers(1, 1000))
def test_eps_roundtrip_and_step_in_range(k, steps):
    eps = parse_eps(f"{k}/255")
    assert format_eps(eps) == f"{k}/255"
    assert 0 < default_eps_step(eps, steps) <= eps


def test_evaluate_model_all_attacks_report_schema_and_files(tmp_path):
    torch.manual_seed(0)
    model = Linear()
    x, y = _data(model)
    entry = evaluate_model(model, x, y, spec=AttackSpec(eps=0.25, steps=3), batch_size=4, seed=0, progress=False)
    res = entry["results"]
    assert res["clean"] == 75.0
    assert res["pgd"] <= res["clean"] and res["margin"] <= res["clean"]
    cum = entry["autoattack"]["cumulative"]
    assert entry["autoattack"]["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    values = [cum["clean"]] + [cum[a] for a in entry["autoattack"]["attacks"]]
    assert values == sorted(values, reverse=True)  # cumulative worst case never increases
    assert res["aa"] == cum["square"] and entry["autoattack"]["seed"] == 0
    settings = {"attacks": ["clean", "pgd", "margin", "aa"], "pgd_steps": 3, "restarts": 1, "eps_step": None,
                "cw_steps": 3, "aa_version": "standard"}
    report = build_report({"student": entry}, checkpoint="c.pt", checkpoint_info=INFO, dataset="toy",
                          n_examples=len(y), eps=64 / 255, seed=0, batch_size=4, device="cpu", settings=settings)
    validate_report(report)
    paths = write_report(report, tmp_path / "out")
    loaded = json.loads(paths["json"].read_text())
    validate_report(loaded)
    assert loaded["eps_text"] == "64/255"
    table = paths["markdown"].read_text()
    assert "| student | 75.00 |" in table and "+APGD-CE" in table
    assert "Checkpoint `c.pt`, epoch 3, sha256 0000000000000000" in table and "L∞ ε = 64/255" in table
    assert loaded["checkpoint_info"] == INFO and loaded["norm"] == "Linf"
    assert entry["attacks"] == {"pgd": "PGD-3 L∞ ε=0.25 α=0.208333", "margin": "CW-3 L∞ ε=0.25 α=0.208333",
                                "apgd": "APGD-CE-3+APGD-T-3×3"}
    assert format_table(loaded) == table
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["evaluation.json", "evaluation.md"]


def test_validate_report_lists_problems():
    assert "models" in SCHEMA
    bad = {"format": "art-adr-evaluation", "models": {"student": {"results": {"clean": 140.0}, "time_s": {}}}}
    with pytest.raises(ValueError, match=r"report\.version: missing.*clean: expected a percentage"):
        validate_report(bad)


def test_autoattack_checks_are_captured():
    probs = Linear(softmax=True)
    x = torch.rand(4, 1, 8, 8)
    from pyautoattack import checks

    with capture_autoattack_warnings() as logged:
        checks.check_range_output(probs, x, logger=logging.getLogger("auto-attack"))
        checks.check_range_output(probs, x)  # the warnings.warn path
        checks.check_zero_gradients(torch.zeros(2, 3), logger=logging.getLogger("auto-attack"))
    assert sum("probability distribution" in m for m in logged) == 2
    assert any("zero gradient" in m for m in logged)


def test_autoattack_warnings_reach_the_model_entry():
    model = Linear(softmax=True)
    x, y = _data(model, n=4)
    entry = evaluate_model(model, x, y, attacks=("clean", "aa"), spec=AttackSpec(eps=0.5), batch_size=4,
                           progress=False)
    assert any("probability distribution" in w for w in entry["autoattack"]["warnings"])
    report = build_report({"student": entry}, checkpoint="c", checkpoint_info=INFO, dataset="toy", n_examples=4,
                          eps=8 / 255, seed=0, batch_size=4, device="cpu",
                          settings={"attacks": ["clean", "aa"], "pgd_steps": 10, "restarts": 1,
                                    "eps_step": None, "cw_steps": 10, "aa_version": "standard"})
    assert report["warnings"] == entry["autoattack"]["warnings"]


def test_sanity_passes_for_attackable_model_and_writes_plots(tmp_path):
    model = Linear()
    x, y = _data(model)
    res = sanity_checks(model, x, y, eps=8 / 255, eps_values=(0, 8 / 255, 1.0), steps_values=(1, 4, 8),
                        eps_curve_steps=8, batch_size=8, out_dir=tmp_path, name="student")
    assert res["passed"] and res["summary"].startswith("PASS")
    assert res["eps_curve"]["accuracy"][0] == 75.0 and res["eps_curve"]["accuracy"][-1] == 0.0
    for path in res["plots"].values():
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_sanity_fails_for_gradient_free_model():
    model = Constant()
    x = torch.rand(6, 1, 8, 8)
    y = torch.full((6,), 9)
    res = sanity_checks(model, x, y, eps_values=(0, 1.0), steps_values=(1, 2), eps_curve_steps=2)
    assert not res["passed"] and not res["unbounded_zero"] and res["summary"].startswith("FAIL")


def test_paper_protocol_sets_pyautoattack_iterations_targets_and_queries():
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack

    from art_adr.attacks.autoattack import (
        AA_ATTACKS,
        autoattack_settings,
        configure_paper_protocol,
        describe_autoattack,
    )

    model = Linear()
    adv = AutoAttack(model, eps=0.1, version="custom", attacks=list(AA_ATTACKS["paper"]), seed=0)
    configure_paper_protocol(adv, n_classes=100)
    fresh = APGDAttack(model, n_iter=10, eps=0.1)  # the checkpoint schedule APGD derives from 10 iterations
    for apgd in (adv.apgd, adv.apgd_targeted):
        assert (apgd.n_iter, apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr) == \
            (10, fresh.n_iter_2, fresh.n_iter_min, fresh.size_decr)
    settings = autoattack_settings(adv, adv.attacks_to_run)
    assert settings == {
        "apgd-ce": {"n_iter": 10, "n_restarts": 1, "eot_iter": 1},
        "apgd-t": {"n_iter": 10, "n_restarts": 1, "n_target_classes": 99},
        "fab-t": {"n_iter": 10, "n_restarts": 1, "n_target_classes": 99},
        "square": {"n_queries": 5000, "n_restarts": 1, "p_init": 0.8, "rescale_schedule": True}}
    text = describe_autoattack("paper", settings)
    assert "APGD-T (10 it., 1 restart, 99 targets)" in text and "torchattacks 3.3" in text
    standard = AutoAttack(model, eps=0.1, version="standard", seed=0)
    st_settings = autoattack_settings(standard, standard.attacks_to_run)
    assert st_settings["apgd-t"]["n_iter"] == 100 and st_settings["fab-t"]["n_target_classes"] == 9


def test_evaluate_model_paper_autoattack_version_in_report(tmp_path):
    torch.manual_seed(0)
    model = Linear()
    x, y = _data(model)
    entry = evaluate_model(model, x, y, attacks=("clean", "aa"), spec=AttackSpec(eps=0.25), aa_version="paper",
                           batch_size=4, progress=False)
    aa = entry["autoattack"]
    assert aa["version"] == "paper" and aa["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert aa["settings"]["apgd-ce"]["n_iter"] == 10 and aa["settings"]["fab-t"]["n_target_classes"] == 9
    assert entry["results"]["aa"] <= entry["results"]["clean"]
    settings = {"attacks": ["clean", "aa"], "pgd_steps": 10, "restarts": 1, "eps_step": None, "cw_steps": 10,
                "aa_version": "paper"}
    report = build_report({"student": entry}, checkpoint="c.pt", checkpoint_info=INFO, dataset="toy",
                          n_examples=len(y), eps=0.25, seed=0, batch_size=4, device="cpu", settings=settings)
    paths = write_report(report, tmp_path)
    loaded = json.loads(paths["json"].read_text())
    validate_report(loaded)
    table = paths["markdown"].read_text()
    assert "AutoAttack (paper)" in table and "AutoAttack 'paper'" in table and "Square (5000 queries" in table

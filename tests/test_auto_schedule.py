"""Automatic τ/λ (art_adr.auto_schedule): temperature scaling under attack, trust from robust accuracy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from art_adr import AdversarialTrainerADR
from art_adr.auto_schedule import AutoRectification, fit_temperature, is_auto
from art_adr.config import resolve_config

EPS = dict(eps=0.1, eps_step=0.05, max_iter=2, eval_max_iter=2)


def _brute(z: torch.Tensor, y: torch.Tensor) -> float:
    taus = torch.exp(torch.linspace(math.log(0.5), math.log(5.0), 4001))
    nll = torch.stack([F.cross_entropy(z / t, y) for t in taus])
    return float(taus[nll.argmin()])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.3, 3.0))
def test_fit_temperature_finds_the_nll_minimum(seed, scale):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(64, 5, generator=g) * 3 * scale
    y = torch.randint(0, 5, (64,), generator=g)
    tau = fit_temperature(z, y)
    assert 0.5 <= tau <= 5.0
    assert F.cross_entropy(z / tau, y) <= F.cross_entropy(z / _brute(z, y), y) + 1e-4


def test_fit_temperature_undoes_a_known_overconfidence():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 10, generator=g) * 2
    y = torch.distributions.Categorical(logits=true_logits).sample()
    assert fit_temperature(true_logits * 2.5, y) == pytest.approx(2.5, rel=0.1)
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(true_logits, y, bounds=(2.0, 1.0))


def test_state_and_the_auto_flag():
    auto = AutoRectification(auto_temperature=True, auto_interpolation=True)
    auto.update(torch.tensor([[3.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 1]), 0.625)
    assert auto.interpolation == 0.625 and auto.updates == 1 and 0.5 <= auto.temperature <= 5.0
    other = AutoRectification(True, True)
    other.load_state_dict(auto.state_dict())
    assert (other.temperature, other.interpolation, other.updates) == (auto.temperature, auto.interpolation, 1)
    assert set(auto.state_dict()) == {"tau", "lambda", "updates"}  # the checkpoint's keys (on disk)
    assert is_auto("auto") and is_auto(" AUTO ") and not is_auto((2.0, 1.0))


def test_trainer_sets_tau_and_lambda_from_each_validation(blobs, make_classifier):
    x, y = blobs
    t = AdversarialTrainerADR(make_classifier(), temperature="auto", interpolation="auto", val_attack="margin",
                              verbose=False, **EPS)
    assert t.schedule() == (1.0, 0.0)  # before any evidence: raw softmax, one-hot labels
    t.fit(x[:256], y[:256], validation_data=(x[256:320], y[256:320]), nb_epochs=3, batch_size=64)
    h = t.history
    assert (h[0]["tau"], h[0]["lambda"]) == (1.0, 0.0)
    for prev, cur in zip(h, h[1:]):  # each epoch trains with what the previous validation set
        assert cur["lambda"] == pytest.approx(prev["teacher_margin_acc"])
        assert 0.5 <= cur["tau"] <= 5.0
    state = t.state_dict()
    assert state["auto"]["updates"] == 3
    resumed = AdversarialTrainerADR(make_classifier(), temperature="auto", interpolation="auto",
                                    val_attack="margin", verbose=False, **EPS)
    resumed.load_state_dict(state)
    assert resumed.schedule() == t.schedule()
    with pytest.raises(ValueError, match="validation_data"):
        resumed.fit(x[:64], y[:64], nb_epochs=1, batch_size=64)


def test_only_one_of_them_auto(blobs, make_classifier):
    x, y = blobs
    t = AdversarialTrainerADR(make_classifier(), temperature=(2.0, 2.0), interpolation="auto", verbose=False,
                              val_attack="pgd", **EPS)
    t.fit(x[:128], y[:128], validation_data=(x[256:320], y[256:320]), nb_epochs=2, batch_size=64)
    assert [r["tau"] for r in t.history] == [2.0, 2.0]
    assert t.history[1]["lambda"] == pytest.approx(t.history[0]["teacher_pgd_acc"])


def test_cli_and_config_take_auto(tmp_path):
    from test_runs import SYNTH

    from art_adr.cli import main
    from art_adr.runs import load_run_config

    cfg = resolve_config("fashion-mnist-at-adr", {"temperature": "auto", "interpolation": ["auto"]})
    assert (cfg.temperature, cfg.interpolation) == ("auto", "auto")
    out = tmp_path / "auto"
    r = CliRunner().invoke(main, ["train", *SYNTH, "--epochs", "2", "--temperature", "auto", "--interpolation",
                                  "auto", "--val-attack", "margin", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert load_run_config(out).temperature == "auto"
    r = CliRunner().invoke(main, ["train", *SYNTH, "--set", "val_size=0", "--temperature", "auto",
                                  "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "val_size" in r.output

"""Numbers of the analysis module (entropy, JS, ECE, landscapes) and the ``art-adr analyze`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from art_adr.analysis import (
    adapt_images,
    digits_ood,
    entropy,
    expected_calibration_error,
    filter_normalized_direction,
    input_landscape,
    js_divergence,
    perturbed_weights,
    reliability_curve,
    robust_loss,
    surface_gradient,
    weight_landscape,
)
from conftest import TinyNet


def _probs(seed: int, n: int, c: int, sharp: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(sharp * torch.randn(n, c, generator=g, dtype=torch.float64), dim=1)


@pytest.fixture
def tiny() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyNet(4, 1).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (24,), generator=g)
    return model, x, y


# ------------------------------------------------------------------------------------- entropy / JS


@pytest.mark.parametrize("c", [2, 10, 100])
def test_entropy_uniform_is_log_c_and_one_hot_is_zero(c: int) -> None:
    uniform = torch.full((3, c), 1.0 / c, dtype=torch.float64)
    assert entropy(uniform).tolist() == pytest.approx([math.log(c)] * 3, abs=1e-12)
    assert entropy(torch.eye(c)).tolist() == pytest.approx([0.0] * c, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), c=st.integers(2, 20), sharp=st.floats(0.0, 30.0))
def test_entropy_bounded(seed: int, c: int, sharp: float) -> None:
    h = entropy(_probs(seed, 8, c, sharp))
    assert (h >= -1e-12).all() and (h <= math.log(c) + 1e-9).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), c=st.integers(2, 20), sharp=st.floats(0.0, 50.0))
def test_js_properties(seed: int, c: int, sharp: float) -> None:
    p, q = _probs(seed, 16, c, sharp), _probs(seed + 1, 16, c, sharp)
    assert js_divergence(p, p).abs().max() < 1e-12
    assert torch.allclose(js_divergence(p, q), js_divergence(q, p), atol=1e-12)
    d = js_divergence(p, q)
    assert (d >= 0).all() and (d <= math.log(2) + 1e-12).all()


def test_js_disjoint_supports_is_log2_and_matches_direct_formula() -> None:
    p, q = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.5, 0.5]])
    assert float(js_divergence(p, q)) == pytest.approx(math.log(2), abs=1e-12)
    p, q = _probs(3, 5, 4), _probs(4, 5, 4)
    m = (p + q) / 2
    direct = 0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)
    assert torch.allclose(js_divergence(p, q), direct, atol=1e-12)


# ------------------------------------------------------------------------------------- calibration


def test_ece_of_calibrated_predictor_is_near_zero_and_overconfident_is_large() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2.0 * torch.randn(40_000, 10, generator=g, dtype=torch.float64), dim=1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)  # labels drawn from the prediction
    assert expected_calibration_error(probs, labels, 15) < 0.015
    sharpened = torch.softmax(8.0 * probs.log(), dim=1)  # same argmax, confidence pushed towards 1
    assert expected_calibration_error(sharpened, labels, 15) > 0.2


def test_ece_hand_computed() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = torch.tensor([0, 1, 0, 1])
    # bins of width 0.5: (0.5, 1] holds all 4 (confidences 0.9, 0.9, 0.6, 0.7), accuracy 3/4
    assert expected_calibration_error(probs, labels, 2) == pytest.approx(abs(0.75 - 0.775))
    # 10 bins: {0.9, 0.9} acc 0.5 -> 0.4 gap; {0.6} acc 1 -> 0.4; {0.7} acc 1 -> 0.3
    assert expected_calibration_error(probs, labels, 10) == pytest.approx((2 * 0.4 + 0.4 + 0.3) / 4)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), c=st.integers(2, 10), n_bins=st.integers(1, 30), sharp=st.floats(0, 20))
def test_reliability_curve_consistent(seed: int, c: int, n_bins: int, sharp: float) -> None:
    probs = _probs(seed, 50, c, sharp)
    labels = torch.randint(0, c, (50,), generator=torch.Generator().manual_seed(seed))
    curve = reliability_curve(probs, labels, n_bins)
    assert curve["counts"].sum() == 50 and len(curve["bin_edges"]) == n_bins + 1
    filled = curve["counts"] > 0
    lo, hi = curve["bin_edges"][:-1][filled], curve["bin_edges"][1:][filled]
    conf = curve["confidence"][filled]
    assert (conf >= lo - 1e-12).all() and (conf <= hi + 1e-12).all()
    assert 0.0 <= expected_calibration_error(probs, labels, n_bins) <= 1.0


# -------------------------------------------------------------------------------- weight landscape


def test_filter_normalized_direction_norms(tiny) -> None:
    model, _, _ = tiny
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    params = dict(model.named_parameters())
    assert set(d) == set(params)
    for name, p in params.items():
        if p.dim() <= 1:  # biases and BatchNorm affine parameters stay put
            assert torch.count_nonzero(d[name]) == 0
        else:
            assert torch.allclose(d[name].flatten(1).norm(dim=1), p.flatten(1).norm(dim=1), rtol=1e-5)
    d2 = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    assert all(torch.equal(d[k], d2[k]) for k in d)


def test_weight_landscape_at_zero_is_pgd_loss_and_weights_restored(tiny) -> None:
    model, x, y = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = {"eps": 0.1, "max_iter": 10, "seed": 7, "batch_size": 10}
    land = weight_landscape(model, x, y, [-0.5, 0.0, 0.5], generator=torch.Generator().manual_seed(3), **kw)
    loss0, acc0 = robust_loss(model, x, y, **kw)
    assert land["losses"][1] == pytest.approx(loss0, abs=1e-9)
    assert land["accuracies"][1] == pytest.approx(acc0)
    assert land["losses"][0] != pytest.approx(loss0) and land["losses"][2] != pytest.approx(loss0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training
    # PGD-10 raises the loss above the clean loss
    with torch.no_grad():
        clean = torch.nn.functional.cross_entropy(model(x).double(), y)
    assert loss0 > float(clean)


def test_perturbed_weights_restores_after_error(tiny) -> None:
    model, _, _ = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError), perturbed_weights(model, d, 0.3):
        assert not torch.equal(model.conv.weight, before["conv.weight"])
        raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------------- input landscape


def test_input_landscape_origin_is_clean_loss(tiny) -> None:
    model, x, y = tiny
    land = input_landscape(model, x[0], y[0], grid=5, radius=0.1, generator=torch.Generator().manual_seed(0))
    assert land["loss"].shape == (5, 5) and land["a"][2] == 0.0 and land["b"][2] == 0.0
    clean = torch.nn.functional.cross_entropy(model(x[:1]).double(), y[:1]).detach()
    assert land["loss"][2, 2] == pytest.approx(float(clean), abs=1e-6)
    # moving along +sign(grad) increases the loss to first order on this smooth net
    assert land["loss"][3, 2] > land["loss"][2, 2]
    # explicit r2 and grid coordinates: b-axis alone is the loss at x + b * r2
    r2 = torch.ones_like(x[0])
    land2 = input_landscape(model, x[0], int(y[0]), grid=[0.0, 0.05], r2=r2)
    direct = torch.nn.functional.cross_entropy(model((x[0] + 0.05).unsqueeze(0)).double(), y[:1]).detach()
    assert land2["loss"][0, 1] == pytest.approx(float(direct), abs=1e-6)


def test_surface_gradient_of_plane() -> None:
    a = np.linspace(-2, 2, 9) / 255
    aa, bb = np.meshgrid(a, a, indexing="ij")
    z = 0.3 * aa * 255 - 0.4 * bb * 255  # slope (0.3, -0.4) per 1/255
    assert np.allclose(surface_gradient(z, a, a), 0.5)


def test_ood_digits_resized() -> None:
    x = digits_ood((3, 28, 28), n=7)
    assert x.shape == (7, 3, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert adapt_images(torch.rand(2, 3, 8, 8), (1, 4, 4)).shape == (2, 1, 4, 4)


# --------------------------------------------------------------------------------------------- CLI


def test_cli_writes_figures_and_json(tmp_path) -> None:
    from click.testing import CliRunner

    from art_adr.checkpoint import save_checkpoint
    from art_adr.cli import main
    from art_adr.data import model_inputs
    from art_adr.models import create_model

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        kwargs = {"in_channels": 3, "width": 4}
        model = create_model("small-cnn", 10, **model_inputs("synthetic"), **kwargs)
        desc = {"arch": "small-cnn", "num_classes": 10, "dataset": "synthetic", "kwargs": kwargs}
        sd = model.state_dict()
        paths.append(save_checkpoint(tmp_path / f"m{seed}.pt", {"model": desc, "config": {"eps": "8/255"},
                                                                 "student": sd, "teacher": sd}))
    out = tmp_path / "out"
    args = [
        "analyze", str(paths[0]), "--vs", str(paths[1]), "--label", "A", "--label", "B", "--which", "teacher",
        "--n-examples", "16", "--n-ood", "8", "--directions", "2", "--points", "3", "--weight-examples", "8",
        "--input-examples", "2", "--grid", "3", "--eval-max-iter", "2", "--out", str(out), "--quiet",
        "--data-dir", str(tmp_path),
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    names = {"entropy_ood.png", "entropy_correctness.png", "entropy_adversarial.png", "js_divergence.png",
             "calibration.png", "weight_landscape.png", "input_landscape.png"}
    assert names <= {p.name for p in out.glob("*.png")}
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["settings"]["eps"] == pytest.approx(8 / 255)
    for label in ("A", "B"):
        m = summary["models"][label]
        assert 0 <= m["ece_clean"] <= 1 and len(m["weight_landscape"]) == 2
        assert len(m["weight_landscape"][0]["losses"]) == 3 and len(m["input_landscape"]) == 2
        assert m["entropy"]["ood"]["n"] == 8 and sum(m["entropy"]["clean"]["hist"]["counts"]) == 16
    # --skip leaves the landscapes out
    out2 = tmp_path / "out2"
    result = CliRunner().invoke(main, [*args[:2], "--skip", "weights", "--skip", "inputs", "--ood", "none",
                                       "--n-examples", "8", "--eval-max-iter", "1", "--out", str(out2), "--quiet",
                                       "--data-dir", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out2.glob("*.png")} == names - {"entropy_ood.png", "weight_landscape.png",
                                                            "input_landscape.png"}


def test_attack_examples_are_what_the_attack_judges_and_stay_in_the_ball(tiny) -> None:
    from art_adr.analysis.pipeline import attack_examples
    from art_adr.attacks import AttackSpec, example_attack_names, get_attack

    model, x, y = tiny
    spec = AttackSpec(eps=0.1, steps=3)
    assert {"pgd", "apgd"} <= set(example_attack_names()) and "aa" not in example_attack_names()
    for name in example_attack_names():
        x_adv = attack_examples(model, x, y, name, spec, batch_size=10, seed=3)
        assert x_adv.shape == x.shape and float((x_adv - x).abs().max()) <= 0.1 + 1e-6
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
        assert torch.equal(x_adv, attack_examples(model, x, y, name, spec, batch_size=10, seed=3))  # seeded
    g = torch.Generator().manual_seed(5)
    flags = get_attack("apgd").flags(model, x, y, spec, clip_values=(0.0, 1.0), generator=g)
    g = torch.Generator().manual_seed(5)
    x_adv = get_attack("apgd").examples(model, x, y, spec, clip_values=(0.0, 1.0), generator=g)
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1) == y, flags)  # the examples are the ones the flags judge
        robust = flags & (model(x).argmax(1) == y)
    assert torch.equal(x_adv[robust], x[robust])  # a point APGD cannot flip comes back unperturbed, as AA returns it


def test_output_analysis_by_another_attack_and_unknown_attacks_refused(tiny) -> None:
    from art_adr.analysis import analyze_models
    from art_adr.attacks import AttackSpec

    model, x, y = tiny
    spec = AttackSpec(eps=0.1, steps=2)
    by_apgd = analyze_models({"m": model}, x, y, spec=spec, analyses=("outputs",), progress=False,
                             output_attack="apgd")
    by_pgd = analyze_models({"m": model}, x, y, spec=spec, analyses=("outputs",), progress=False)
    assert by_apgd["settings"]["output_attack"] == "APGD-CE-2+APGD-T-2×3"  # the figures' titles and legends
    assert by_pgd["settings"]["output_attack"] == "PGD-2"
    assert by_apgd["models"]["m"]["outputs"]["adv_accuracy"] <= by_pgd["models"]["m"]["outputs"]["accuracy"]
    with pytest.raises(ValueError, match="attacks that give their adversarial examples"):
        analyze_models({"m": model}, x, y, spec=spec, analyses=("outputs",), progress=False,
                       output_attack="aa")

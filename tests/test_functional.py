"""Property tests of the pure maths: rectified labels (Eq. 3-5), schedules, losses, projections."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from art_adr.functional import (
    cosine_schedule,
    cw_margin_loss,
    ema_warmup_decay,
    interpolation_per_sample,
    one_hot,
    project_l2,
    project_linf,
    rectify_labels,
    soft_cross_entropy,
    trades_kl,
)

logit_batches = st.tuples(st.integers(1, 16), st.integers(2, 12), st.integers(0, 2**31 - 1))


def _logits(n: int, c: int, seed: int, scale: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * scale, torch.randint(0, c, (n,), generator=g)


def _eq345_by_hand(logits: torch.Tensor, y: torch.Tensor, tau: float, lam: float) -> np.ndarray:
    """Direct, loop-by-loop transcription of Eq. 3-5."""
    out = []
    for z, yi in zip(logits.double().numpy(), y.numpy()):
        p = np.exp(z / tau - np.max(z / tau))
        p = p / p.sum()
        lam_i = min(max(lam - (p.max() - p[yi]), 0.0), 1.0)
        onehot = np.zeros_like(p)
        onehot[yi] = 1.0
        out.append(lam_i * p + (1 - lam_i) * onehot)
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(logit_batches, st.floats(0.1, 5.0), st.floats(0.0, 1.0))
def test_rectified_labels_invariants(batch, tau, lam):
    n, c, seed = batch
    logits, y = _logits(n, c, seed)
    p = rectify_labels(logits, y, tau, lam)
    assert p.shape == (n, c)
    assert torch.allclose(p.sum(1), torch.ones(n), atol=1e-5)
    assert (p >= 0).all()
    # the ground truth keeps the highest probability (ties allowed only at equality)
    assert (p.gather(1, y[:, None]).squeeze(1) >= p.max(1).values - 1e-6).all()
    np.testing.assert_allclose(p.numpy(), _eq345_by_hand(logits, y, tau, lam), atol=1e-5)
    lam_i = interpolation_per_sample(torch.softmax(logits / tau, 1), y, lam)
    assert ((lam_i >= 0) & (lam_i <= 1)).all()


def test_rectified_label_lambda_zero_is_one_hot_and_correct_teacher_keeps_lambda():
    logits, y = _logits(8, 5, 1)
    assert torch.equal(rectify_labels(logits, y, 2.0, 0.0), one_hot(y, 5))
    y_pred = logits.argmax(1)
    probs = torch.softmax(logits / 2.0, 1)
    assert torch.allclose(interpolation_per_sample(probs, y_pred, 0.7), torch.full((8,), 0.7))


@pytest.mark.parametrize("kwargs,name", [({"temperature": 0.0}, "temperature must be > 0"),
                                         ({"temperature": (2.0, -1.0)}, "temperature must be > 0"),
                                         ({"interpolation": 1.5}, "interpolation must be in")])
def test_bad_rectification_is_refused_where_it_enters(make_classifier, kwargs, name):
    """τ and λ are checked at the trainer (and RunConfig), the boundary where they enter, not per iteration."""
    from art_adr import AdversarialTrainerADR

    with pytest.raises(ValueError, match=name):
        AdversarialTrainerADR(make_classifier(), eps=0.1, max_iter=2, verbose=False, **kwargs)


@given(st.floats(-5, 5), st.floats(-5, 5), st.integers(1, 10_000))
def test_cosine_schedule_endpoints_and_monotone(start, end, total):
    assert math.isclose(cosine_schedule(start, end, 0, total), start, abs_tol=1e-9)
    assert math.isclose(cosine_schedule(start, end, total, total), end, abs_tol=1e-9)
    if total % 2 == 0:
        assert math.isclose(cosine_schedule(start, end, total // 2, total), (start + end) / 2, abs_tol=1e-9)
    vals = [cosine_schedule(start, end, i, total) for i in range(0, total + 1, max(1, total // 7))]
    diffs = np.diff(vals) * np.sign(end - start)
    assert (diffs >= -1e-12).all()


def test_cosine_schedule_formula_and_errors():
    assert cosine_schedule(2.5, 2.0, 25, 100) == pytest.approx(2.0 + 0.25 * (1 + math.cos(math.pi / 4)))
    with pytest.raises(ValueError):
        cosine_schedule(1, 0, 0, 0)


def test_soft_cross_entropy_equals_ce_for_one_hot_and_kl_properties():
    logits, y = _logits(16, 7, 3)
    assert torch.allclose(soft_cross_entropy(logits, one_hot(y, 7)), F.cross_entropy(logits, y), atol=1e-6)
    q = torch.softmax(torch.randn(16, 7), 1)
    # soft CE = H(q) + KL(q || p)  >=  H(q)
    h = -(q * q.log()).sum(1)
    assert (soft_cross_entropy(logits, q, "none") >= h - 1e-5).all()
    assert trades_kl(logits, logits).abs() < 1e-6
    assert trades_kl(logits + torch.randn_like(logits), logits) > 0
    ref = F.kl_div(F.log_softmax(logits * 2, 1), F.softmax(logits, 1), reduction="sum") / 16
    assert torch.allclose(trades_kl(logits * 2, logits), ref, atol=1e-5)


def test_cw_margin_sign():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    m = cw_margin_loss(logits, torch.tensor([0, 0]), reduction="none")
    assert torch.allclose(m, torch.tensor([-2.0, 2.0]))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.01, 0.5))
def test_projections_land_in_ball_and_box(seed, eps):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 2, 3, 3, generator=g)
    far = x + torch.randn(4, 2, 3, 3, generator=g)
    p = project_linf(far, x, eps, (0.0, 1.0))
    assert ((p - x).abs() <= eps + 1e-6).all() and p.min() >= 0 and p.max() <= 1
    q = project_l2(far, x, eps, None)
    assert ((q - x).flatten(1).norm(dim=1) <= eps + 1e-5).all()
    inside = x + 0.5 * eps * torch.sign(torch.randn_like(x)) / 10
    assert torch.allclose(project_linf(inside, x, eps, None), inside)


@given(st.floats(0.0, 0.9999), st.integers(0, 100_000))
def test_ema_warmup_decay_is_bounded_and_reaches_decay(decay, step):
    d = ema_warmup_decay(decay, step)
    assert 0.0 <= d <= decay + 1e-12 and d <= (1 + step) / (10 + step) + 1e-12
    assert ema_warmup_decay(decay, 10**9) == pytest.approx(decay, abs=1e-6)
    assert ema_warmup_decay(0.995, 0) == pytest.approx(0.1)

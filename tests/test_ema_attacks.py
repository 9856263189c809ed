"""EMA teacher (params and BN buffers) and soft-label PGD: ball, box, loss ascent, hard-label equivalence."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from art_adr.attacks import SoftLabelPGD, attack_loss, pgd
from art_adr.ema import EMATeacher
from art_adr.functional import one_hot
from art_adr.modes import module_mode
from conftest import TinyNet


def test_ema_matches_hand_computed_average_including_bn_buffers():
    torch.manual_seed(0)
    student = TinyNet()
    teacher = EMATeacher(student, decay=0.9)
    expected = {k: v.clone().double() for k, v in student.state_dict().items()}
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    for _ in range(3):
        student.train()
        loss = student(torch.rand(8, 1, 8, 8)).pow(2).mean()  # also moves BN running stats
        opt.zero_grad()
        loss.backward()
        opt.step()
        teacher.update(student)
        for k, v in student.state_dict().items():
            if v.is_floating_point():
                expected[k] = 0.9 * expected[k] + 0.1 * v.double()
            else:
                expected[k] = v.clone().double()
    got = teacher.module.state_dict()
    assert not teacher.module.training
    assert all(not p.requires_grad for p in teacher.module.parameters())
    for k in expected:
        np.testing.assert_allclose(got[k].double().numpy(), expected[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    assert got["bn.num_batches_tracked"].item() == 3
    assert not torch.allclose(got["bn.running_mean"], torch.zeros(8))


def test_ema_is_timm_model_ema_v3_bit_for_bit():
    """timm's ModelEmaV3 update (foreach lerp, integer buffers copied) gives exactly our teacher, warm-up decays
    included; timm's ModelEmaV2 (the ADR authors' class) does not (art_adr/ema.py says why we keep ours)."""
    model_ema = pytest.importorskip("timm.utils.model_ema")
    from art_adr.functional import ema_warmup_decay
    from art_adr.models import create_model

    torch.manual_seed(0)
    student = create_model("small-cnn", 10, input_shape=(1, 28, 28), width=4)  # BN: float and integer buffers
    ours, v3 = EMATeacher(student, 0.995), model_ema.ModelEmaV3(student, decay=0.995)
    v2 = model_ema.ModelEmaV2(student, decay=0.995)
    for step in range(12):
        student.train()(torch.rand(8, 1, 28, 28))  # moves the BN statistics and num_batches_tracked
        with torch.no_grad():
            for p in student.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        decay = ema_warmup_decay(0.995, step)
        ours.update(student, decay)
        v3.apply_update_(student, decay)
        v2._update(student, update_fn=lambda e, m, d=decay: d * e + (1.0 - d) * m)
    mine, theirs, authors = ours.module.state_dict(), v3.module.state_dict(), v2.module.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not all(torch.equal(mine[k], authors[k]) for k in mine)
    floats = [k for k in mine if mine[k].is_floating_point()]
    assert all(torch.allclose(mine[k], authors[k], atol=1e-6) for k in floats)


def test_ema_student_buffers_copies_bn_statistics_and_averages_weights():
    """``buffers="student"`` (issue 28's experiment): BN running statistics are the student's after every update,
    the weights still the EMA; the default averages both (the authors')."""
    from art_adr.models import create_model

    torch.manual_seed(0)
    student = create_model("small-cnn", 10, input_shape=(1, 28, 28), width=4)
    averaged, copied = EMATeacher(student, 0.9), EMATeacher(student, 0.9, buffers="student")
    for _ in range(3):
        student.train()(torch.rand(8, 1, 28, 28))
        with torch.no_grad():
            for p in student.parameters():
                p.add_(0.1)
        averaged.update(student)
        copied.update(student)
    s, a, c = student.state_dict(), averaged.module.state_dict(), copied.module.state_dict()
    buffers = [k for k in s if "running_" in k]
    weights = [k for k, _ in student.named_parameters()]
    assert buffers and all(torch.equal(c[k], s[k]) for k in buffers)
    assert all(not torch.equal(a[k], s[k]) for k in buffers)
    assert all(torch.equal(c[k], a[k]) and not torch.equal(c[k], s[k]) for k in weights)
    with pytest.raises(ValueError, match="buffers must be one of"):
        EMATeacher(student, 0.9, buffers="copy")


def test_ema_rejects_bad_decay():
    with pytest.raises(ValueError, match="ema_decay"):
        EMATeacher(TinyNet(), decay=1.0)


def test_module_mode_restores_each_submodule():
    net = TinyNet()
    net.train()
    net.bn.eval()
    with module_mode(net, True):
        assert net.bn.training
    assert net.training and not net.bn.training


@pytest.mark.parametrize("norm", ["inf", 2])
def test_pgd_stays_in_ball_and_box_and_raises_loss(norm):
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.rand(32, 1, 8, 8)
    y = torch.randint(0, 4, (32,))
    eps = 0.1 if norm == "inf" else 2.0
    g = torch.Generator().manual_seed(1)
    x_adv = pgd(net, x, y, eps=eps, eps_step=eps / 4, max_iter=10, norm=norm, generator=g)
    delta = (x_adv - x).flatten(1)
    bound = delta.abs().max(1).values if norm == "inf" else delta.norm(dim=1)
    assert (bound <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        clean, adv = F.cross_entropy(net(x), y), F.cross_entropy(net(x_adv), y)
    assert adv > clean + 0.05


def test_soft_pgd_with_one_hot_targets_equals_hard_label_pgd():
    torch.manual_seed(0)
    net = TinyNet().eval()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,))
    kw = dict(eps=0.1, eps_step=0.02, max_iter=7)
    hard = pgd(net, x, y, generator=torch.Generator().manual_seed(3), **kw)
    soft = pgd(net, x, one_hot(y, 4), generator=torch.Generator().manual_seed(3), **kw)
    assert torch.allclose(hard, soft, atol=1e-6)
    assert torch.allclose(attack_loss(net(x), one_hot(y, 4), "ce"), attack_loss(net(x), y, "ce"), atol=1e-5)


def test_pgd_bn_mode_train_updates_running_stats_and_restores_mode():
    net = TinyNet().eval()
    before = net.bn.running_mean.clone()
    pgd(net, torch.rand(8, 1, 8, 8), torch.randint(0, 4, (8,)), eps=0.1, eps_step=0.05, max_iter=2, bn_mode="train")
    assert not net.training and not torch.equal(before, net.bn.running_mean)
    before = net.bn.running_mean.clone()
    pgd(net, torch.rand(8, 1, 8, 8), torch.randint(0, 4, (8,)), eps=0.1, eps_step=0.05, max_iter=2, bn_mode="eval")
    assert torch.equal(before, net.bn.running_mean)


def test_pgd_rejects_bad_parameters():
    net, x, y = TinyNet(), torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    for kw, msg in [({"eps": 0.0, "eps_step": 0.1}, "eps"), ({"eps": 0.1, "eps_step": 0.2}, "eps_step")]:
        with pytest.raises(ValueError, match=msg):
            pgd(net, x, y, max_iter=1, **kw)
    with pytest.raises(ValueError, match="norm"):
        pgd(net, x, y, eps=0.1, eps_step=0.1, max_iter=1, norm="l3")


def test_art_soft_label_pgd_generate(make_classifier):
    clf = make_classifier()
    x = np.random.default_rng(0).uniform(size=(10, 1, 8, 8)).astype(np.float32)
    x_before = x.copy()
    soft = np.full((10, 4), 0.1, dtype=np.float32)
    soft[np.arange(10), np.arange(10) % 4] = 0.7
    attack = SoftLabelPGD(clf, eps=0.1, eps_step=0.025, max_iter=5, seed=0)
    x_adv = attack.generate(x, soft)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6 and np.array_equal(x, x_before)
    assert attack.generate(x, np.arange(10) % 4).shape == x.shape
    assert attack.generate(x).shape == x.shape
    with pytest.raises(ValueError, match="eps_step"):
        SoftLabelPGD(clf, eps=0.1, eps_step=0.2)
    with pytest.raises(ValueError, match="NaN"):
        attack.generate(np.full_like(x, np.nan), soft)


def test_pgd_restarts_never_worse_than_single_run():
    torch.manual_seed(0)
    net = TinyNet().eval()
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 4, (64,))
    kw = dict(eps=0.05, eps_step=0.0125, max_iter=5)
    one = pgd(copy.deepcopy(net), x, y, generator=torch.Generator().manual_seed(0), **kw)
    many = pgd(net, x, y, generator=torch.Generator().manual_seed(0), restarts=3, **kw)
    with torch.no_grad():
        assert (net(many).argmax(1) != y).sum() >= (net(one).argmax(1) != y).sum()


def test_trainer_and_config_take_ema_buffers(make_classifier):
    from art_adr import AdversarialTrainerADR
    from art_adr.config import ConfigError, RunConfig

    trainer = AdversarialTrainerADR(make_classifier(), ema_buffers="student", verbose=False)
    assert trainer.teacher.buffers == "student"
    assert AdversarialTrainerADR(make_classifier(), verbose=False).teacher.buffers == "average"
    with pytest.raises(ValueError, match="ema_buffers must be one of"):
        AdversarialTrainerADR(make_classifier(), ema_buffers="students")
    with pytest.raises(ConfigError, match="ema_buffers"):
        RunConfig(ema_buffers="copy").validate()

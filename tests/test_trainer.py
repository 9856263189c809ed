"""The ADR trainers: learning, baseline equivalence, resume, generators, schedulers and bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from art_adr import AdversarialTrainerADR, AdversarialTrainerTRADESADR
from art_adr.trainer import TrainingDivergedError

EPS = dict(eps=0.1, eps_step=0.025, max_iter=5)


def _robust_acc(trainer, x, y):
    return trainer.evaluate(x, y)["pgd_acc"]


@pytest.mark.parametrize("cls", [AdversarialTrainerADR, AdversarialTrainerTRADESADR])
def test_short_fit_raises_robust_accuracy_and_keeps_caller_arrays(cls, blobs, make_classifier):
    x, y = blobs
    x0, y0 = x.copy(), y.copy()
    trainer = cls(make_classifier(), temperature=(2.0, 1.5), interpolation=(0.5, 0.9), verbose=False, **EPS)
    start = _robust_acc(trainer, x[:128], y[:128])
    history = trainer.fit(x, y, validation_data=(x[:128], y[:128]), batch_size=32, nb_epochs=4)
    assert np.array_equal(x, x0) and np.array_equal(y, y0)
    assert history[-1]["pgd_acc"] > max(start, 0.5)
    assert len(history) == 4 and trainer.step == 4 * 12
    for key in ("loss", "train_robust_acc", "tau", "lambda", "lr", "seconds", "clean_acc", "teacher_pgd_acc",
                "best_epoch"):
        assert key in history[-1]
    # τ/λ are recorded where each epoch ends (the bar's last value); the first epoch starts at the start values
    # and the last epoch ends at the end values
    assert history[0]["tau_start"] == pytest.approx(2.0) and history[0]["lambda_start"] == pytest.approx(0.5)
    assert history[-1]["tau"] == pytest.approx(1.5) and history[-1]["lambda"] == pytest.approx(0.9)
    assert history[0]["tau"] == pytest.approx(history[1]["tau_start"])
    logits = trainer.get_teacher_classifier().predict(x[:5])
    np.testing.assert_allclose(logits, trainer.predict(x[:5], teacher=True), atol=1e-5)
    np.testing.assert_allclose(trainer.get_classifier().predict(x[:5]), trainer.predict(x[:5]), atol=1e-5)


def _hand_pgd_at(model, opt, batches, eps, eps_step, steps, seed):
    """Minimal PGD-AT (Madry et al.) written out by hand: uniform start, sign steps, train-mode attack."""
    g = torch.Generator().manual_seed(seed)
    for x, y in batches:
        model.train()
        x_adv = (x + (2 * torch.rand(x.shape, generator=g) - 1) * eps).clamp(0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y, reduction="sum"), x_adv)
            x_adv = torch.min(torch.max(x_adv.detach() + eps_step * grad.sign(), x - eps), x + eps).clamp(0, 1)
        opt.zero_grad()
        F.cross_entropy(model(x_adv), y).backward()
        opt.step()


def test_adr_false_reproduces_plain_pgd_at(blobs, make_classifier):
    x, y = blobs
    batches = [(torch.tensor(x[i:i + 64]), torch.tensor(y[i:i + 64])) for i in range(0, 256, 64)]
    clf = make_classifier(seed=1)
    trainer = AdversarialTrainerADR(clf, adr=False, seed=5, verbose=False, **EPS)
    trainer.fit_generator(batches, nb_epochs=1)
    ref = make_classifier(seed=1)
    _hand_pgd_at(ref.model, ref.optimizer, batches, 0.1, 0.025, 5, seed=5)
    for (k, a), b in zip(clf.model.state_dict().items(), ref.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_adr_changes_targets_once_teacher_disagrees(blobs, make_classifier):
    x, y = blobs
    a = AdversarialTrainerADR(make_classifier(), adr=True, verbose=False, **EPS)
    b = AdversarialTrainerADR(make_classifier(), adr=False, verbose=False, **EPS)
    a.fit(x[:128], y[:128], batch_size=64, nb_epochs=1)
    b.fit(x[:128], y[:128], batch_size=64, nb_epochs=1)
    assert not torch.allclose(a.student_module.fc.weight, b.student_module.fc.weight)


@pytest.mark.parametrize("cls", [AdversarialTrainerADR, AdversarialTrainerTRADESADR])
def test_resume_from_state_dict_is_bitwise_identical(cls, blobs, make_classifier):
    x, y = blobs
    x, y = x[:192], y[:192]

    def build():
        clf = make_classifier(seed=3)
        sched = torch.optim.lr_scheduler.MultiStepLR(clf.optimizer, milestones=[1], gamma=0.1)
        return cls(clf, augment=True, awp_rho=0.01, verbose=False, **EPS), sched

    full, sched = build()
    full.fit(x, y, batch_size=64, nb_epochs=2, scheduler=sched)
    saved = {}

    class Killed(Exception):
        pass

    def kill_after_first_epoch(trainer, record):
        saved.update(copy.deepcopy(trainer.state_dict()))
        raise Killed

    first, sched1 = build()
    with pytest.raises(Killed):
        first.fit(x, y, batch_size=64, nb_epochs=2, scheduler=sched1, callbacks=[kill_after_first_epoch])
    state = saved
    resumed, sched2 = build()
    resumed.load_state_dict(state, scheduler=sched2)
    resumed.fit(x, y, batch_size=64, nb_epochs=1)  # the epoch that remains (fit trains nb_epochs more)
    for a, b in zip(full.student_module.state_dict().values(), resumed.student_module.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full.teacher.state_dict().values(), resumed.teacher.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["lr"] for h in full.history] == [h["lr"] for h in resumed.history] == pytest.approx([0.05, 0.005])


def test_fit_generator_accepts_art_data_generator_and_dataloader(blobs, make_classifier):
    from art.data_generators import PyTorchDataGenerator

    x, y = blobs
    ds = torch.utils.data.TensorDataset(torch.tensor(x[:128]), torch.tensor(np.eye(4)[y[:128]]))
    loader = torch.utils.data.DataLoader(ds, batch_size=32)
    trainer = AdversarialTrainerTRADESADR(make_classifier(), verbose=False, **EPS)
    trainer.fit_generator(loader, nb_epochs=1)
    assert trainer.step == 4
    trainer.fit_generator(PyTorchDataGenerator(loader, size=128, batch_size=32), nb_epochs=2)
    assert trainer.step == 12 and trainer.epoch == 3  # ART semantics: 2 more epochs


def test_any_scheduler_with_step_including_torch2_lr_scheduler(blobs, make_classifier):
    x, y = blobs
    clf = make_classifier()
    sched = torch.optim.lr_scheduler.OneCycleLR(clf.optimizer, max_lr=0.1, total_steps=6)
    trainer = AdversarialTrainerADR(clf, scheduler_interval="step", verbose=False, **EPS)
    trainer.fit(x[:192], y[:192], batch_size=64, nb_epochs=2, scheduler=sched)
    assert trainer.history[0]["lr"] != trainer.history[1]["lr"]
    with pytest.raises(ValueError, match="scheduler"):
        trainer.fit(x, y, nb_epochs=3, scheduler=object())


def test_awp_with_negligible_radius_equals_no_awp(blobs, make_classifier):
    x, y = blobs
    runs = []
    for rho in (0.0, 1e-12, 0.05):
        clf = make_classifier(seed=2)
        AdversarialTrainerADR(clf, awp_rho=rho, verbose=False, **EPS).fit(x[:128], y[:128], batch_size=64, nb_epochs=1)
        runs.append(clf.model.fc.weight.detach().clone())
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(runs[0], runs[2])


def test_nan_loss_stops_training_with_clear_message(blobs, make_classifier):
    x, y = blobs
    clf = make_classifier(lr=1e30)
    trainer = AdversarialTrainerADR(clf, log_every=1, verbose=False, **EPS)
    with pytest.raises(TrainingDivergedError, match="non-finite"):
        trainer.fit(x, y, batch_size=64, nb_epochs=3)


def test_bad_inputs_raise_value_errors_and_leave_arrays_untouched(blobs, make_classifier):
    x, y = blobs
    clf = make_classifier()
    trainer = AdversarialTrainerADR(clf, verbose=False, **EPS)
    cases = [
        (x[:, :, :4], y, "shape"),
        (x, y[:10], "labels"),
        (x, y + 4, "labels in"),
        (x, np.eye(5)[y % 5], "columns"),
        (x, np.full((len(y), 4), 0.25), "one-hot"),
        (np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x).astype(np.float32), y, "NaN"),
        (x * 3, y, "clip_values"),
    ]
    for xb, yb, msg in cases:
        xb_copy = np.array(xb, copy=True)
        with pytest.raises(ValueError, match=msg):
            trainer.fit(xb, yb, nb_epochs=1)
        np.testing.assert_array_equal(xb, xb_copy)
    for kw, msg in [
        ({"eps": 0.0}, "eps"), ({"eps": 0.1, "eps_step": 0.2}, "eps_step"),
        ({"temperature": (0.0, 1.0)}, "temperature"),
        ({"interpolation": (0.5, 1.2)}, "interpolation"), ({"ema_decay": 1.0}, "ema_decay"),
        ({"awp_rho": -1.0}, "awp_rho"), ({"amp": "fp8"}, "amp"), ({"attack_bn_mode": "x"}, "bn_mode"),
    ]:
        with pytest.raises(ValueError, match=msg):
            AdversarialTrainerADR(make_classifier(), **kw)
    with pytest.raises(ValueError, match="optimizer"):
        from art.estimators.classification import PyTorchClassifier
        AdversarialTrainerADR(PyTorchClassifier(clf.model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8),
                                                nb_classes=4, clip_values=(0, 1)))
    with pytest.raises(ValueError, match="clip_values"):
        AdversarialTrainerADR(make_classifier(clip_values=None))
    with pytest.raises(ValueError, match="beta"):
        AdversarialTrainerTRADESADR(make_classifier(), beta=-1)


def test_classifier_preprocessing_is_applied_on_device(blobs, make_classifier):
    x, y = blobs
    clf = make_classifier(preprocessing=(0.5, 0.25))
    trainer = AdversarialTrainerADR(clf, verbose=False, **EPS)
    np.testing.assert_allclose(trainer.predict(x[:8]), clf.predict(x[:8]), atol=1e-5)
    trainer.fit(x[:64], y[:64], batch_size=32, nb_epochs=1)
    np.testing.assert_allclose(trainer.get_teacher_classifier().predict(x[:8]), trainer.predict(x[:8], teacher=True),
                               atol=1e-5)


def test_bf16_autocast_and_channels_last_run_on_cpu(blobs, make_classifier):
    x, y = blobs
    trainer = AdversarialTrainerADR(make_classifier(), amp="bf16", channels_last=True, verbose=False, **EPS)
    h = trainer.fit(x[:128], y[:128], batch_size=64, nb_epochs=1)
    assert np.isfinite(h[-1]["loss"])


def test_ema_warmup_teacher_follows_the_student_early(blobs, make_classifier):
    x, y = blobs
    gaps = {}
    for warm in (False, True):
        tr = AdversarialTrainerADR(make_classifier(), ema_warmup=warm, verbose=False, **EPS)
        tr.fit(x[:128], y[:128], batch_size=32, nb_epochs=1)
        gaps[warm] = (tr.teacher.module.fc.weight - tr.student_module.fc.weight).abs().max().item()
    assert gaps[True] < gaps[False]

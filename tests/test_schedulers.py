"""`runs.build_scheduler`: torch's MultiStepLR / SequentialLR(LinearLR, CosineAnnealingLR) give, at every
iteration, the learning rate of the hand-written LambdaLR they replaced; their states resume exactly."""

from __future__ import annotations

import io
import math

import pytest
import torch
from click.testing import CliRunner

from art_adr.checkpoint import load_checkpoint
from art_adr.cli import main
from art_adr.config import RunConfig
from art_adr.runs import _upgrade_scheduler_state, build_scheduler

LR = 0.4


def old_factor(config: RunConfig, steps_per_epoch: int, step: int) -> float:
    """The LambdaLR factor art-adr used before (copied from ``runs.build_scheduler_lambda``) as the reference."""
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "multistep":
        bounds = [round(m * total) for m in config.milestones]
        return config.lr_gamma ** sum(step >= b for b in bounds)
    warm = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def _optimizer(groups: int = 2) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": LR * (g + 1)} for g in range(groups)]
    return torch.optim.SGD(params, lr=LR, momentum=0.9)


def _lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]


CONFIGS = [
    dict(lr_schedule="multistep", epochs=10, milestones=(0.5, 0.75), lr_gamma=0.1),
    dict(lr_schedule="multistep", epochs=3, milestones=(0.01, 0.3, 0.3001), lr_gamma=0.2),  # first bound at 0, tie
    dict(lr_schedule="cosine", epochs=10, warmup_epochs=0.0),
    dict(lr_schedule="cosine", epochs=10, warmup_epochs=2.5),  # fractional warm-up (the DDPM recipes)
    dict(lr_schedule="cosine", epochs=10, warmup_epochs=1 / 7),  # a one-iteration warm-up
    dict(lr_schedule="cosine", epochs=4, warmup_epochs=0.3),  # two iterations
    dict(lr_schedule="cosine", epochs=2, warmup_epochs=3.0),  # warm-up longer than the run
]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: f"{kw['lr_schedule']}-{kw.get('warmup_epochs', '')}")
@pytest.mark.parametrize("steps", [7, 1])
def test_every_iteration_has_the_old_lambdas_rate(kw, steps):
    config = RunConfig(**kw)
    opt = _optimizer()
    sched = build_scheduler(opt, config, steps)
    total = config.epochs * steps
    for step in range(total + 1):  # the rate of iteration `step`, and the one after the last
        want = [LR * (g + 1) * old_factor(config, steps, step) for g in range(2)]
        assert _lrs(opt) == pytest.approx(want, rel=1e-9, abs=1e-15), (step, _lrs(opt), want)
        assert sched.get_last_lr() == pytest.approx(want, rel=1e-9, abs=1e-15)
        opt.step()
        sched.step()


def test_warmup_reaches_the_full_rate_on_its_last_iteration_and_cosine_starts_there():
    config = RunConfig(lr_schedule="cosine", epochs=4, warmup_epochs=1.0)
    opt = _optimizer(1)
    sched = build_scheduler(opt, config, 5)
    assert isinstance(sched, torch.optim.lr_scheduler.SequentialLR)
    seen = []
    for _ in range(20):
        seen.append(_lrs(opt)[0])
        opt.step()
        sched.step()
    assert seen[:5] == pytest.approx([LR * k / 5 for k in range(1, 6)])
    assert seen[5] == pytest.approx(LR) and seen[6] < LR and seen[-1] > 0
    assert isinstance(build_scheduler(_optimizer(1), RunConfig(lr_schedule="cosine"), 5),
                      torch.optim.lr_scheduler.CosineAnnealingLR)


@pytest.mark.parametrize("kw", [CONFIGS[0], CONFIGS[3], CONFIGS[4]], ids=["multistep", "cosine-warm", "warm-1"])
@pytest.mark.parametrize("stop", [0, 3, 17, 25, 69])
def test_state_dict_round_trips_through_a_checkpoint_bit_exactly(kw, stop):
    """Stop at any iteration (inside the warm-up, at its switch, in the cosine), save scheduler + optimizer
    through ``torch.save``/``torch.load(weights_only=True)``, rebuild, load: the rest is bit-identical."""
    config, steps = RunConfig(**kw), 7
    opt = _optimizer()
    sched = build_scheduler(opt, config, steps)
    straight = []
    for _ in range(config.epochs * steps):
        straight.append(_lrs(opt))
        opt.step()
        sched.step()

    opt = _optimizer()
    sched = build_scheduler(opt, config, steps)
    for _ in range(stop):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    opt2 = _optimizer()
    sched2 = build_scheduler(opt2, config, steps)
    opt2.load_state_dict(saved["optimizer"])
    sched2.load_state_dict(saved["scheduler"])
    assert "_schedulers" in saved["scheduler"] or kw["lr_schedule"] == "multistep"
    resumed = []
    for _ in range(stop, config.epochs * steps):
        resumed.append(_lrs(opt2))
        opt2.step()
        sched2.step()
    assert resumed == straight[stop:]  # exact floats, not approx


@pytest.mark.parametrize("kw", [CONFIGS[0], CONFIGS[2], CONFIGS[3]], ids=["multistep", "cosine", "cosine-warm"])
def test_old_lambdalr_checkpoint_states_are_upgraded(kw):
    """A checkpoint written with the former LambdaLR resumes at the same point of the new schedule."""
    config, steps, stop = RunConfig(**kw), 7, 30
    opt = _optimizer()
    old = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: old_factor(config, steps, s))
    for _ in range(stop):
        opt.step()
        old.step()
    saved_opt, saved_sched = opt.state_dict(), old.state_dict()
    assert "lr_lambdas" in saved_sched
    opt2 = _optimizer()
    sched = build_scheduler(opt2, config, steps)
    state = _upgrade_scheduler_state(saved_sched, config, steps, opt2)
    assert "lr_lambdas" not in state
    opt2.load_state_dict(saved_opt)
    sched.load_state_dict(state)
    for step in range(stop, config.epochs * steps):
        want = [LR * (g + 1) * old_factor(config, steps, step) for g in range(2)]
        assert _lrs(opt2) == pytest.approx(want, rel=1e-9, abs=1e-15), step
        opt2.step()
        sched.step()
    assert _upgrade_scheduler_state(sched.state_dict(), config, steps, opt2) == sched.state_dict()
    assert _upgrade_scheduler_state(None, config, steps, opt2) is None


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        build_scheduler(_optimizer(), RunConfig(), 0)
    with pytest.raises(ValueError, match="lr_schedule"):
        build_scheduler(_optimizer(), RunConfig(lr_schedule="step"), 3)  # a hand-built, unvalidated config


SYNTH = ["--dataset", "synthetic", "--set", "dataset_kwargs={n: 320, shape: [1, 12, 12], num_classes: 4}",
         "--val-size", "64", "--max-iter", "1", "--batch-size", "64", "--eps", "0.1", "--eps-step", "0.05",
         "--set", "eval_max_iter=1", "-q", "--epochs", "3", "--set", "lr_schedule=cosine",
         "--set", "warmup_epochs=1.5"]


def _train(*args: str) -> None:
    result = CliRunner().invoke(main, ["train", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_a_cosine_run_stopped_inside_the_warmup_resumes_bit_exactly(tmp_path):
    """4 iterations an epoch, 6 of warm-up: the stop after epoch 1 falls inside the warm-up."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    _train(*SYNTH, "--out", str(straight))
    _train(*SYNTH, "--out", str(split), "--stop-after-epochs", "1")
    assert "_schedulers" in load_checkpoint(split / "checkpoints" / "last.pt")["scheduler"]
    _train("--out", str(split), "--resume", "-q")
    a = load_checkpoint(straight / "checkpoints" / "final.pt")
    b = load_checkpoint(split / "checkpoints" / "final.pt")
    for key in a["student"]:
        assert torch.equal(a["student"][key], b["student"][key]), key
    config = RunConfig(epochs=3, lr_schedule="cosine", warmup_epochs=1.5, lr=a["config"]["lr"])
    want = [config.lr * old_factor(config, 4, 4 * e) for e in range(3)]  # each epoch's first iteration
    assert [r["lr"] for r in a["history"]] == pytest.approx(want, rel=1e-9)
    assert [r["lr"] for r in a["history"]] == [r["lr"] for r in b["history"]]

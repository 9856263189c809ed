"""`runs.build_scheduler`: torch's MultiStepLR gives, at every iteration, the rate of the hand-written LambdaLR
it replaced; ``"cosine"`` is the ADR authors' timm ``CosineLRScheduler`` as their loop steps it, iteration by
iteration (against a transcription, and against timm itself when it is installed); states resume exactly."""

from __future__ import annotations

import io
import math

import pytest
import torch
from click.testing import CliRunner

from art_adr.checkpoint import load_checkpoint
from art_adr.cli import main
from art_adr.config import RunConfig, resolve_config
from art_adr.runs import build_scheduler, upgrade_scheduler_state

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


def official_rates(peak: float, iterations: int, t_initial: int, warmup_t: int, warmup_lr_init: float = 1e-6,
                   lr_min: float = 0.0) -> list[float]:
    """The rate each iteration trains with in the ADR authors' loop (``src/advTrainer.py``): timm's
    ``CosineLRScheduler`` (transcribed: linear warm-up from ``warmup_lr_init``, a cosine over ``t_initial`` from
    t = 0, ``lr_min`` after one cycle) whose constructor sets ``warmup_lr_init`` (when warming up), then
    ``scheduler.step(global_step + idx)`` after every update."""

    def timm_rate(t: int) -> float:
        if t < warmup_t:
            return warmup_lr_init + t * (peak - warmup_lr_init) / warmup_t
        cycle, t_curr = divmod(t, t_initial)
        if cycle >= 1:
            return lr_min
        return lr_min + 0.5 * (peak - lr_min) * (1 + math.cos(math.pi * t_curr / t_initial))

    rates, current = [], warmup_lr_init if warmup_t else peak
    for idx in range(iterations):
        rates.append(current)  # what this iteration's optimizer.step() uses
        current = timm_rate(idx)  # scheduler.step(idx) after it
    return rates


def cosine_want(config: RunConfig, steps: int, iterations: int, peak: float) -> list[float]:
    return official_rates(peak, iterations, config.epochs * steps, int(config.warmup_epochs * steps))


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


def _want(config: RunConfig, steps: int, step: int) -> list[float]:
    """Both groups' rate at iteration ``step``: the old LambdaLR's (multistep) or the authors' (cosine)."""
    if config.lr_schedule == "multistep":
        return [LR * (g + 1) * old_factor(config, steps, step) for g in range(2)]
    return [cosine_want(config, steps, step + 1, LR * (g + 1))[step] for g in range(2)]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: f"{kw['lr_schedule']}-{kw.get('warmup_epochs', '')}")
@pytest.mark.parametrize("steps", [7, 1])
def test_every_iteration_has_the_reference_rate(kw, steps):
    config = RunConfig(**kw)
    opt = _optimizer()
    sched = build_scheduler(opt, config, steps)
    total = config.epochs * steps
    want = ([_want(config, steps, step) for step in range(total + 1)] if config.lr_schedule == "multistep" else
            list(zip(*(cosine_want(config, steps, total + 1, LR * (g + 1)) for g in range(2)))))
    for step in range(total + 1):  # the rate of iteration `step`, and the one after the last
        assert _lrs(opt) == pytest.approx(list(want[step]), rel=1e-9, abs=1e-15), (step, _lrs(opt), want[step])
        assert sched.get_last_lr() == pytest.approx(list(want[step]), rel=1e-9, abs=1e-15)
        opt.step()
        sched.step()


def test_ddpm_recipe_rate_is_the_authors_timm_schedule_iteration_by_iteration():
    """preact-resnet18_pgd_awp_adr.gin: lr 0.4, 100 epochs of 195 iterations (50 000 real images, 256 a batch,
    the last partial batch dropped), warm-up int(2.5 × 195) = 487 iterations from 1e-6, lr_min 0."""
    config = resolve_config("cifar10-ddpm-at-adr-wa-awp", {"dataset": "synthetic"})
    steps = 195
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    sched = build_scheduler(opt, config, steps)
    ours = []
    for _ in range(config.epochs * steps):
        ours.append(_lrs(opt)[0])
        opt.step()
        sched.step()
    want = official_rates(0.4, config.epochs * steps, 19_500, 487)
    assert ours == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert ours[0] == ours[1] == 1e-6 and ours[488] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * 487 / 19500)))
    mid = 9750  # the cosine runs over the whole run: at mid-run the rate is half the peak
    assert ours[mid + 1] == pytest.approx(0.2, rel=1e-9)


def test_cosine_equals_timm_itself_when_installed():
    """The same loop with timm's own ``CosineLRScheduler`` (skipped when timm is not installed)."""
    timm_scheduler = pytest.importorskip("timm.scheduler")
    for steps, epochs, warmup_epochs in ((195, 6, 2.5), (7, 10, 0.0), (7, 4, 1 / 7), (5, 2, 3.0)):
        config = RunConfig(lr_schedule="cosine", epochs=epochs, warmup_epochs=warmup_epochs)
        total, warm = epochs * steps, int(warmup_epochs * steps)
        opt_theirs = _optimizer()
        theirs = timm_scheduler.CosineLRScheduler(opt_theirs, t_initial=total, lr_min=0.0, warmup_lr_init=1e-6,
                                                  warmup_t=warm)
        opt_ours = _optimizer()
        ours = build_scheduler(opt_ours, config, steps)
        for idx in range(total):
            assert _lrs(opt_ours) == pytest.approx(_lrs(opt_theirs), rel=1e-12, abs=1e-15), (steps, idx)
            opt_theirs.step()
            opt_ours.step()
            theirs.step(idx)  # as src/advTrainer.py: scheduler.step(global_step + idx) after the update
            ours.step()


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
    assert "total_iters" in saved["scheduler"] or kw["lr_schedule"] == "multistep"
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
    if config.lr_schedule == "cosine":  # the former cosine was another schedule: it goes on as the authors'
        with pytest.warns(RuntimeWarning, match=r"replaced by the ADR authors' timm schedule .* from iteration 30 on"):
            state = upgrade_scheduler_state(saved_sched, config, steps, opt2)
    else:
        state = upgrade_scheduler_state(saved_sched, config, steps, opt2)
    assert "lr_lambdas" not in state
    opt2.load_state_dict(saved_opt)
    sched.load_state_dict(state)
    opt2.step()
    sched.step()
    for step in range(stop + 1, config.epochs * steps):  # the next rate on is the new schedule's
        assert _lrs(opt2) == pytest.approx(_want(config, steps, step), rel=1e-9, abs=1e-15), step
        opt2.step()
        sched.step()
    assert upgrade_scheduler_state(sched.state_dict(), config, steps, opt2) == sched.state_dict()
    assert upgrade_scheduler_state(None, config, steps, opt2) is None


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
    assert "total_iters" in load_checkpoint(split / "checkpoints" / "last.pt")["scheduler"]
    _train("--out", str(split), "--resume", "-q")
    a = load_checkpoint(straight / "checkpoints" / "final.pt")
    b = load_checkpoint(split / "checkpoints" / "final.pt")
    for key in a["student"]:
        assert torch.equal(a["student"][key], b["student"][key]), key
    config = RunConfig(epochs=3, lr_schedule="cosine", warmup_epochs=1.5, lr=a["config"]["lr"])
    rates = cosine_want(config, 4, 12, config.lr)
    want = [rates[4 * e] for e in range(3)]  # each epoch's first iteration
    assert [r["lr"] for r in a["history"]] == pytest.approx(want, rel=1e-9)
    assert [r["lr"] for r in a["history"]] == [r["lr"] for r in b["history"]]


# ---------------------------------------------------------------- warm-up under multistep (issue 27 §3)
def test_multistep_warms_up_linearly_then_follows_multisteplr():
    """4 iterations an epoch, 10 epochs, warm-up 1.5 epochs = 6 iterations, milestones at 20 and 30."""
    config = RunConfig(lr_schedule="multistep", epochs=10, milestones=(0.5, 0.75), lr_gamma=0.1, warmup_epochs=1.5)
    opt, plain = _optimizer(), _optimizer()
    sched = build_scheduler(opt, config, 4)
    reference = torch.optim.lr_scheduler.MultiStepLR(plain, [20, 30], gamma=0.1)
    init = 1e-6
    for step in range(41):
        peaks = [LR, 2 * LR]
        if step < 6:
            assert _lrs(opt) == pytest.approx([init + step * (p - init) / 6 for p in peaks], rel=1e-12), step
        else:  # from the end of the warm-up: torch's MultiStepLR's own rates, bit for bit
            assert _lrs(opt) == _lrs(plain), step
        assert _lrs(opt)[0] < LR if step < 6 else True
        for o, s in ((opt, sched), (plain, reference)):
            o.step()
            s.step()
    assert _lrs(opt) == pytest.approx([LR * 0.01, 2 * LR * 0.01])


def test_no_warmup_is_torchs_multisteplr_itself():
    sched = build_scheduler(_optimizer(), RunConfig(lr_schedule="multistep", epochs=4, warmup_epochs=0.0), 5)
    assert type(sched) is torch.optim.lr_scheduler.MultiStepLR  # the state and the numbers of before


def test_a_multistep_checkpoint_of_before_the_warmup_resumes_without_one():
    """A run of an earlier version with warmup_epochs > 0 under multistep trained without warm-up (it was
    ignored): its MultiStepLR state resumes so, rate for rate, with a warning."""
    config = RunConfig(lr_schedule="multistep", epochs=10, milestones=(0.5, 0.75), warmup_epochs=2.0)
    old_opt = _optimizer()
    old = torch.optim.lr_scheduler.MultiStepLR(old_opt, [20, 30], gamma=config.lr_gamma)  # what it built then
    for _ in range(3):
        old_opt.step()
        old.step()
    opt = _optimizer()
    sched = build_scheduler(opt, config, 4)  # as a resume does: the scheduler, then the checkpoint's states
    opt.load_state_dict(old_opt.state_dict())
    with pytest.warns(RuntimeWarning, match="continues without one"):
        state = upgrade_scheduler_state(old.state_dict(), config, 4, opt)
    sched.load_state_dict(state)
    for step in range(3, 40):
        assert _lrs(opt) == _lrs(old_opt), step
        for o, s in ((opt, sched), (old_opt, old)):
            o.step()
            s.step()
    fresh = build_scheduler(_optimizer(), config, 4)
    assert upgrade_scheduler_state(fresh.state_dict(), config, 4, opt) == fresh.state_dict()


def test_a_multistep_run_stopped_inside_the_warmup_resumes_bit_exactly(tmp_path):
    multistep = [a if a != "lr_schedule=cosine" else "lr_schedule=multistep" for a in SYNTH]
    straight, split = tmp_path / "straight", tmp_path / "split"
    _train(*multistep, "--out", str(straight))
    _train(*multistep, "--out", str(split), "--stop-after-epochs", "1")
    _train("--out", str(split), "--resume", "-q")
    a = load_checkpoint(straight / "checkpoints" / "final.pt")
    b = load_checkpoint(split / "checkpoints" / "final.pt")
    for key in a["student"]:
        assert torch.equal(a["student"][key], b["student"][key]), key
    assert a["history"][0]["lr"] == 1e-6 and a["history"][1]["lr"] < a["config"]["lr"]  # warming up
    assert [r["lr"] for r in a["history"]] == [r["lr"] for r in b["history"]]

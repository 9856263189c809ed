"""torch.compile that compiles and steps without host syncs (issue 15 §2, §4), pinned on CPU.

Compilation runs with Dynamo's ``backend="eager"`` (its tracing, guards and recompiles, no code generation), so the
graph counts are those Inductor would compile, in seconds.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import tempfile

import numpy as np
import pytest
import torch

import art_adr.compiling as compiling
import art_adr.trainer as trainer_mod
from art_adr import AdversarialTrainerADR, AdversarialTrainerMARTADR, AdversarialTrainerTRADESADR
from art_adr.awp import AWP
from art_adr.snapshot import HostStateCopies, TensorSnapshot, all_finite
from conftest import TinyNet

EPS = dict(eps=0.1, eps_step=0.05, max_iter=2)


@pytest.fixture
def eager_backend(monkeypatch):
    monkeypatch.setattr(compiling, "BACKEND", "eager")


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, n)


CASES = {  # name: (trainer class, keywords, student graphs with static shapes)
    "at": (AdversarialTrainerADR, {}, 4),
    "at-awp": (AdversarialTrainerADR, {"awp_rho": 0.01}, 4),
    "at-bn-momentum": (AdversarialTrainerADR, {"bn_momentum": 0.01}, 4),
    "at-awp-bn-momentum": (AdversarialTrainerADR, {"awp_rho": 0.01, "bn_momentum": 0.01}, 4),
    "at-awp-weights-only": (AdversarialTrainerADR, {"awp_rho": 0.01, "awp_variant": "weights-only"}, 4),
    "trades": (AdversarialTrainerTRADESADR, {}, 5),  # + the clean no-grad forward of the train-mode attack
    "trades-awp-bn-momentum": (AdversarialTrainerTRADESADR, {"awp_rho": 0.01, "bn_momentum": 0.01}, 5),
    "trades-reference": (AdversarialTrainerTRADESADR, {"trades_variant": "reference"}, 4),
    "mart": (AdversarialTrainerMARTADR, {}, 4),
    "mart-awp-bn-momentum": (AdversarialTrainerMARTADR, {"awp_rho": 0.01, "bn_momentum": 0.01}, 4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_training_has_a_fixed_number_of_graphs(name, eager_backend, make_classifier):
    """Student: attack and loss (train mode), validation attack and clean pass (eval mode); teacher: its no-grad
    forward and the validation attack. AWP (frozen BN statistics) and bn_momentum add none, and a second epoch
    recompiles nothing."""
    cls, kwargs, student_graphs = CASES[name]
    x, y = _data()
    trainer = cls(make_classifier(), compile=True, verbose=False, eval_batch_size=32, **EPS, **kwargs)
    trainer.fit(x, y, batch_size=32, nb_epochs=1, validation_data=(x[:32], y[:32]))
    first = trainer.compile_stats()
    trainer.fit(x, y, batch_size=32, nb_epochs=1, validation_data=(x[:32], y[:32]))
    stats = trainer.compile_stats()
    assert stats == first  # nothing recompiled in the second epoch
    assert stats["student forward"]["graphs"] == student_graphs, stats
    assert stats["teacher forward"]["graphs"] == 2, stats
    assert all(s["frames"] == s["graphs"] for s in stats.values())  # one trace per graph: no graph breaks


def test_bn_momentum_and_frozen_statistics_never_change_momentum(eager_backend, make_classifier):
    x, y = _data()
    trainer = AdversarialTrainerADR(make_classifier(), compile=True, awp_rho=0.01, bn_momentum=0.01,
                                    verbose=False, **EPS)
    seen = []
    trainer.student_module.bn.register_forward_pre_hook(lambda m, a: seen.append(m.momentum) if m.training else None)
    xb, yb = torch.as_tensor(x[:32]), torch.as_tensor(y[:32])
    trainer.train_step(xb, yb)  # momentum 1.0, eager
    assert trainer.compile_stats()["student forward"]["graphs"] == 0
    n0 = len(seen)
    trainer.train_step(xb, yb)
    trainer.train_step(xb, yb)
    assert set(seen[:n0]) == {1.0} and set(seen[n0:]) == {0.01}


def test_trainers_in_one_process_do_not_share_a_recompile_limit(eager_backend, make_classifier):
    x, y = _data(32)
    for _ in range(4):  # 4 trainers × 6 graphs of the same model class, well past Dynamo's 8 per function
        trainer = AdversarialTrainerADR(make_classifier(), compile=True, verbose=False, **EPS)
        trainer.fit(x, y, batch_size=32, nb_epochs=1, validation_data=(x, y))
        assert trainer.compile_stats()["student forward"]["graphs"] == 4


def test_recompiling_past_the_limit_is_an_error_not_a_silent_eager_fallback(eager_backend):
    bn = torch.nn.BatchNorm1d(3)
    fn = compiling.Compiled(bn, "default", "test forward", limit=3)
    with pytest.raises(compiling.RecompileLimitError, match="test forward recompiled more than 3 times"):
        for k in range(10):
            bn.momentum = 0.01 * (k + 1)  # a changed module attribute: a new graph each call
            fn(torch.ones(4, 3))
    assert fn.stats()["graphs"] == 3
    assert torch._dynamo.config.fail_on_recompile_limit_hit is False  # only while the function ran


def test_ragged_batches_stay_under_the_recompile_limit(eager_backend, make_classifier):
    x, y = _data(100)  # 3 batches of 32 and one of 4 (drop_last off): every context recompiles once, dynamically
    trainer = AdversarialTrainerTRADESADR(make_classifier(), compile=True, verbose=False, **EPS)
    trainer.fit(x, y, batch_size=32, nb_epochs=2, validation_data=(x[:40], y[:40]))
    graphs = trainer.compile_stats()["student forward"]["graphs"]
    assert 5 < graphs <= compiling.RECOMPILE_LIMIT


def test_compile_modes_are_validated_and_cudagraphs_named():
    assert compiling.compile_mode(False) is None and compiling.compile_mode(None) is None
    assert compiling.compile_mode(True) == "default"
    assert compiling.compile_mode("reduce-overhead") == "reduce-overhead"
    assert compiling.uses_cudagraphs("max-autotune") and not compiling.uses_cudagraphs("default")
    with pytest.raises(ValueError, match="compile must be"):
        compiling.compile_mode("fast")


def test_compile_option_reaches_trainer_config_and_cli(make_classifier, tmp_path):
    from click.testing import CliRunner

    from art_adr.cli import main
    from art_adr.config import ConfigError, RunConfig, coerce

    with pytest.raises(ValueError, match="compile must be"):
        AdversarialTrainerADR(make_classifier(), compile="fast", verbose=False, **EPS)
    assert AdversarialTrainerADR(make_classifier(), compile="reduce-overhead", verbose=False,
                                 **EPS).compile == "reduce-overhead"
    assert coerce("compile", "max-autotune") == "max-autotune" and coerce("compile", "true") is True
    with pytest.raises(ConfigError, match="compile must be"):
        coerce("compile", "fast")
    RunConfig(compile="reduce-overhead").validate()
    result = CliRunner().invoke(main, ["train", "--dataset", "synthetic", "--compile", "fast", "--out",
                                       str(tmp_path / "r"), "--device", "cpu", "-q"])
    assert result.exit_code == 2 and "Error:" in result.output and "compile must be" in result.output


def test_ddp_training_forward_is_compiled(eager_backend, make_classifier, monkeypatch):
    """Under DDP the DDP-wrapped training forward is compiled too (one gloo process; the trainer is told 2)."""
    path = tempfile.mktemp()
    torch.distributed.init_process_group("gloo", init_method=f"file://{path}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(trainer_mod, "ddp_world", lambda: (0, 2))
        trainer = AdversarialTrainerADR(make_classifier(), compile=True, awp_rho=0.01, verbose=False, **EPS)
        x, y = _data(32)
        for _ in range(3):
            trainer.train_step(torch.as_tensor(x), torch.as_tensor(y))
        stats = trainer.compile_stats()
        assert isinstance(trainer.forwards.train, compiling.Compiled)
        assert isinstance(trainer.forwards.train.eager, torch.nn.parallel.DistributedDataParallel)
        assert stats["DDP student forward"]["graphs"] >= 1 and stats["student forward"]["graphs"] == 2
    finally:
        torch.distributed.destroy_process_group()


# ---------------------------------------------------------------- host syncs per training step
SYNCS = ("item", "cpu", "numpy", "tolist", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def counted_syncs():
    """Counts the Tensor methods that copy a value to the host (a device sync on a GPU)."""
    counts: collections.Counter[str] = collections.Counter()
    saved = {name: getattr(torch.Tensor, name) for name in SYNCS}

    def counting(name, original):
        def method(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)
        return method

    for name, original in saved.items():
        setattr(torch.Tensor, name, counting(name, original))
    try:
        yield counts
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)


SYNC_CASES = {
    "fp32-at": (AdversarialTrainerADR, None, False, {}),
    "fp32-at-awp-bn-momentum": (AdversarialTrainerADR, None, False, {"awp_rho": 0.01, "bn_momentum": 0.01}),
    "bf16-at-awp": (AdversarialTrainerADR, "bf16", False, {"awp_rho": 0.01}),
    "bf16-trades-awp": (AdversarialTrainerTRADESADR, "bf16", False, {"awp_rho": 0.01}),
    "bf16-mart": (AdversarialTrainerMARTADR, "bf16", False, {}),
    "fp16-fused-at-awp": (AdversarialTrainerADR, "fp16", True, {"awp_rho": 0.01}),
    "fp16-fused-trades": (AdversarialTrainerTRADESADR, "fp16", True, {}),
}


@pytest.mark.parametrize("name", sorted(SYNC_CASES))
def test_training_steps_make_no_host_sync(name):
    cls, amp, fused, kwargs = SYNC_CASES[name]
    if fused:
        from art_adr.runs import fused_sgd_supported

        if not fused_sgd_supported(torch.device("cpu")):
            pytest.skip("this torch has no fused SGD on CPU")
    from art.estimators.classification import PyTorchClassifier

    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, fused=fused or None)
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), optimizer=opt, input_shape=(1, 8, 8),
                            nb_classes=4, clip_values=(0.0, 1.0))
    trainer = cls(clf, amp=amp, verbose=False, **EPS, **kwargs)
    x, y = (torch.as_tensor(a) for a in _data(16))
    trainer.train_step(x, y)  # first step: buffers allocated
    with counted_syncs() as counts:
        for _ in range(3):
            trainer.train_step(x, y)
    assert dict(counts) == {}


def test_fp16_without_a_fused_optimizer_syncs_once_per_step(make_classifier):
    """What the fused optimizer saves: GradScaler reads its inf check with .item() otherwise."""
    trainer = AdversarialTrainerADR(make_classifier(), amp="fp16", verbose=False, **EPS)
    x, y = (torch.as_tensor(a) for a in _data(16))
    trainer.train_step(x, y)
    with counted_syncs() as counts:
        trainer.train_step(x, y)
    assert sum(counts.values()) >= 1


def test_art_adr_train_builds_a_fused_sgd_on_cuda_only():
    from art_adr.config import RunConfig
    from art_adr.runs import build_trainer

    trainer = build_trainer(RunConfig(dataset="synthetic", epochs=1), 4, (3, 8, 8), torch.device("cpu"),
                            verbose=False)
    assert not trainer.optimizer.defaults.get("fused")  # CPU: the unfused update, bit-identical to before


# ---------------------------------------------------------------- bookkeeping with foreach ops
def _reference_awp(model, loss, rho, eps=1e-20):
    """The per-tensor loop the flat version replaces: ``w += ρ·‖w‖/(‖g‖+eps)·g``."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(rho * p.norm() / (g.norm() + eps) * g)


@pytest.mark.parametrize("channels_last", [False, True])
def test_flat_awp_perturbation_equals_the_per_tensor_formula(channels_last):
    torch.manual_seed(0)
    model = TinyNet()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ref = copy.deepcopy(model)  # the same memory format: conv.bias's ~0 gradient (it feeds BN) is round-off
    x = torch.rand(16, 1, 8, 8)
    y = torch.randint(0, 4, (16,))
    awp = AWP(model, 0.01)
    before = [p.detach().clone() for p in model.parameters()]
    saved = awp.perturb(torch.nn.functional.cross_entropy(model(x), y))
    _reference_awp(ref, torch.nn.functional.cross_entropy(ref(x), y), 0.01)
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    buffers = [o.data_ptr() for _, o in saved]
    awp.restore(saved)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    saved = awp.perturb(torch.nn.functional.cross_entropy(model(x), y))
    assert [o.data_ptr() for _, o in saved] == buffers  # the copies are allocated once


def test_snapshot_restore_where_selects_on_the_device_and_survives_nan():
    a, b = torch.arange(4.0), torch.tensor(3, dtype=torch.long)
    snap = TensorSnapshot([a, b])
    snap.save()
    a.fill_(float("nan"))
    b.fill_(7)
    snap.restore_where(torch.tensor(False))
    assert torch.isnan(a).all() and int(b) == 7
    snap.restore_where(torch.tensor(True))
    assert torch.equal(a, torch.arange(4.0)) and int(b) == 3


def test_divergence_snapshot_checks_on_the_device_and_reuses_its_buffers(make_classifier):
    trainer = AdversarialTrainerADR(make_classifier(), verbose=False, **EPS)
    copies = trainer.loop.host_copies
    with counted_syncs() as counts:
        trainer.loop.snapshot_if_finite()
    assert dict(counts) == {}  # the first snapshot: no host sync at all
    ptrs = {k: v.data_ptr() for k, v in copies.slots[0]["student"].items()}
    with counted_syncs() as counts:
        trainer.loop.snapshot_if_finite()  # the previous flag is read (one sync), the other slot is written
    assert sum(counts.values()) == 1
    with torch.no_grad():
        trainer.student_module.fc.weight.fill_(float("nan"))
    trainer.loop.snapshot_if_finite()  # non-finite: written to the slot that is not the latest finite one
    trainer.loop.snapshot_if_finite()
    assert {k: v.data_ptr() for k, v in copies.slots[0]["student"].items()} == ptrs  # buffers reused
    latest = copies.latest()
    assert latest is not None and torch.isfinite(latest["student"]["fc.weight"]).all()
    assert not bool(all_finite([trainer.student_module.fc.weight])) and bool(all_finite([torch.ones(2)]))
    fresh = HostStateCopies()
    assert fresh.latest() is None


# ---------------------------------------------------------------- channels_last and .view
class _ViewNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(self.conv(x).view(x.shape[0], -1))


def test_channels_last_with_a_view_model_names_the_real_cause():
    from art.estimators.classification import PyTorchClassifier

    def classifier():
        model = _ViewNet()
        return PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(),
                                 optimizer=torch.optim.SGD(model.parameters(), lr=0.1), input_shape=(1, 8, 8),
                                 nb_classes=4, clip_values=(0.0, 1.0))

    with pytest.raises(ValueError, match=r"channels_last=True: the model calls \.view\(\)") as info:
        AdversarialTrainerADR(classifier(), channels_last=True, verbose=False, **EPS)
    assert "input_shape" not in str(info.value)
    AdversarialTrainerADR(classifier(), channels_last=False, verbose=False, **EPS)  # fine without NHWC


# ---------------------------------------------------------------- torch floor: Dynamo's names before torch 2.7
def test_dynamo_limit_names_fall_back_to_the_torch_2_6_spelling():
    import types

    new = types.SimpleNamespace(recompile_limit=8, fail_on_recompile_limit_hit=False)
    old = types.SimpleNamespace(cache_size_limit=8, fail_on_cache_limit_hit=False)  # torch 2.6's config.py
    exc = types.SimpleNamespace(FailOnRecompileLimitHit=type("FailOnRecompileLimitHit", (Exception,), {}))
    assert compiling.dynamo_limit_names(new, exc)[:2] == ("recompile_limit", "fail_on_recompile_limit_hit")
    assert compiling.dynamo_limit_names(old, exc) == ("cache_size_limit", "fail_on_cache_limit_hit",
                                                      exc.FailOnRecompileLimitHit)
    with pytest.raises(RuntimeError, match="torch >= 2.6"):  # torch 2.5: a limit but no flag to make it loud
        compiling.dynamo_limit_names(types.SimpleNamespace(cache_size_limit=8), exc)
    with compiling._loud_recompile_limit(3, old):
        assert (old.cache_size_limit, old.fail_on_cache_limit_hit) == (3, True)
        assert not hasattr(old, "recompile_limit")
    assert (old.cache_size_limit, old.fail_on_cache_limit_hit) == (8, False)


def test_recompile_limit_is_loud_through_the_old_names(eager_backend, monkeypatch):
    """The 2.6 names drive the real Dynamo (torch >= 2.7 keeps them as aliases): still an error, not eager."""
    from torch._dynamo.exc import FailOnRecompileLimitHit

    old = ("cache_size_limit", "fail_on_cache_limit_hit", FailOnRecompileLimitHit)
    monkeypatch.setattr(compiling, "dynamo_limit_names", lambda config=None, exc=None: old)
    bn = torch.nn.BatchNorm1d(3)
    fn = compiling.Compiled(bn, "default", "old-names forward", limit=2)
    with pytest.raises(compiling.RecompileLimitError, match="old-names forward recompiled more than 2 times"):
        for k in range(6):
            bn.momentum = 0.01 * (k + 1)
            fn(torch.ones(4, 3))
    assert fn.stats()["graphs"] == 2
    assert torch._dynamo.config.fail_on_cache_limit_hit is False


# ---------------------------------------------------------------- CUDA-graph skips, per compiled function
def _can_build_c() -> bool:
    import shutil
    import sysconfig
    from pathlib import Path

    return shutil.which("cc") is not None and (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file()


@pytest.mark.skipif(not _can_build_c(), reason="Inductor's CPU code needs a C compiler and Python.h")
def test_cudagraph_skips_are_counted_per_compiled_function():
    """Real Inductor on CPU: reduce-overhead cannot record CUDA graphs of CPU tensors, and says so by bumping
    counters["inductor"]["cudagraph_skips"]; each Compiled counts its own, the default mode none."""
    torch._dynamo.reset()
    lin = torch.nn.Linear(4, 2)
    graphed = compiling.Compiled(lin, "reduce-overhead", "graphed forward")
    plain = compiling.Compiled(torch.nn.Linear(4, 2), "default", "plain forward")
    for _ in range(2):
        graphed(torch.ones(3, 4))
        plain(torch.ones(3, 4))
    assert graphed.stats() == {"mode": "reduce-overhead", "graphs": 1, "frames": 1, "cudagraph_skips": 1}
    assert plain.stats()["cudagraph_skips"] == 0 and plain.stats()["graphs"] == 1

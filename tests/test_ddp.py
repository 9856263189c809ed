"""DDP that cannot fail every epoch: a ragged last batch (drop_last off) weighted to the single-process mean, an
empty shard that still trains, an error of one rank seen by every rank, and SyncBatchNorm (issue 15, §3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from art_adr.distributed import convert_sync_bn, shard_weight, together
from art_adr.runs import RunError
from art_adr.trainer import AdversarialTrainerADR, AdversarialTrainerMARTADR, AdversarialTrainerTRADESADR

EPS = dict(eps=0.1, eps_step=0.05, max_iter=2)


# ---------------------------------------------------------------- simulated collectives (one process)
def _fake_all_reduce(others: float):
    """``all_reduce`` as if the other rank held ``others``."""

    def all_reduce(t, op=None):
        t.add_(others)

    return all_reduce


@pytest.mark.parametrize("mine, others, want", [(1, 0, 2.0), (0, 1, 0.0), (2, 2, 1.0), (2, 1, 4 / 3), (1, 2, 2 / 3)])
def test_shard_weight_makes_ddp_average_the_global_batch_mean(monkeypatch, mine, others, want):
    """rank r's mean × n_r·W/N, averaged over W ranks by DDP, is Σ n_r·mean_r / N: the one-process mean."""
    monkeypatch.setattr(torch.distributed, "all_reduce", _fake_all_reduce(others))
    w = shard_weight(mine, torch.device("cpu"), 2)
    assert float(w) == pytest.approx(want) and w.shape == ()
    assert shard_weight(5, torch.device("cpu"), 1) is None  # one process: nothing to weigh


def test_weighted_shard_gradients_average_to_the_one_process_gradient(monkeypatch):
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1)
    x, y = torch.randn(5, 3), torch.randn(5, 1)
    full = torch.autograd.grad(torch.nn.functional.mse_loss(lin(x), y), lin.weight)[0]
    shards = [(x[:3], y[:3]), (x[3:], y[3:])]
    grads = []
    for r, (xs, ys) in enumerate(shards):
        monkeypatch.setattr(torch.distributed, "all_reduce", _fake_all_reduce(len(shards[1 - r][0])))
        weight = shard_weight(len(xs), torch.device("cpu"), 2)
        grads.append(torch.autograd.grad(torch.nn.functional.mse_loss(lin(xs), ys) * weight, lin.weight)[0])
    assert torch.allclose((grads[0] + grads[1]) / 2, full, atol=1e-6)  # DDP's average over the ranks


@pytest.mark.parametrize("cls, kw", [(AdversarialTrainerADR, {}), (AdversarialTrainerADR, {"awp_rho": 0.01}),
                                     (AdversarialTrainerTRADESADR, {}),
                                     (AdversarialTrainerTRADESADR, {"trades_variant": "reference"}),
                                     (AdversarialTrainerMARTADR, {})])
def test_an_empty_shard_takes_a_finite_zero_step(make_classifier, cls, kw):
    """A rank whose shard of the last batch is empty: loss 0 (not NaN: no divergence), zero gradients, BatchNorm
    statistics untouched."""
    from art.estimators.classification import PyTorchClassifier

    clf = make_classifier()
    clf = PyTorchClassifier(clf.model, loss=torch.nn.CrossEntropyLoss(),
                            optimizer=torch.optim.SGD(clf.model.parameters(), lr=0.1), input_shape=(1, 8, 8),
                            nb_classes=4, clip_values=(0.0, 1.0))
    trainer = cls(clf, verbose=False, **EPS, **kw)
    state = [*trainer.student_module.parameters(), *trainer.student_module.buffers()]
    before = [t.detach().clone() for t in state if t.is_floating_point()]
    loss, correct = trainer.train_step(torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    assert float(loss) == 0.0 and int(correct) == 0
    after = [t for t in state if t.is_floating_point()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_together_raises_another_ranks_error_on_every_rank(monkeypatch):
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)

    def gather(rank0_error):
        def all_gather_object(out, mine):
            out[0], out[1] = rank0_error, mine

        return all_gather_object

    monkeypatch.setattr(torch.distributed, "all_gather_object", gather(RunError("nothing to resume: d")))
    with pytest.raises(RunError, match="^nothing to resume: d$"):
        together(lambda: 42, 2, RunError)  # rank 1 itself succeeded: it leaves with rank 0's error
    with pytest.raises(RunError, match="^nothing to resume: d$"):
        together(lambda: (_ for _ in ()).throw(KeyError("rank 1's own")), 2, RunError)  # the lowest rank's wins
    monkeypatch.setattr(torch.distributed, "all_gather_object", gather(None))
    assert together(lambda: 42, 2, RunError) == 42
    with pytest.raises(KeyError):
        together(lambda: (_ for _ in ()).throw(KeyError("mine")), 2, RunError)
    sent = []
    monkeypatch.setattr(torch.distributed, "all_gather_object",
                        lambda out, mine: (sent.append(mine), out.__setitem__(1, mine)))

    class Unpicklable(Exception):
        def __reduce__(self):
            raise TypeError("no")

    with pytest.raises(Unpicklable):
        together(lambda: (_ for _ in ()).throw(Unpicklable("x")), 2, RunError)
    assert isinstance(sent[0], RunError) and str(sent[0]) == "Unpicklable: x"  # what the other ranks receive
    assert together(lambda: 7, 1) == 7  # one process: no collective


# ---------------------------------------------------------------- SyncBatchNorm
def test_sync_bn_converts_in_place_keeping_parameters_and_keys(make_classifier):
    model = make_classifier().model
    params, keys = list(model.parameters()), set(model.state_dict())
    with pytest.raises(ValueError, match="sync_bn needs CUDA devices"):
        convert_sync_bn(model, torch.device("cpu"))
    out = convert_sync_bn(model, torch.device("cuda"))  # converting needs no GPU; running it would
    assert out is model and isinstance(model.bn, torch.nn.SyncBatchNorm)
    assert all(a is b for a, b in zip(params, model.parameters())) and set(model.state_dict()) == keys


def test_trainer_sync_bn_only_under_ddp_and_only_on_cuda(monkeypatch, make_classifier):
    from art_adr.config import resolve_config
    from art_adr.runs import trainer_arguments

    one = AdversarialTrainerADR(make_classifier(), sync_bn=True, verbose=False, **EPS)
    assert one.sync_bn and type(one.student_module.bn) is torch.nn.BatchNorm2d  # one process: its batch is the batch
    monkeypatch.setattr("art_adr.trainer.ddp_world", lambda: (0, 2))
    with pytest.raises(ValueError, match="sync_bn needs CUDA devices"):
        AdversarialTrainerADR(make_classifier(), sync_bn=True, verbose=False, **EPS)
    _, kwargs = trainer_arguments(resolve_config(None, {"sync_bn": True}))
    assert kwargs["sync_bn"] is True and resolve_config(None).sync_bn is False


# ---------------------------------------------------------------- two gloo processes
@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="gloo on Linux")
def test_two_ranks_train_a_ragged_set_as_one_process_and_leave_with_rank_0s_error(tmp_path):
    """tests/ddp_ragged_worker.py: rank 1's last shard is empty, then shorter; and a RunError of rank 0 only
    (``--resume`` of an empty directory), which used to leave rank 1 blocked in the DDP constructor."""
    import socket

    with socket.socket() as s:  # a free port: other test runs on this machine may hold the usual ones
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           str(Path(__file__).with_name("ddp_ragged_worker.py")), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)  # a hang fails here
    files = [tmp_path / f"rank{rank}.json" for rank in (0, 1)]
    assert all(f.is_file() for f in files), f"exit {proc.returncode}: " + proc.stdout[-2000:] + proc.stderr[-6000:]
    for rank, result in enumerate(json.loads(f.read_text()) for f in files):
        assert result["max_weight_diff"] < 1e-5, rank  # the weights one process reaches on the same batches
        assert result["losses"] == pytest.approx(result["reference_losses"], rel=1e-6), rank
        assert result["methods_train"] == {"at-awp": True, "trades": True, "mart": True}, rank
        assert result["error"].startswith("RunError: nothing to resume: "), (rank, result["error"])
    assert len({json.loads(f.read_text())["error"] for f in files}) == 1  # the same error on both ranks

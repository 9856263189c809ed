"""Run by tests/test_gpu_path.py under ``torchrun --nproc_per_node=2`` (gloo, CPU): per-rank seeds, teacher
buffers that agree across ranks after an epoch, and a divergence on one rank that stops every rank."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from art.estimators.classification import PyTorchClassifier

from art_adr import AdversarialTrainerADR
from art_adr.trainer import TrainingDivergedError
from conftest import TinyNet


def _same_on_all_ranks(t: torch.Tensor) -> bool:
    ref = t.detach().clone()
    dist.broadcast(ref, src=0)
    differs = torch.tensor([float(not torch.equal(ref, t))])
    dist.all_reduce(differs, op=dist.ReduceOp.MAX)
    return not differs.item()


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TinyNet()
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(),
                            optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                            input_shape=(1, 8, 8), nb_classes=4, clip_values=(0.0, 1.0))
    trainer = AdversarialTrainerADR(clf, eps=0.1, eps_step=0.05, max_iter=2, augment=True, awp_rho=0.01,
                                    log_every=1, verbose=False)
    assert trainer.world_size == 2
    assert not _same_on_all_ranks(trainer.generator.get_state()), "attack starts must be seeded with seed + rank"

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, 64)
    trainer.fit(x, y, batch_size=32, nb_epochs=1, validation_data=(x[:16], y[:16]))
    for name, b in list(trainer.teacher.module.named_buffers()) + list(trainer.student_module.named_buffers()):
        assert _same_on_all_ranks(b), f"buffer {name} differs between ranks"
    for p in trainer.student_module.parameters():
        assert _same_on_all_ranks(p.detach())

    step = trainer.train_step

    def nan_on_rank_1(xb: torch.Tensor, yb: torch.Tensor):
        loss, correct = step(xb, yb)
        return (loss * float("nan") if rank == 1 else loss), correct

    trainer.train_step = nan_on_rank_1  # type: ignore[method-assign]
    try:
        with warnings.catch_warnings(record=True) as caught:  # the last-finite restore is this rank's own state
            warnings.simplefilter("always")
            trainer.fit(x, y, batch_size=32, nb_epochs=2)
    except TrainingDivergedError as exc:
        assert "one of 2 processes" in str(exc)
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    else:
        raise AssertionError(f"rank {rank} did not stop")
    Path(out, f"ok{rank}").write_text("ok")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

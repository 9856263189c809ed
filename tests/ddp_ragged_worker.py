"""Run by tests/test_ddp.py under ``torchrun --nproc_per_node=2`` (gloo, CPU); writes ``rank<r>.json``.

1. A ragged last batch with ``drop_last`` off: 9 images in batches of 4 (the last batch is 1 image: rank 1's
   shard is empty), then 7 (the last shards are 2 and 1 images). With a deterministic attack and no BatchNorm,
   DDP must end with the weights and epoch losses one process gets on the same batches.
2. The same ragged set trains (finite loss) with AT+AWP, TRADES and MART on a net with BatchNorm.
3. A ``RunError`` raised on rank 0 only (``--resume`` of an empty directory) ends every rank with it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from art.estimators.classification import PyTorchClassifier

from art_adr import AdversarialTrainerADR, AdversarialTrainerMARTADR, AdversarialTrainerTRADESADR
from art_adr.methods.at import AT
from conftest import TinyNet


@dataclass
class CleanAT(AT):
    """AT whose attack returns the clean batch: the same inputs in one process and in DDP's shards."""

    def attack(self, ctx, x, target, y):
        return x


def _classifier(model: torch.nn.Module) -> PyTorchClassifier:
    return PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(),
                             optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                             input_shape=(1, 8, 8), nb_classes=4, clip_values=(0.0, 1.0))


def _ragged_sets() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.uniform(size=(n, 1, 8, 8)).astype(np.float32), rng.integers(0, 4, n)) for n in (9, 7)]


def exact_run() -> tuple[list[torch.Tensor], list[float]]:
    """Weights (student and teacher) and epoch losses after two ragged fits of an MLP with a clean "attack"."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    trainer = AdversarialTrainerADR(_classifier(mlp), method=CleanAT(), drop_last=False, log_every=1,
                                    verbose=False)
    for x, y in _ragged_sets():
        trainer.fit(x, y, batch_size=4, nb_epochs=2)
    weights = [p.detach().clone() for p in trainer.student_module.parameters()]
    weights += [p.detach().clone() for p in trainer.teacher.module.parameters()]
    return weights, [r["loss"] for r in trainer.history]


def methods_train() -> dict[str, bool]:
    x, y = _ragged_sets()[0]
    out = {}
    for name, cls, kw in (("at-awp", AdversarialTrainerADR, {"awp_rho": 0.01}),
                          ("trades", AdversarialTrainerTRADESADR, {}), ("mart", AdversarialTrainerMARTADR, {})):
        torch.manual_seed(0)
        trainer = cls(_classifier(TinyNet()), eps=0.1, max_iter=2, drop_last=False, log_every=1, verbose=False,
                      **kw)
        trainer.fit(x, y, batch_size=4, nb_epochs=1)
        out[name] = bool(np.isfinite(trainer.history[-1]["loss"])) and trainer.step == 3
    return out


def error_of_rank_0(out: Path) -> str:
    from art_adr.config import resolve_config
    from art_adr.runs import train_run

    config = resolve_config(None, {"dataset": "synthetic", "device": "cpu", "epochs": 1, "val_size": 16,
                                   "dataset_kwargs": {"n": 64, "shape": [1, 8, 8], "num_classes": 4},
                                   "arch_kwargs": {"in_channels": 1, "width": 4}})
    try:
        train_run(config, out / "nothing-here", resume=True, verbose=False)
    except Exception as exc:  # noqa: BLE001 - the test compares what each rank saw
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def main(out: str) -> None:
    torch.set_num_threads(1)
    reference = exact_run()  # one process: no process group yet
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    weights, losses = exact_run()
    result = {
        "max_weight_diff": max(float((a - b).abs().max()) for a, b in zip(weights, reference[0])),
        "losses": losses, "reference_losses": reference[1],
        "methods_train": methods_train(),
        "error": error_of_rank_0(Path(out)),
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

"""DistributedDataParallel pieces of the trainers: wrapping, buffer agreement and the collectives the loop needs.
Every function is a no-op (or the identity) for one process, so the same loop runs with and without DDP."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T")

__all__ = ["DistInfo", "init_distributed", "ddp_world", "wrap_ddp", "sync_buffers", "all_reduce_sum", "all_reduce_max",
           "shard_weight", "convert_sync_bn", "together", "leave_together", "replicas_in_sync"]


@dataclass
class DistInfo:
    """Rank facts of a ``torchrun`` process (or of a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return info


def ddp_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def wrap_ddp(forward: nn.Module, device: torch.device) -> nn.Module:
    """``forward`` wrapped in ``DistributedDataParallel`` (gradients all-reduced in its backward)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)


def sync_buffers(student: nn.Module, teacher: nn.Module, world_size: int) -> None:
    """DDP, at every epoch end: the student's buffers become rank 0's (what DDP's next forward broadcasts
    anyway) and the EMA teacher's floating buffers (BatchNorm statistics, blended from each rank's own shard)
    their average over ranks, so validation, the saved teacher (rank 0's) and every rank agree."""
    if world_size <= 1:
        return
    for b in student.buffers():
        torch.distributed.broadcast(b.data, src=0)
    for b in teacher.buffers():
        if b.is_floating_point():
            torch.distributed.all_reduce(b.data)
            b.data.div_(world_size)
        else:
            torch.distributed.broadcast(b.data, src=0)


def all_reduce_sum(t: Tensor, world_size: int) -> Tensor:
    """Sum over ranks, in place (every rank gets it)."""
    if world_size > 1:
        torch.distributed.all_reduce(t)
    return t


def all_reduce_max(t: Tensor, world_size: int) -> Tensor:
    """Maximum over ranks, in place: a flag any rank raised reaches all (so none waits in a collective)."""
    if world_size > 1:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t


def shard_weight(n_local: int, device: torch.device, world_size: int) -> Tensor | None:
    """The factor of this rank's mean loss that makes DDP's gradient (the average over ranks) the gradient of the
    mean over the whole global batch, as one process computes it: ``n_local · world_size / N`` with ``N`` the
    global batch (one all-reduce of a scalar, on the device). It is exactly 1 when every shard is as large
    (``drop_last`` with a batch divisible by the ranks); a shorter last shard weighs less, an empty one 0.
    ``None`` for one process."""
    if world_size <= 1:
        return None
    n = torch.full((1,), float(n_local), device=device)
    total = all_reduce_sum(n.clone(), world_size)
    return (n * world_size / total.clamp_min(1.0))[0]


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm layer a ``SyncBatchNorm`` (the same parameter and buffer tensors, so an
    optimizer built on ``model`` still holds them; the same state-dict keys): under DDP, train-mode forwards then
    normalise over the global batch instead of each rank's shard. torch runs ``SyncBatchNorm`` on GPUs only:
    ``ValueError`` for another device."""
    if device.type != "cuda":
        raise ValueError(f"sync_bn needs CUDA devices (torch's SyncBatchNorm does not run on {device.type}); "
                         f"set sync_bn to false")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def together(fn: Callable[[], T], world_size: int, fallback: type[Exception] = RuntimeError) -> T:
    """``fn()`` on this rank; under DDP an exception raised on any rank is raised on every rank (the lowest
    rank's, with its type and message), so no rank goes on alone into a collective and waits there for ever
    (one ``all_gather_object`` per call). An exception that does not pickle travels as ``fallback``."""
    if world_size <= 1:
        return fn()
    result: Any = None
    error: Exception | None = None
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - every rank must hear of it
        error = exc
    errors: list[Exception | None] = [None] * world_size
    torch.distributed.all_gather_object(errors, _portable(error, fallback))
    failed = [rank for rank, e in enumerate(errors) if e is not None]
    if not failed:
        return result
    if failed[0] == torch.distributed.get_rank() and error is not None:
        raise error  # this rank's own exception, with its traceback
    raise errors[failed[0]]  # type: ignore[misc]


def leave_together(world_size: int) -> None:
    """DDP: wait until rank 0 has written its files, so no rank tears the process group down (and exits) while
    another still uses it — a rank leaving early made gloo abort the other ("terminate called without an active
    exception")."""
    if world_size > 1:
        torch.distributed.barrier()


def replicas_in_sync(model: nn.Module) -> None:
    """Check that every DDP rank holds rank 0's parameters exactly (``RuntimeError`` otherwise)."""
    flat = torch.cat([p.detach().flatten().float() for p in model.parameters()])
    ref = flat.clone()
    torch.distributed.broadcast(ref, src=0)
    mismatch = torch.tensor([float((ref != flat).any())], device=flat.device)
    torch.distributed.all_reduce(mismatch)
    if mismatch.item():
        raise RuntimeError("DDP replicas diverged: parameters differ between ranks")


def _portable(exc: Exception | None, fallback: type[Exception]) -> Exception | None:
    """``exc`` when it survives pickling, else ``fallback("<type>: <message>")``."""
    if exc is None:
        return None
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return fallback(f"{type(exc).__name__}: {exc}")

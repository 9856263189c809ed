"""DistributedDataParallel pieces of the trainers: wrapping, buffer agreement and the collectives the loop needs.
Every function is a no-op (or the identity) for one process, so the same loop runs with and without DDP."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ddp_world", "wrap_ddp", "sync_buffers", "all_reduce_sum", "all_reduce_max"]


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

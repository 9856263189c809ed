"""The trainers' checkpoint state, as pure functions: what a state must hold to be loaded, the undo copy, and
the RNG rules for resuming on another device or number of processes."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from .checkpoint import non_finite_weights
from .checks import integer

__all__ = ["STATE_KEYS", "check_state", "cpu_copy", "restore_rng"]

STATE_KEYS = ("student", "teacher", "optimizer", "step", "epoch")


def check_state(state: Any) -> None:
    """``ValueError`` for a state no trainer could have saved: not a mapping, a missing part, non-finite
    student/teacher weights, a negative or non-integer ``step``/``epoch``."""
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict from state_dict(), got {type(state).__name__}")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"state lacks {missing}: pass a dict from state_dict() (or an art-adr checkpoint)")
    bad = non_finite_weights(state)
    if bad:
        raise ValueError(f"state holds non-finite weights (NaN/inf in {', '.join(bad[:3])}"
                         f"{' ...' if len(bad) > 3 else ''}); nothing was changed")
    for key in ("step", "epoch"):
        integer(state[key], f"state[{key!r}]", 0)


def cpu_copy(obj: Any) -> Any:
    """A deep copy of a state dict with every tensor cloned to the CPU (``load_state_dict``'s undo copy)."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def _attack_state(rng: dict[str, Any], rank: int, world_size: int, notes: list[str]) -> Tensor:
    """This rank's saved attack-generator state (every rank's when ``art-adr train`` saved them all)."""
    attack = rng["attack"]
    ranks = list(rng.get("attack_ranks") or [])
    saved = max(len(ranks), 1)
    if rng.get("attack_rank") == rank:  # a state this rank took itself (the last-finite restore)
        pass
    elif world_size > 1 and len(ranks) == world_size:
        attack = ranks[rank]
    elif saved != world_size:  # resumed by another number of processes (e.g. on fewer GPUs)
        if rank < len(ranks):
            attack = ranks[rank]
        notes.append(f"attack generator states were saved for {saved} process(es), this run has {world_size}"
                     + (f" (rank {rank} continues from rank 0's)" if rank >= saved else ""))
    return torch.as_tensor(attack).detach().to("cpu", torch.uint8)


def restore_rng(rng: dict[str, Any], generator: torch.Generator, *, rank: int, world_size: int, seed: int,
                step: int, device: torch.device) -> None:
    """Restore a state's RNG part (CPU ByteTensors whatever ``map_location`` loaded it).

    A state restores only into a generator of the device type it came from (a CPU Mersenne-Twister state and a
    CUDA Philox state are different things) and only this device's CUDA state; otherwise (a run saved on CPU and
    resumed on a GPU, or on fewer GPUs) the run continues, re-seeded, with a ``RuntimeWarning``.
    """
    notes: list[str] = []
    if rng.get("attack") is not None:
        attack = _attack_state(rng, rank, world_size, notes)
        kind = rng.get("attack_device") or (
            "cpu" if attack.numel() == torch.Generator().get_state().numel() else "cuda")
        if kind == generator.device.type:
            generator.set_state(attack)
        else:
            generator.manual_seed(seed + step)
            notes.append(f"the attack generator state was saved on {kind}, this run's generator is on "
                         f"{generator.device.type} (re-seeded with seed + step)")
    if rng.get("torch") is not None:
        torch.set_rng_state(torch.as_tensor(rng["torch"]).detach().to("cpu", torch.uint8))
    if device.type == "cuda":
        cuda_states = list(rng.get("cuda") or [])
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index < len(cuda_states):
            torch.cuda.set_rng_state(torch.as_tensor(cuda_states[index]).detach().to("cpu", torch.uint8), index)
        else:
            notes.append(f"no CUDA RNG state was saved for cuda:{index} (saved for {len(cuda_states)} GPUs)")
    if notes:
        warnings.warn("resuming on another device: " + "; ".join(notes) + ". Training continues, but not "
                      "bit-for-bit as an uninterrupted run would have.", RuntimeWarning, stacklevel=4)

"""Shared helpers for the art-adr benchmarks: timing, memory, FLOP counting, environment, tables.

Every script in ``benchmarks/`` imports this module by its plain name (``python benchmarks/<script>.py``
puts ``benchmarks/`` first on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from art_adr.tables import markdown_table

REPO_ROOT = Path(__file__).resolve().parent.parent
CIFAR_EPOCH_IMAGES = 50_000

# Paper Table 6 (Wu et al. 2024, Appendix F): seconds per epoch, one NVIDIA RTX A6000, batch 128, PGD-10.
PAPER_TABLE6: dict[str, dict[str, dict[str, float]]] = {
    "cifar10": {
        "resnet18": {"AT": 81, "+ADR": 83, "+AWP": 92, "+AWP+ADR": 93},
        "wrn-34-10": {"AT": 575, "+ADR": 610, "+AWP": 650, "+AWP+ADR": 695},
    },
    "cifar100": {
        "resnet18": {"AT": 81, "+ADR": 83, "+AWP": 91, "+AWP+ADR": 93},
        "wrn-34-10": {"AT": 586, "+ADR": 598, "+AWP": 661, "+AWP+ADR": 672},
    },
    "tinyimagenet200": {
        "resnet18": {"AT": 584, "+ADR": 593, "+AWP": 654, "+AWP+ADR": 662},
        "wrn-34-10": {"AT": 4356, "+ADR": 4594, "+AWP": 4904, "+AWP+ADR": 5127},
    },
}

# Targets of issue 5 (see benchmarks/README.md).
TARGETS: dict[str, str] = {
    "adr_overhead_pct": "ADR overhead over plain PGD-AT in our loop <= 3 % (paper: 1.8 %)",
    "ours_vs_art": "our trainer vs ART's own trainers at equal work: >= 5x images/s on GPU, not slower on CPU",
    "resnet18_epoch_s": "ResNet-18 CIFAR PGD-10 AT+ADR batch 128 <= 10 s/epoch on one H100 (paper: 83 s, A6000)",
    "wrn34_epoch_s": "WRN-34-10 CIFAR PGD-10 AT+ADR batch 128 <= 80 s/epoch on one H100 (paper: 610 s, A6000)",
}


# ---------------------------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[int], Any], device: torch.device, warmup: int, iters: int) -> list[float]:
    """Seconds of each of ``iters`` calls ``fn(i)`` after ``warmup`` untimed calls, synchronised on ``device``."""
    for i in range(warmup):
        fn(i)
    synchronize(device)
    times = []
    for i in range(iters):
        synchronize(device)
        t0 = time.perf_counter()
        fn(warmup + i)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


# ---------------------------------------------------------------------------------------------- memory


def reset_peak_memory(device: torch.device) -> None:
    """Reset the peak counter: CUDA allocator stats on GPU; the RSS high-water mark (Linux) on CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """``(MiB, kind)``: ``torch.cuda.max_memory_allocated`` on GPU, else the process's peak RSS.

    On CPU the peak RSS is read from ``VmHWM`` (reset by :func:`reset_peak_memory`, so it is per
    measurement) and falls back to ``resource.getrusage`` (peak over the whole process) elsewhere.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, "peak_rss_vmhwm"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, KiB on Linux
    return rss / scale, "peak_rss_process"


# ---------------------------------------------------------------------------------------------- FLOPs


def forward_flops(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, str]:
    """``(FLOPs, source)`` of one forward pass per image, by :func:`art_adr.models.count_flops` (conv + linear
    layers, multiply-add = 2 FLOPs); ``source`` names the counter in the JSON output."""
    from art_adr.models import count_flops

    return int(count_flops(model, tuple(input_shape))), "art_adr.models.count_flops"


def forward_equivalents(method: str, steps: int, adr: bool, awp: bool, minimal: bool = False) -> float:
    """Forward-pass equivalents F per image for one training iteration of a registered method
    (``art_adr.methods``), or ``"trades-ce"`` (ART's TRADES, whose attack uses the labels).

    Convention (issue 5): forward = F, backward ≈ 2F, so one forward+backward = 3F.
      * PGD-K: K attack steps, each forward+backward: ``K·3F``; the loss: ``loss_forwards`` forward+backward
        passes (AT 1: ``3F``; TRADES and MART 2: ``6F``), plus ``attack_setup_forwards`` no-grad forwards
        (TRADES' clean KL target: ``+F``).
      * Standard training (a method that is not ``adversarial``): no attack steps, the loss only: ``3F``.
      * ADR: + 1 teacher forward (no grad): ``+F``.
      * AWP: + the loss once more for the weight perturbation (3F for AT, 6F for TRADES/MART).
    ``minimal=True`` counts an attack step as 2F (the backward needs input gradients only, no weight
    gradients), which is the lower bound the paper's "12 forward and 11 backward" implies: PGD-10 AT+ADR is
    34F nominal and 24F minimal.
    """
    from art_adr.methods import METHODS, get_method

    if method == "trades-ce":
        loss_passes, setup = 2, 0
    elif method in METHODS.names():
        cls = get_method(method)
        loss_passes, setup = cls.loss_forwards, cls.attack_setup_forwards
        steps = steps if cls.adversarial else 0  # standard training: no attack
    else:
        raise ValueError(f"method must be one of {', '.join(METHODS)} or 'trades-ce', got {method!r}")
    attack_step = 2.0 if minimal else 3.0
    train = 3.0 * loss_passes
    total = steps * attack_step + train + setup
    if adr:
        total += 1.0
    if awp:
        total += train
    return total


# ---------------------------------------------------------------------------------------------- environment


def git_commit() -> str:
    """Short commit of the repository (``"unknown"`` outside git), ``+dirty`` when the tree has changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Machine, software versions, device, date and commit for the JSON header."""
    import art

    env: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "art": art.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return env


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` (art-adr's one device picker)."""
    from art_adr.estimator import resolve_device as pick

    try:
        return pick(name)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


# ---------------------------------------------------------------------------------------------- data, models


def synthetic_batches(n_batches: int, batch_size: int, shape: Sequence[int], num_classes: int,
                      device: torch.device, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n_batches`` pre-made ``(x in [0, 1], y)`` batches of the real shape on ``device``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.rand((batch_size, *shape), generator=g)
        y = torch.randint(0, num_classes, (batch_size,), generator=g)
        out.append((x.to(device), y.to(device)))
    return out


def art_classifier(model: nn.Module, shape: Sequence[int], num_classes: int, device: torch.device,
                   lr: float = 0.1) -> Any:
    """An ART ``PyTorchClassifier`` with SGD (momentum 0.9, wd 5e-4), CE loss and ``clip_values=(0, 1)``."""
    from art.estimators.classification import PyTorchClassifier

    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    return PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), optimizer=opt, input_shape=tuple(shape),
                             nb_classes=num_classes, clip_values=(0.0, 1.0),
                             device_type="gpu" if device.type == "cuda" else "cpu")


@contextlib.contextmanager
def quiet_tqdm() -> Iterator[None]:
    """Swallow stderr for the block: ART's trainers open tqdm bars unconditionally (tqdm writes to the
    ``sys.stderr`` of the moment the bar is created)."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


# ---------------------------------------------------------------------------------------------- output


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table padded for the terminal; ``columns`` are ``(key, header, format)`` with ``format`` like
    ``".1f"``; a missing or non-finite value is ``-``."""
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        value = row.get(key)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        return format(value, fmt) if fmt else str(value)

    body = [[cell(r, k, f) for k, _, f in columns] for r in rows]
    return "\n".join(markdown_table([h for _, h, _ in columns], body, pad=True))


def write_json(path: str | os.PathLike | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON (creating parent folders); nothing for ``None``."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")

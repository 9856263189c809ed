"""Training throughput, side by side in one process: our ADR trainers, ART's own trainers, a plain PyTorch loop.

Rows (same architecture, same initial weights, same synthetic data of the real shape, same batch size,
same ε/α/steps):

* ``ours-*``: ``AdversarialTrainerADR`` (AT, ± ADR, ± AWP) and ``AdversarialTrainerTRADESADR`` (± ADR,
  ± AWP), timed with ``train_step`` on pre-made device batches; ``ours-at-adr-fit`` times ``fit`` on one
  short epoch (device-resident loader + on-device crop/flip included);
* ``art-madry``: ``art.defences.trainer.AdversarialTrainerMadryPGD`` as shipped (its PGD runs with ART's
  default attack ``batch_size=32``); ``art-madry-bs``: the same with the attack's ``batch_size`` set to
  the training batch size; ``art-trades``: ``AdversarialTrainerTRADESPyTorch`` with
  ``ProjectedGradientDescentPyTorch`` — all called as a user would, ``fit(x, y)`` on numpy arrays;
* ``plain-pgd-at``: a minimal hand-written PyTorch PGD-AT loop (the "no framework" reference).

Usage::

    python benchmarks/throughput.py --preset small --out benchmarks/results/cpu-small.json
    python benchmarks/throughput.py --preset h100 --out benchmarks/results/h100.json   # whole GPU table
    python benchmarks/throughput.py --arch resnet18 --image-size 32 --batch-size 128 --device cuda --amp bf16
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from bench_utils import (
    CIFAR_EPOCH_IMAGES,
    PAPER_TABLE6,
    TARGETS,
    art_classifier,
    environment,
    format_table,
    forward_equivalents,
    forward_flops,
    median,
    peak_memory_mb,
    quiet_tqdm,
    reset_peak_memory,
    resolve_device,
    synchronize,
    synthetic_batches,
    time_calls,
    write_json,
)
from torch import nn

from art_adr.methods import METHODS

OURS_ROWS = tuple(f"ours-{m}{adr}{awp}" for m in METHODS.names() for adr in ("", "-adr")  # every registered method
                  for awp in ("", "-awp"))
ALL_ROWS = OURS_ROWS + ("ours-at-fp32", "ours-at-adr-fit", "art-madry", "art-madry-bs", "art-trades", "plain-pgd-at")


@dataclass
class BenchConfig:
    """One model/shape/batch setting and how long to time it."""

    name: str
    arch: str = "small-cnn"
    image_size: int = 32
    channels: int = 3
    num_classes: int = 10
    batch_size: int = 128
    steps: int = 10
    eps: float = 8 / 255
    eps_step: float = 2 / 255
    beta: float = 6.0
    awp_rho: float = 0.005
    amp: str | None = None
    channels_last: bool = False
    compile: bool | str = False
    warmup: int = 2
    iters: int = 5
    art_batches: int = 2
    art_reps: int = 2
    fit_batches: int = 8
    fit_reps: int = 2
    rounds: int = 1
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    rows: tuple[str, ...] = ALL_ROWS

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)


PRESETS: dict[str, list[BenchConfig]] = {
    "tiny": [BenchConfig("tiny-cnn-16px", image_size=16, channels=1, batch_size=8, steps=2, warmup=1, iters=2,
                         art_batches=1, art_reps=1, fit_batches=2, fit_reps=1, model_kwargs={"width": 8})],
    "small": [BenchConfig("small-cnn-32px", batch_size=64, steps=10, warmup=1, iters=2, art_batches=1,
                          art_reps=2, fit_batches=4, fit_reps=1, rounds=3,
                          model_kwargs={"width": 16, "in_channels": 3})],
    "h100": [
        BenchConfig("resnet18-32px", arch="resnet18", amp="bf16", channels_last=True, warmup=5, iters=20,
                    art_batches=2, art_reps=3, fit_batches=40, fit_reps=2),
        BenchConfig("wrn-34-10-32px", arch="wrn-34-10", amp="bf16", channels_last=True, warmup=3, iters=8,
                    art_batches=1, art_reps=2, fit_batches=8, fit_reps=1),
        BenchConfig("resnet18-64px", arch="resnet18", image_size=64, num_classes=200, amp="bf16",
                    channels_last=True, warmup=3, iters=10, art_batches=1, art_reps=2, fit_batches=10, fit_reps=1),
    ],
}
PRESETS["gpu"] = PRESETS["h100"]
# benchmarks/gpu_suite.sh: ResNet-18 CIFAR shape, bf16 + channels_last, eager and compiled (with and without CUDA
# graphs), ours against ART's trainers and the plain loop, sized for a few minutes of an H100/H200
SUITE_ROWS = ("ours-at", "ours-at-adr", "ours-trades-adr", "art-madry-bs", "art-trades", "plain-pgd-at")
PRESETS["suite"] = [
    BenchConfig("resnet18-32px-bf16-cl", arch="resnet18", amp="bf16", channels_last=True, warmup=5, iters=20,
                art_batches=2, art_reps=2, rows=SUITE_ROWS),
    BenchConfig("resnet18-32px-bf16-cl-compile", arch="resnet18", amp="bf16", channels_last=True, compile=True,
                warmup=5, iters=20, rows=("ours-at-adr", "plain-pgd-at")),
    BenchConfig("resnet18-32px-bf16-cl-reduce-overhead", arch="resnet18", amp="bf16", channels_last=True,
                compile="reduce-overhead", warmup=5, iters=20, rows=("ours-at-adr",)),
]
# the suite's two throughput steps: the eager rows first (the basics), the compiled configurations after
PRESETS["suite-eager"] = [c for c in PRESETS["suite"] if not c.compile]
PRESETS["suite-compiled"] = [c for c in PRESETS["suite"] if c.compile]


# ---------------------------------------------------------------------------------------------- models


def build_model(cfg: BenchConfig) -> nn.Module:
    """``art_adr.models.create_model`` for the config (identity normalisation, seeded init)."""
    from art_adr.models import create_model

    kwargs = dict(cfg.model_kwargs)
    if cfg.arch == "small-cnn":
        kwargs.setdefault("in_channels", cfg.channels)
    torch.manual_seed(0)
    return create_model(cfg.arch, cfg.num_classes, **kwargs)


def _amp_dtype(amp: str | None) -> torch.dtype | None:
    return {None: None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


# ---------------------------------------------------------------------------------------------- our trainers


def row_method(key: str) -> str:
    """The registered method of an ``ours-<method>[-adr][-awp]`` row."""
    name = key.removeprefix("ours-").split("-")[0]
    if name not in METHODS.names():
        raise ValueError(f"row {key!r} names no registered method ({', '.join(METHODS)})")
    return name


def row_options(key: str, cfg: BenchConfig) -> dict[str, Any]:
    """Method name and trainer keyword arguments of an ``ours-*`` row."""
    method = row_method(key)
    opts: dict[str, Any] = {
        "eps": cfg.eps, "eps_step": cfg.eps_step, "max_iter": cfg.steps, "adr": "adr" in key,
        "awp_rho": cfg.awp_rho if "awp" in key else 0.0, "amp": cfg.amp, "channels_last": cfg.channels_last,
        "compile": cfg.compile, "verbose": False,
    }
    if key == "ours-at-fp32":
        opts.update(amp=None, channels_last=False, compile=False)
    return {"method": method, "kwargs": opts}


def make_trainer(model: nn.Module, cfg: BenchConfig, device: torch.device, key: str, **extra: Any) -> Any:
    """Our trainer for row ``key`` around a fresh ART classifier of ``model``."""
    from art_adr.methods import get_method, method_fields
    from art_adr.trainer import AdversarialTrainerADR

    spec = row_options(key, cfg)
    cls = get_method(spec["method"])
    method = cls(**({"beta": cfg.beta} if "beta" in method_fields(cls) else {}))
    return AdversarialTrainerADR(art_classifier(model, cfg.shape, cfg.num_classes, device), method=method,
                                 **(spec["kwargs"] | extra))


def time_ours_step(model: nn.Module, cfg: BenchConfig, device: torch.device, key: str,
                   compile_stats: dict[str, Any] | None = None) -> list[float]:
    """Per-iteration seconds of ``train_step`` on 4 pre-made device batches (warm-up excluded); with ``compile``,
    the trainer's graph counts are written into ``compile_stats``."""
    trainer = make_trainer(model, cfg, device, key)
    trainer.set_plan(0, cfg.warmup + cfg.iters)  # the τ/λ schedules span the timed run
    fmt = torch.channels_last if trainer.channels_last else torch.contiguous_format
    batches = [(x.contiguous(memory_format=fmt), y)
               for x, y in synthetic_batches(4, cfg.batch_size, cfg.shape, cfg.num_classes, device)]

    def step(i: int) -> None:
        trainer.train_step(*batches[i % len(batches)])

    times = time_calls(step, device, cfg.warmup, cfg.iters)
    if compile_stats is not None:
        compile_stats.update(trainer.compile_stats())
    return times


def time_ours_fit(model: nn.Module, cfg: BenchConfig, device: torch.device) -> list[float]:
    """Seconds per batch of ``fit`` over one epoch of ``fit_batches`` batches (uint8 data, on-device crop/flip,
    host→device copy of the array and per-epoch bookkeeping included); one warm-up epoch excluded."""
    trainer = make_trainer(model, cfg, device, "ours-at-adr", augment=True)
    rng = np.random.default_rng(0)
    n = cfg.fit_batches * cfg.batch_size
    x = rng.integers(0, 256, (n, *cfg.shape), dtype=np.uint8)
    y = rng.integers(0, cfg.num_classes, n)

    def epoch(_i: int) -> None:
        trainer.loop.epoch, trainer.loop.history = 0, []
        trainer.fit(x, y, batch_size=cfg.batch_size, nb_epochs=1)

    return [t / cfg.fit_batches for t in time_calls(epoch, device, 1, cfg.fit_reps)]


# ---------------------------------------------------------------------------------------------- ART's trainers


def make_art_trainer(model: nn.Module, cfg: BenchConfig, device: torch.device, key: str) -> Any:
    """ART's ``AdversarialTrainerMadryPGD`` / ``AdversarialTrainerTRADESPyTorch`` at our ε/α/steps."""
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.defences.trainer import AdversarialTrainerMadryPGD, AdversarialTrainerTRADESPyTorch

    clf = art_classifier(model, cfg.shape, cfg.num_classes, device)
    if key == "art-trades":
        attack = ProjectedGradientDescentPyTorch(clf, norm=np.inf, eps=cfg.eps, eps_step=cfg.eps_step,
                                                 max_iter=cfg.steps, num_random_init=1,
                                                 batch_size=cfg.batch_size, verbose=False)
        return AdversarialTrainerTRADESPyTorch(clf, attack, beta=cfg.beta)
    trainer = AdversarialTrainerMadryPGD(clf, nb_epochs=1, batch_size=cfg.batch_size, eps=cfg.eps,
                                         eps_step=cfg.eps_step, max_iter=cfg.steps, num_random_init=1)
    if key == "art-madry-bs":
        trainer.attack.set_params(batch_size=cfg.batch_size)  # ART's default attack batch is 32
    return trainer


def time_art(model: nn.Module, cfg: BenchConfig, device: torch.device, key: str) -> list[float]:
    """Seconds per batch of ART's ``trainer.fit(x, y, batch_size, nb_epochs=1)`` on ``art_batches`` batches of
    numpy data with one-hot labels (ART's convention); one warm-up call on one batch is excluded."""
    trainer = make_art_trainer(model, cfg, device, key)
    rng = np.random.default_rng(0)
    n = cfg.art_batches * cfg.batch_size
    x = rng.random((n, *cfg.shape), dtype=np.float32)
    y = np.eye(cfg.num_classes, dtype=np.float32)[rng.integers(0, cfg.num_classes, n)]

    def call(i: int) -> None:
        m = cfg.batch_size if i == 0 else n
        trainer.fit(x[:m], y[:m], batch_size=cfg.batch_size, nb_epochs=1)

    with quiet_tqdm():
        times = time_calls(call, device, 1, cfg.art_reps)
    return [t / cfg.art_batches for t in times]


# ---------------------------------------------------------------------------------------------- plain PyTorch


def plain_pgd_at_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                      eps: float, alpha: float, steps: int, amp: torch.dtype | None,
                      scaler: torch.amp.GradScaler) -> torch.Tensor:
    """One Madry PGD-AT iteration written directly in PyTorch (uniform start, sign steps, CE, SGD)."""
    autocast = (lambda: torch.autocast(x.device.type, dtype=amp)) if amp else contextlib.nullcontext
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp_(0.0, 1.0)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with autocast():
            loss = F.cross_entropy(model(x_adv).float(), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp_(0.0, 1.0)
    with autocast():
        loss = F.cross_entropy(model(x_adv).float(), y)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach()


def time_plain(model: nn.Module, cfg: BenchConfig, device: torch.device) -> list[float]:
    """Per-iteration seconds of :func:`plain_pgd_at_step` (same AMP / channels_last / compile as our rows)."""
    model = model.to(device).train()
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    if cfg.compile:
        mode = None if cfg.compile is True or cfg.compile == "default" else cfg.compile
        model = torch.compile(model, mode=mode)
    amp = _amp_dtype(cfg.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    batches = [(x.contiguous(memory_format=fmt), y)
               for x, y in synthetic_batches(4, cfg.batch_size, cfg.shape, cfg.num_classes, device)]

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        plain_pgd_at_step(model, opt, x, y, cfg.eps, cfg.eps_step, cfg.steps, amp, scaler)

    return time_calls(step, device, cfg.warmup, cfg.iters)


# ---------------------------------------------------------------------------------------------- rows


ROW_INFO: dict[str, tuple[str, str, bool, bool]] = {
    # key: (description, FLOP method, adr, awp)
    "ours-at": ("AdversarialTrainerADR adr=False (PGD-AT)", "at", False, False),
    "ours-at-adr": ("AdversarialTrainerADR (AT+ADR)", "at", True, False),
    "ours-at-awp": ("AdversarialTrainerADR adr=False +AWP", "at", False, True),
    "ours-at-adr-awp": ("AdversarialTrainerADR +AWP (AT+ADR+AWP)", "at", True, True),
    "ours-trades": ("AdversarialTrainerTRADESADR adr=False (TRADES)", "trades", False, False),
    "ours-trades-adr": ("AdversarialTrainerTRADESADR (TRADES+ADR)", "trades", True, False),
    "ours-trades-awp": ("AdversarialTrainerTRADESADR adr=False +AWP", "trades", False, True),
    "ours-trades-adr-awp": ("AdversarialTrainerTRADESADR +AWP", "trades", True, True),
    **{f"ours-{m}{adr}{awp}": (f"AdversarialTrainerADR(method={m}){' +ADR' if adr else ' adr=False'}"
                               f"{' +AWP' if awp else ''}", m, bool(adr), bool(awp))
       for m in METHODS.names() if m not in ("at", "trades") for adr in ("", "-adr") for awp in ("", "-awp")},
    "ours-at-fp32": ("AdversarialTrainerADR adr=False, fp32 NCHW (ART's precision)", "at", False, False),
    "ours-at-adr-fit": ("AdversarialTrainerADR.fit, 1 short epoch, uint8 + crop/flip", "at", True, False),
    "art-madry": ("ART AdversarialTrainerMadryPGD (attack batch 32, as shipped)", "at", False, False),
    "art-madry-bs": ("ART AdversarialTrainerMadryPGD (attack batch = batch size)", "at", False, False),
    "art-trades": ("ART AdversarialTrainerTRADESPyTorch + ProjectedGradientDescentPyTorch", "trades-ce", False, False),
    "plain-pgd-at": ("hand-written PyTorch PGD-AT loop", "at", False, False),
}


def time_row(key: str, model: nn.Module, cfg: BenchConfig, device: torch.device,
             compile_stats: dict[str, Any] | None = None) -> list[float]:
    """Seconds per training batch for row ``key`` (a fresh copy of ``model`` each time; an empty Dynamo cache)."""
    model = copy.deepcopy(model)
    torch._dynamo.reset()
    if key in OURS_ROWS or key == "ours-at-fp32":
        return time_ours_step(model, cfg, device, key, compile_stats)
    if key == "ours-at-adr-fit":
        return time_ours_fit(model, cfg, device)
    if key.startswith("art-"):
        return time_art(model, cfg, device, key)
    if key == "plain-pgd-at":
        return time_plain(model, cfg, device)
    raise ValueError(f"unknown row {key!r}; choose from {ALL_ROWS}")


def measure_row(key: str, model: nn.Module, cfg: BenchConfig, device: torch.device, flops: int,
                times: list[float] | None = None) -> dict[str, Any]:
    """Timing, derived rates, FLOP throughput and peak memory of one row; ``times`` from earlier rounds
    are pooled with this round's (the median is taken over all of them)."""
    _free(device)
    reset_peak_memory(device)
    compiled: dict[str, Any] = {}
    times = list(times or []) + time_row(key, model, cfg, device, compiled)
    synchronize(device)
    mem, mem_kind = peak_memory_mb(device)
    desc, method, adr, awp = ROW_INFO[key]
    sec = median(times)
    ips = cfg.batch_size / sec
    fwd = forward_equivalents(method, cfg.steps, adr, awp)
    fwd_min = forward_equivalents(method, cfg.steps, adr, awp, minimal=True)
    row = {
        "row": key, "description": desc, "batch_size": cfg.batch_size, "timed_iters": len(times),
        "seconds_per_batch_median": sec, "seconds_per_batch_all": times,
        "ms_per_batch": 1000 * sec, "images_per_s": ips, "epoch_s": CIFAR_EPOCH_IMAGES / ips,
        "fwd_equiv_per_image": fwd, "fwd_equiv_per_image_min": fwd_min,
        "tflops": ips * fwd * flops / 1e12, "tflops_min_count": ips * fwd_min * flops / 1e12,
        "peak_mem_mb": mem, "peak_mem_kind": mem_kind,
    }
    if compiled:
        row["compile_stats"] = compiled
    _free(device)
    return row


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- summary


def _ratio(rows: dict[str, dict[str, Any]], num: str, den: str) -> float | None:
    """``images_per_s[num] / images_per_s[den]`` when both rows exist."""
    if num in rows and den in rows:
        return rows[num]["images_per_s"] / rows[den]["images_per_s"]
    return None


def _overhead_pct(rows: dict[str, dict[str, Any]], base: str, other: str) -> float | None:
    """Extra time per image of ``other`` over ``base`` in percent."""
    r = _ratio(rows, base, other)
    return None if r is None else 100.0 * (r - 1.0)


def summarize(rows: dict[str, dict[str, Any]], cfg: BenchConfig, device: torch.device) -> dict[str, Any]:
    """Overheads (%), speed ratios (×) and the issue's targets for one config."""
    s: dict[str, Any] = {
        "adr_overhead_pct_at": _overhead_pct(rows, "ours-at", "ours-at-adr"),
        "adr_overhead_pct_at_awp": _overhead_pct(rows, "ours-at-awp", "ours-at-adr-awp"),
        "adr_overhead_pct_trades": _overhead_pct(rows, "ours-trades", "ours-trades-adr"),
        "awp_overhead_pct_at": _overhead_pct(rows, "ours-at", "ours-at-awp"),
        "awp_overhead_pct_at_adr": _overhead_pct(rows, "ours-at-adr", "ours-at-adr-awp"),
        "fit_loader_overhead_pct": _overhead_pct(rows, "ours-at-adr", "ours-at-adr-fit"),
        "ours_at_vs_art_madry": _ratio(rows, "ours-at", "art-madry"),
        "ours_at_vs_art_madry_bs": _ratio(rows, "ours-at", "art-madry-bs"),
        "ours_at_fp32_vs_art_madry_bs": _ratio(rows, "ours-at-fp32", "art-madry-bs"),
        "ours_trades_vs_art_trades": _ratio(rows, "ours-trades", "art-trades"),
        "ours_at_vs_plain": _ratio(rows, "ours-at", "plain-pgd-at"),
    }
    art_ratios = [v for k, v in s.items() if k.startswith("ours_") and "_vs_art" in k and v is not None]
    gpu = device.type == "cuda"
    targets: dict[str, Any] = {
        "adr_overhead_pct": {"target": TARGETS["adr_overhead_pct"], "value": s["adr_overhead_pct_at"],
                             "met": None if s["adr_overhead_pct_at"] is None else s["adr_overhead_pct_at"] <= 3.0},
        "ours_vs_art": {"target": TARGETS["ours_vs_art"], "value_min_ratio": min(art_ratios, default=None),
                        "threshold": 5.0 if gpu else 1.0,
                        "met": None if not art_ratios else min(art_ratios) >= (5.0 if gpu else 1.0)},
    }
    epoch = rows.get("ours-at-adr", {}).get("epoch_s")
    standard = cfg.image_size == 32 and cfg.batch_size == 128 and cfg.steps == 10
    h100 = gpu and "H100" in torch.cuda.get_device_name(device)
    for key, arch, limit in (("resnet18_epoch_s", "resnet18", 10.0), ("wrn34_epoch_s", "wrn-34-10", 80.0)):
        if cfg.arch == arch and standard:
            targets[key] = {"target": TARGETS[key], "value": epoch, "limit": limit,
                            "met": (epoch <= limit) if (h100 and epoch is not None) else None,
                            "note": None if h100 else "target is for one H100; measured elsewhere"}
    s["targets"] = targets
    return s


def paper_reference(cfg: BenchConfig) -> dict[str, Any] | None:
    """Paper Table 6 seconds/epoch for the matching architecture (CIFAR-10 at 32 px, TinyImageNet at 64 px)."""
    dataset = {32: "cifar10", 64: "tinyimagenet200"}.get(cfg.image_size)
    if dataset is None or cfg.arch not in PAPER_TABLE6[dataset]:
        return None
    return {"dataset": dataset, "gpu": "NVIDIA RTX A6000", "batch_size": 128, "attack": "PGD-10",
            "seconds_per_epoch": PAPER_TABLE6[dataset][cfg.arch]}


# ---------------------------------------------------------------------------------------------- driver


def run_config(cfg: BenchConfig, device: torch.device, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time every row of ``cfg`` on ``device``; returns the config's JSON block."""
    model = build_model(cfg)
    flops, flops_source = forward_flops(model, cfg.shape)
    rows: dict[str, dict[str, Any]] = {}
    keys = [k for k in cfg.rows if not (k == "ours-at-fp32" and not (cfg.amp or cfg.channels_last or cfg.compile))]
    for rnd in range(cfg.rounds):  # rounds interleave the rows, so load changes on a shared machine hit all alike
        for key in keys:
            log(f"  [{cfg.name}] round {rnd + 1}/{cfg.rounds} {key} ...")
            old = rows.get(key, {}).get("seconds_per_batch_all")
            rows[key] = measure_row(key, model, cfg, device, flops, old)
            log(f"  [{cfg.name}] {key}: {rows[key]['images_per_s']:.1f} images/s")
    return {
        "config": asdict(cfg) | {"shape": list(cfg.shape)},
        "params": sum(p.numel() for p in model.parameters()),
        "forward_gflops_per_image": flops / 1e9, "flops_source": flops_source,
        "epoch_images": CIFAR_EPOCH_IMAGES,
        "rows": list(rows.values()),
        "summary": summarize(rows, cfg, device),
        "paper_table6": paper_reference(cfg),
    }


TABLE_COLUMNS = [
    ("row", "row", ""), ("images_per_s", "img/s", ".1f"), ("ms_per_batch", "ms/batch", ".1f"),
    ("epoch_s", "s/epoch(50k)", ".1f"), ("fwd_equiv_per_image", "fwd-eq", ".0f"), ("tflops", "TFLOP/s", ".3f"),
    ("peak_mem_mb", "peak MiB", ".0f"),
]


def render(result: dict[str, Any]) -> str:
    """The printed table(s) with each config's summary lines."""
    out = []
    for block in result["configs"]:
        c = block["config"]
        out.append(f"\n== {c['name']}: {c['arch']} {c['shape']} batch {c['batch_size']} PGD-{c['steps']} "
                   f"amp={c['amp']} channels_last={c['channels_last']} compile={c['compile']} "
                   f"| forward {block['forward_gflops_per_image']:.4f} GFLOP/image "
                   f"| {result['environment']['device_name']}")
        out.append(format_table(block["rows"], TABLE_COLUMNS))
        for k, v in block["summary"].items():
            if k != "targets" and v is not None:
                out.append(f"  {k}: {v:.2f}")
        if block["paper_table6"]:
            out.append(f"  paper Table 6 ({block['paper_table6']['dataset']}, A6000) s/epoch: "
                       f"{block['paper_table6']['seconds_per_epoch']}")
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="tiny | small (CPU) | h100/gpu")
    p.add_argument("--size", choices=["tiny", "small", "gpu"], default=None, help="alias of --preset")
    p.add_argument("--arch", default=None, help="custom config: architecture (art_adr.architectures.ARCHITECTURES)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--channels", type=int, default=None)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="PGD steps K (default 10)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--iters", type=int, default=None, help="timed iterations (median reported)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved sweeps over the rows (pooled median)")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default=None)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", nargs="?", const=True, default=None,
                   help="compile our trainers and the plain loop; optional mode: reduce-overhead, max-autotune")
    p.add_argument("--list", action="store_true", help="print the configs and rows that would run, and exit")
    p.add_argument("--rows", default=None, help=f"comma-separated subset of {','.join(ALL_ROWS)}")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for the run (1 is far steadier on a shared, oversubscribed CPU)")
    p.add_argument("--out", default=None, help="write the JSON here")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def configs_from_args(args: argparse.Namespace) -> list[BenchConfig]:
    """The preset's configs (or one custom config) with command-line overrides applied."""
    preset = args.preset or {"gpu": "h100"}.get(args.size, args.size)
    if preset is None:
        preset = "small" if args.arch is None else None
    base = PRESETS[preset] if preset else [BenchConfig("custom", arch=args.arch)]
    overrides: dict[str, Any] = {k: v for k, v in {
        "arch": args.arch, "image_size": args.image_size, "channels": args.channels,
        "num_classes": args.num_classes, "batch_size": args.batch_size, "steps": args.steps,
        "warmup": args.warmup, "iters": args.iters, "rounds": args.rounds,
        "channels_last": args.channels_last, "compile": args.compile,
    }.items() if v is not None}
    if args.amp is not None:
        overrides["amp"] = None if args.amp == "none" else args.amp
    if args.rows:
        rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
        unknown = set(rows) - set(ALL_ROWS)
        if unknown:
            raise SystemExit(f"unknown rows {sorted(unknown)}; choose from {ALL_ROWS}")
        overrides["rows"] = rows
    configs = [replace(c, **overrides) for c in base]
    if args.arch and args.arch != "small-cnn":
        configs = [replace(c, model_kwargs={}) for c in configs]
    return configs


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table; write and return the JSON payload."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, device)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    configs = configs_from_args(args)
    if args.list:
        for cfg in configs:
            print(f"{cfg.name}: {cfg.arch} {cfg.shape} batch {cfg.batch_size} amp={cfg.amp} "
                  f"channels_last={cfg.channels_last} compile={cfg.compile} rows={','.join(cfg.rows)}")
        return {"configs": [asdict(c) for c in configs]}
    result: dict[str, Any] = {
        "benchmark": "throughput", "environment": environment(device),
        "timing": {"method": "median of per-iteration wall times after warm-up, device synchronised around "
                             "each timed call", "epoch_images": CIFAR_EPOCH_IMAGES},
        "flop_convention": forward_equivalents.__doc__, "paper_table6_a6000_s_per_epoch": PAPER_TABLE6,
        "targets": TARGETS, "configs": [],
    }
    for cfg in configs:
        log(f"config {cfg.name} on {device}")
        result["configs"].append(run_config(cfg, device, log))
        write_json(args.out, result)  # partial results survive a timeout
    print(render(result))
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

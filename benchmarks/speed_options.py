"""Each speed option of the ADR trainer measured on and off: AMP (bf16 / fp16), channels_last,
``torch.compile``, and the fused in-place EMA update against a naive per-tensor ``state_dict`` loop.

Usage::

    python benchmarks/speed_options.py --preset small --threads 1 --out benchmarks/results/speed-cpu.json
    python benchmarks/speed_options.py --preset h100 --compile --out benchmarks/results/speed-h100.json
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import torch
from bench_utils import (
    environment,
    format_table,
    median,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
    synchronize,
    time_calls,
    write_json,
)
from throughput import PRESETS, BenchConfig, build_model, time_ours_step
from torch import nn

VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"amp": None, "channels_last": False, "compile": False},
    "bf16": {"amp": "bf16", "channels_last": False, "compile": False},
    "fp16": {"amp": "fp16", "channels_last": False, "compile": False},
    "channels_last": {"amp": None, "channels_last": True, "compile": False},
    "bf16+channels_last": {"amp": "bf16", "channels_last": True, "compile": False},
    "compile": {"amp": None, "channels_last": False, "compile": True},
    "bf16+channels_last+compile": {"amp": "bf16", "channels_last": True, "compile": True},
    "bf16+channels_last+reduce-overhead": {"amp": "bf16", "channels_last": True, "compile": "reduce-overhead"},
}


def naive_ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """The unfused reference: one ``mul_``/``add_`` pair per floating-point tensor of the ``state_dict``."""
    t_state = teacher.state_dict()
    with torch.no_grad():
        for key, s in student.state_dict().items():
            t = t_state[key]
            if t.is_floating_point():
                t.mul_(decay).add_(s, alpha=1.0 - decay)
            else:
                t.copy_(s)


def time_ema(model: nn.Module, device: torch.device, iters: int = 50) -> dict[str, Any]:
    """Microseconds per EMA update: ``EMATeacher.update`` (``torch._foreach_lerp_``) vs the naive loop,
    and whether both give the same teacher (max abs difference after ``iters`` updates)."""
    from art_adr.ema import EMATeacher

    student = copy.deepcopy(model).to(device)
    ema = EMATeacher(student, decay=0.995)
    naive_teacher = copy.deepcopy(ema.module)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01)
    fused = time_calls(lambda _i: ema.update(student), device, 5, iters)
    naive = time_calls(lambda _i: naive_ema_update(naive_teacher, student, 0.995), device, 5, iters)
    diff = max(float((a.float() - b.float()).abs().max()) for a, b in
               zip(ema.module.state_dict().values(), naive_teacher.state_dict().values()))
    n_tensors = len(ema.module.state_dict())
    return {"fused_us": 1e6 * median(fused), "naive_us": 1e6 * median(naive),
            "speedup": median(naive) / median(fused), "max_abs_diff": diff, "tensors": n_tensors}


def time_variant(model: nn.Module, cfg: BenchConfig, device: torch.device, name: str) -> dict[str, Any]:
    """Median ``train_step`` time of AT+ADR under variant ``name``."""
    vcfg = replace(cfg, **VARIANTS[name])
    reset_peak_memory(device)
    torch._dynamo.reset()  # every compiled variant starts from an empty Dynamo cache (no shared recompile limit)
    compiled: dict[str, Any] = {}
    try:
        times = time_ours_step(copy.deepcopy(model), vcfg, device, "ours-at-adr", compiled)
    except Exception as exc:  # an option unsupported on this device/build is reported, not fatal
        return {"variant": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
    synchronize(device)
    sec = median(times)
    mem, kind = peak_memory_mb(device)
    return {"variant": name, **VARIANTS[name], "ms_per_batch": 1000 * sec, "images_per_s": cfg.batch_size / sec,
            "peak_mem_mb": mem, "peak_mem_kind": kind, "seconds_all": times, "compile_stats": compiled}


def run_config(cfg: BenchConfig, device: torch.device, variants: Sequence[str]) -> dict[str, Any]:
    """All variants plus the EMA microbenchmark for one config."""
    model = build_model(cfg)
    rows = [time_variant(model, cfg, device, v) for v in variants]
    base = next((r for r in rows if r["variant"] == "fp32" and "error" not in r), None)
    for r in rows:
        if base and "error" not in r:
            r["speedup_vs_fp32"] = r["images_per_s"] / base["images_per_s"]
    ema = time_ema(model, device)
    if base:
        ema["fused_pct_of_step"] = 100 * ema["fused_us"] / (1000 * base["ms_per_batch"])
        ema["naive_pct_of_step"] = 100 * ema["naive_us"] / (1000 * base["ms_per_batch"])
    return {"config": asdict(cfg), "variants": rows, "ema": ema}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--device", default="auto")
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="include the torch.compile variants (slow to compile)")
    p.add_argument("--no-fp16", action="store_true", help="skip fp16 (e.g. CPUs without fast fp16)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every variant of every preset config; print and return (and optionally write) the results."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v for v in VARIANTS if (args.compile or not VARIANTS[v]["compile"])
                and not (args.no_fp16 and v == "fp16")]
    result: dict[str, Any] = {"benchmark": "speed_options", "environment": environment(device), "configs": []}
    for cfg in PRESETS[args.preset]:
        over = {k: v for k, v in (("iters", args.iters), ("warmup", args.warmup)) if v is not None}
        cfg = replace(cfg, **over)
        torch._dynamo.reset()  # between configurations too
        print(f"config {cfg.name} on {device}", file=sys.stderr, flush=True)
        result["configs"].append(run_config(cfg, device, variants))
        write_json(args.out, result)
    for block in result["configs"]:
        print(f"\n== {block['config']['name']} ({block['config']['arch']}, batch {block['config']['batch_size']}, "
              f"PGD-{block['config']['steps']}, AT+ADR train_step)")
        print(format_table(block["variants"], [("variant", "variant", ""), ("images_per_s", "img/s", ".1f"),
                                               ("ms_per_batch", "ms/batch", ".1f"),
                                               ("speedup_vs_fp32", "x fp32", ".2f"),
                                               ("peak_mem_mb", "peak MiB", ".0f"), ("error", "error", "")]))
        e = block["ema"]
        print(f"  EMA update ({e['tensors']} tensors): fused {e['fused_us']:.0f} us, naive {e['naive_us']:.0f} us "
              f"({e['speedup']:.1f}x), max |diff| {e['max_abs_diff']:.2e}")
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

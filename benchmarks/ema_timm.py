"""Our EMA teacher against timm's ModelEmaV2 (the ADR authors' class) and ModelEmaV3: are the averaged states
bit-identical after a run of updates, and how long does one update take? Prints a table, writes JSON.

    python benchmarks/ema_timm.py [--arch mlp,resnet18] [--steps 20] [--repeats 50] [--out FILE.json]

The answer decides ``art_adr/ema.py`` (see its docstring): V3's update is ours (``torch._foreach_lerp_`` on
floating-point entries, integer buffers copied), V2's is ``γ·e + (1 − γ)·m`` on every entry, integer buffers
included (``num_batches_tracked`` truncated)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from bench_utils import environment, format_table, write_json
from timm.utils.model_ema import ModelEmaV2, ModelEmaV3

from art_adr.data import model_inputs
from art_adr.ema import EMATeacher
from art_adr.functional import ema_warmup_decay
from art_adr.models import create_model


def _model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "mlp":
        return create_model(arch, 10, **model_inputs("fashion-mnist"), hidden=512)
    return create_model(arch, 10, **model_inputs("cifar10"))


def _perturb(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for b in model.buffers():
            b.add_(0.1 if b.is_floating_point() else 1)


def compare(arch: str, steps: int, repeats: int) -> dict[str, Any]:
    """Bit-identity of V2/V3 with ours after ``steps`` updates (warm-up decays first), and ms per update."""
    student = _model(arch)
    ours, v2, v3 = EMATeacher(student, 0.995), ModelEmaV2(student, decay=0.995), ModelEmaV3(student, decay=0.995)
    for step in range(steps):
        _perturb(student)
        decay = ema_warmup_decay(0.995, step)
        ours.update(student, decay)
        v3.apply_update_(student, decay)
        v2._update(student, update_fn=lambda e, m, d=decay: d * e + (1.0 - d) * m)
    mine = ours.module.state_dict()
    row: dict[str, Any] = {"arch": arch, "steps": steps}
    for name, other in (("v2", v2.module.state_dict()), ("v3", v3.module.state_dict())):
        row[f"{name}_identical"] = all(torch.equal(mine[k], other[k]) for k in mine)
        row[f"{name}_max_abs_diff"] = max(float((mine[k].double() - other[k].double()).abs().max()) for k in mine)
    calls = {"ours": lambda: ours.update(student), "v3": lambda: v3.apply_update_(student, 0.995),
             "v2": lambda: v2.update(student)}
    for name, fn in calls.items():
        times = []
        for _ in range(3):  # interleaved rounds; the minimum is the least disturbed
            for _ in range(5):
                fn()
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            times.append((time.perf_counter() - t0) / repeats * 1e3)
        row[f"{name}_ms"] = min(times)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mlp,resnet18")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [compare(a, args.steps, args.repeats) for a in args.arch.split(",")]
    print(format_table(rows, [("arch", "arch", ""), ("v3_identical", "V3 bit-identical", ""),
                              ("v2_identical", "V2 bit-identical", ""), ("v2_max_abs_diff", "V2 max abs diff", ".2e"),
                              ("ours_ms", "ours ms", ".3f"), ("v3_ms", "V3 ms", ".3f"), ("v2_ms", "V2 ms", ".3f")]))
    write_json(args.out, {"rows": rows, "environment": environment(torch.device("cpu"))})


if __name__ == "__main__":
    main()

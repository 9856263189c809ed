"""Are two run directories the same run? metrics.jsonl rows (timings aside) and every entry of best.pt, last.pt
and final.pt but their descriptions (student, teacher, optimizer, scheduler, RNG states, history, ...; tensors
bit for bit). Prints IDENTICAL or
the first difference, exit 1.

    python benchmarks/compare_runs.py RUN_A RUN_B
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

TIMING = {"seconds", "train_seconds", "images_per_s"}  # history keys that differ between equal runs
DESCRIPTIONS = {"config", "command", "software", "started", "model"}  # how the runs were described (a newer
# version records more, e.g. the model's input shape), not what they computed: the tensors and histories decide


def same(a: Any, b: Any, where: str) -> str | None:
    """``None`` when equal (tensors bit for bit, timings aside), else where they first differ."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        ok = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        return None if ok else where
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) - TIMING != set(b) - TIMING:
            return f"{where}: keys {sorted(set(a) ^ set(b))}"
        return next((d for k in sorted(set(a) - TIMING, key=str) if (d := same(a[k], b[k], f"{where}.{k}"))), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: lengths {len(a)} != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := same(x, y, f"{where}[{i}]"))), None)
    return None if a == b else f"{where}: {a!r} != {b!r}"


def rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def compare(a: Path, b: Path) -> str | None:
    diff = same(rows(a), rows(b), "metrics.jsonl")
    for name in ("best.pt", "last.pt", "final.pt"):
        ca, cb = (torch.load(r / "checkpoints" / name, weights_only=False) for r in (a, b))
        diff = diff or same({k: v for k, v in ca.items() if k not in DESCRIPTIONS},
                            {k: v for k, v in cb.items() if k not in DESCRIPTIONS}, name)
    return diff


if __name__ == "__main__":
    result = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print("IDENTICAL" if result is None else f"DIFFERENT at {result}")
    sys.exit(0 if result is None else 1)

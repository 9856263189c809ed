"""The one JSON of ``benchmarks/gpu_suite.sh``: every step's status and everything the steps wrote.

``suite.json`` holds the environment (GPU, driver, torch, CUDA, Python, commit), the host check (``host.json`` of
``gpu_host_check.py``) and the steps it skipped with their reasons, each step's exit code, seconds and whether it
ran out of its time, the ``pytest -m cuda`` outcomes of both test steps (from the JUnit XML), each train → resume →
evaluate cycle (``cuda-<cycle>.json``), the training steps run under ``torch.cuda.set_sync_debug_mode("error")``
(``cuda-sync-*.json``), the compiled graph counts (``cuda-graphs-*.json``), Inductor's CUDA-graph skips per
compiled function and cycle, and the throughput rows of ``throughput.py --preset suite-eager`` and
``suite-compiled`` with the projected seconds per CIFAR epoch (plus the full throughput JSON), and what never ran.
Runs without a GPU too (``gpu_suite.sh --dry-run`` checks it).

    python benchmarks/gpu_summary.py OUT_DIR STEPS_JSON
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name() if cuda else None,
            "nvidia_smi": _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                "--format=csv,noheader"]) if cuda else None,
            "git_commit": _run(["git", "rev-parse", "--short", "HEAD"])}


def junit(path: Path) -> dict[str, Any] | None:
    """Counts and per-test outcomes of a pytest JUnit XML file."""
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    cases = []
    for case in root.iter("testcase"):
        outcome, message = "passed", None
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome, message = ("skipped" if kind == "skipped" else "failed"), (node.get("message") or "")[:500]
        cases.append({"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time") or 0),
                      "message": message})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "skipped")}
    return {"counts": counts, "tests": cases}


def throughput_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per (config, row): images/s, ms per batch, projected seconds per CIFAR epoch, compile graphs."""
    out = []
    for block in result.get("configs", []):
        c = block["config"]
        for r in block["rows"]:
            out.append({"config": c["name"], "arch": c["arch"], "amp": c["amp"], "channels_last": c["channels_last"],
                        "compile": c["compile"], "row": r["row"], "images_per_s": r["images_per_s"],
                        "ms_per_batch": r["ms_per_batch"], "cifar_epoch_s": r["epoch_s"],
                        "compile_stats": r.get("compile_stats")})
    return out


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


NEVER_RUN = ("NCCL DDP and SyncBatchNorm have never run anywhere: one GPU cannot run them (tests/test_ddp.py runs "
             "DDP with gloo on CPU only)")


def _merged_junit(out: Path) -> dict[str, Any] | None:
    """The eager and the compiled CUDA tests' JUnit files as one."""
    parts = [j for j in (junit(out / "cuda-tests.xml"), junit(out / "cuda-tests-compiled.xml")) if j]
    if not parts:
        return None
    tests = [t for j in parts for t in j["tests"]]
    return {"counts": {k: sum(j["counts"][k] for j in parts) for k in ("passed", "failed", "skipped")},
            "tests": tests}


def _throughput(out: Path) -> dict[str, Any] | None:
    """``throughput.json`` (eager rows) and ``throughput-compiled.json``, their configurations in one list."""
    found = [_json(out / f) for f in ("throughput.json", "throughput-compiled.json") if (out / f).is_file()]
    found = [f for f in found if isinstance(f, dict) and "configs" in f]
    if not found:
        return None
    return {**found[0], "configs": [c for f in found for c in f["configs"]]}


def cudagraph_skips(compile_records: dict[str, Any], cycles: dict[str, Any]) -> dict[str, Any]:
    """Inductor's CUDA-graph skips per compiled function (graph tests) and per compiled cycle."""
    out: dict[str, Any] = {}
    for mode, rec in compile_records.items():
        for fn, st in (rec.get("stats") or {}).items() if isinstance(rec, dict) else ():
            out[f"{mode}: {fn}"] = st.get("cudagraph_skips")
    for name, rec in cycles.items():
        if isinstance(rec, dict) and "cudagraph_skips" in rec:
            out[f"cycle {name}"] = rec["cudagraph_skips"]
    return out


def summarize(out: Path, steps: dict[str, Any]) -> dict[str, Any]:
    cuda = {p.stem.removeprefix("cuda-"): _json(p) for p in sorted(out.glob("cuda-*.json"))}
    throughput = _throughput(out)
    # cuda-graphs-<case>.json: the graph-count tests; cuda-sync-<case>.json: sync-debug steps; the rest: cycles
    # (a cycle may be called compile-...)
    cycles = {k: v for k, v in cuda.items() if not k.startswith(("sync-", "graphs-"))}
    compiled = {k.removeprefix("graphs-"): v for k, v in cuda.items() if k.startswith("graphs-")}
    return {
        "environment": environment(), "steps": steps,
        "ok": all(s.get("exit_code") == 0 or s.get("reason") for s in steps.values()),
        "skipped": {k: s.get("reason") or "budget spent" for k, s in steps.items() if s.get("skipped")},
        "host": _json(out / "host.json") if (out / "host.json").is_file() else None,
        "never_run": NEVER_RUN,
        "cudagraph_skips": cudagraph_skips(compiled, cycles),
        "cuda_tests": _merged_junit(out),
        "cycles": cycles,
        "sync_debug_mode_error": {k.removeprefix("sync-"): v for k, v in cuda.items() if k.startswith("sync-")},
        "compile": compiled,
        "throughput_rows": throughput_rows(throughput) if isinstance(throughput, dict) else None,
        "throughput": throughput,
    }


def main(argv: list[str]) -> int:
    out, steps = Path(argv[0]), json.loads(argv[1]) if len(argv) > 1 else {}
    summary = summarize(out, steps)
    (out / "suite.json").write_text(json.dumps(summary, indent=2, default=str))
    brief = {k: summary[k] for k in ("environment", "steps", "ok", "skipped", "cudagraph_skips")}
    brief["cuda_tests"] = (summary["cuda_tests"] or {}).get("counts")
    brief["throughput_rows"] = [{k: r[k] for k in ("config", "row", "images_per_s", "cifar_epoch_s")}
                                for r in summary["throughput_rows"] or []]
    print(json.dumps(brief, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

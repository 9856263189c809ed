"""What the GPU suite needs of its host, checked before anything is installed (the suite's first step, and part of
``gpu_suite.sh --dry-run``): pip, numpy and scipy against what the wheels require (their METADATA
``Requires-Dist``), a C compiler and ``Python.h`` (Triton builds its kernels with them: ``torch.compile`` and CUDA
graphs), torch against what ``art_adr/compiling.py`` uses and ``pyproject.toml`` requires, free disk, the GPU's
name and memory.

    python benchmarks/gpu_host_check.py WHEELS [--site DIR] [--out host.json]

Prints one ``ok`` / ``WARN`` line per check and one ``SKIP`` line per step the host cannot run; writes the checks
and ``skip`` (step -> reason: the suite skips those steps instead of failing them) as JSON to ``--out``. Exit code
0: the checker never fails a suite, it reports.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import os
import re
import shutil
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PREINSTALLED = ("numpy", "scipy")  # checked against the wheels' requirements (torch: against compiling.py)
COMPILED_STEPS = ("tests-compiled", "throughput-compiled")
GPU_STEPS = ("tests", "throughput", "speed", "equivalence", *COMPILED_STEPS)
MIN_FREE_GIB = 2.0  # the installed wheels (~150 MiB), Inductor's and Triton's caches, the outputs


def _packaging() -> Any:
    """``packaging`` (requirements, specifiers, version): the package, else pip's vendored copy (a bare host has pip
    but not packaging, which comes with the wheels)."""
    try:
        import packaging.requirements
        import packaging.specifiers
        import packaging.version

        return packaging
    except ImportError:
        import pip._vendor.packaging.requirements
        import pip._vendor.packaging.specifiers
        import pip._vendor.packaging.version

        return pip._vendor.packaging


def wheel_requirements(wheels: Path, names: tuple[str, ...] = PREINSTALLED) -> dict[str, list[tuple[str, str]]]:
    """For each of ``names``: ``(wheel, specifier)`` of every wheel in ``wheels`` whose METADATA requires it
    (``Requires-Dist`` without an extra, markers evaluated for this interpreter)."""
    Requirement = _packaging().requirements.Requirement

    out: dict[str, list[tuple[str, str]]] = {n: [] for n in names}
    for whl in sorted(wheels.glob("*.whl")) if wheels.is_dir() else []:
        with zipfile.ZipFile(whl) as z:
            meta = next((n for n in z.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = z.read(meta).decode("utf-8", "replace") if meta else ""
        for line in text.splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.name.lower() in out and (req.marker is None or req.marker.evaluate({"extra": ""})):
                out[req.name.lower()].append((whl.name, str(req.specifier)))
    return out


def installed_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def check_versions(wheels: Path) -> list[dict[str, Any]]:
    """numpy and scipy: installed, and inside every specifier a wheel states."""
    SpecifierSet = _packaging().specifiers.SpecifierSet

    checks = []
    for name, needs in wheel_requirements(wheels).items():
        have = installed_version(name)
        bad = [f"{w} needs {name}{spec}" for w, spec in needs if have is None or have not in SpecifierSet(spec)]
        what = f"{name} {have or 'missing'}" + (f" (required by {len(needs)} wheels)" if needs else "")
        checks.append({"check": name, "ok": have is not None and not bad, "detail": "; ".join(bad) or what})
    return checks


def find_compiler() -> str | None:
    """The C compiler Triton would call: ``$CC``, else cc, gcc or clang on PATH."""
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand.split()[0]):
            return shutil.which(cand.split()[0])
    return None


def python_header() -> Path | None:
    path = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return path if path.is_file() else None


def torch_floor(pyproject: Path = ROOT / "pyproject.toml") -> str | None:
    """The ``torch>=X`` floor of pyproject.toml's dependencies."""
    found = re.search(r'"torch>=([0-9.]+)"', pyproject.read_text()) if pyproject.is_file() else None
    return found.group(1) if found else None


def check_torch() -> tuple[dict[str, Any], str | None]:
    """torch's version against the floor, and the Dynamo names art_adr/compiling.py needs (read from the tree:
    nothing is installed yet). Returns the check and, when compile cannot work, the reason."""
    Version = _packaging().version.Version

    have, floor = installed_version("torch"), torch_floor()
    if have is None:
        return {"check": "torch", "ok": False, "detail": "torch is not installed"}, "torch is not installed"
    spec = importlib.util.spec_from_file_location("_art_adr_compiling", ROOT / "art_adr" / "compiling.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        names = module.dynamo_limit_names()[:2]
        reason = None
    except (RuntimeError, ImportError, AttributeError) as exc:
        names, reason = None, f"torch {have}: {exc}"
    ok = floor is None or Version(have.split("+")[0]) >= Version(floor)
    detail = f"torch {have} (pyproject: >= {floor}); Dynamo limit names {names}"
    return {"check": "torch", "ok": ok and reason is None, "detail": detail}, reason


def check_gpu() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"check": "gpu", "ok": False, "detail": "torch sees no CUDA GPU", "name": None, "memory_gib": None}
    props = torch.cuda.get_device_properties(0)
    return {"check": "gpu", "ok": True, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "detail": f"{props.name}, {props.total_memory / 2**30:.1f} GiB, {torch.cuda.device_count()} device(s)"}


def check_host(wheels: Path, site: Path) -> dict[str, Any]:
    """Every check, and ``skip``: step -> why this host cannot run it."""
    checks = [{"check": "pip", "ok": importlib.util.find_spec("pip") is not None,
               "detail": f"pip {installed_version('pip')}" if importlib.util.find_spec("pip") else
               "no pip: `python -m pip install` cannot install the wheels"}]
    checks += check_versions(wheels)
    cc, header = find_compiler(), python_header()
    checks.append({"check": "c-compiler", "ok": cc is not None, "detail": cc or "no cc/gcc/clang on PATH, no $CC"})
    checks.append({"check": "python-h", "ok": header is not None,
                   "detail": str(header or Path(sysconfig.get_paths()["include"]) / "Python.h (missing)")})
    torch_check, torch_reason = check_torch()
    checks.append(torch_check)
    probe = site if site.exists() else site.parent if site.parent.exists() else Path("/")
    free = shutil.disk_usage(probe).free / 2**30
    checks.append({"check": "disk", "ok": free >= MIN_FREE_GIB, "detail": f"{free:.1f} GiB free at {probe}",
                   "free_gib": round(free, 1)})
    gpu = check_gpu()
    checks.append(gpu)
    skip: dict[str, str] = {}
    if not gpu["ok"]:
        skip.update({s: "no CUDA GPU" for s in GPU_STEPS})
    for missing, why in ((cc is None, "no C compiler (Triton compiles its kernels with one)"),
                         (header is None, "no Python.h (Triton's launcher needs the Python headers)"),
                         (torch_reason is not None, torch_reason)):
        if missing:
            for step in COMPILED_STEPS:
                skip.setdefault(step, str(why))
    return {"ok": all(c["ok"] for c in checks), "checks": checks, "skip": skip, "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("wheels", type=Path)
    p.add_argument("--site", type=Path, default=Path(os.environ.get("GPU_SUITE_SITE", "/tmp/art-adr-site")))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    report = check_host(args.wheels, args.site)
    for c in report["checks"]:
        print(f"{'ok   ' if c['ok'] else 'WARN '} host {c['check']}: {c['detail']}", flush=True)
    for step, why in report["skip"].items():
        print(f"SKIP  step {step}: {why}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The checks of ``gpu_suite.sh --dry-run``, in one process that never touches CUDA: the preinstalled modules import,
every module of ``gpu_requirements.txt`` imports here or comes from a wheel in the wheels folder, each step's files
exist and parse, and (where art-adr imports) pytest collects the CUDA tests and the scripts' arguments resolve.

    python benchmarks/gpu_suite_check.py WHEELS REQUIREMENTS STEP...   (STEP = "name|file file ...")

Prints one ``ok`` / ``FAIL`` line per check; exit code 1 when any failed.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PREINSTALLED = ("torch", "numpy", "scipy")


class Checks:
    def __init__(self) -> None:
        self.failed = 0

    def __call__(self, ok: bool, what: str) -> bool:
        print(f"{'ok   ' if ok else 'FAIL '} {what}", flush=True)
        self.failed += not ok
        return ok


def wheel_for(wheels: Path, name: str, version: str) -> str | None:
    """The wheel file of ``name==version`` in ``wheels`` (names normalised as wheel files spell them)."""
    stem = f"{name.lower().replace('-', '_').replace('.', '_')}-{version}-"
    found = sorted(p.name for p in wheels.glob("*.whl") if p.name.lower().startswith(stem.lower())) \
        if wheels.is_dir() else []
    return found[0] if found else None


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_requirements(check: Checks, wheels: Path, requirements: Path) -> None:
    for line in requirements.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pin, *modules = line.split()
        name, version = pin.split("==")
        for module in modules:
            if importable(module):
                check(True, f"module {module} imports here ({pin})")
            elif wheel_for(wheels, name, version):
                check(True, f"module {module} from wheel {wheels / wheel_for(wheels, name, version)}")
            else:
                check(False, f"module {module}: not importable and no wheel for {pin} in {wheels} "
                             f"(bash benchmarks/gpu_wheels.sh)")


def check_step_commands(check: Checks, steps: list[str]) -> None:
    """Arguments and collection, where art-adr itself imports (on the GPU machine it is installed by the run)."""
    try:
        importlib.import_module("art_adr.cli")
    except ImportError:
        print("      art-adr is installed by the run itself; its commands are checked after install")
        return
    sys.path.insert(0, str(BENCH))
    for name in steps:
        if name in ("tests", "tests-compiled"):
            if not importable("pytest"):
                print(f"      step {name}: pytest comes from a wheel; collection checked after install")
                continue
            import pytest

            select = "not compile" if name == "tests" else "compile"
            code = pytest.main(["--collect-only", "-q", "-m", "cuda", "-k", select, "tests/test_cuda.py", "-p",
                                "no:cacheprovider"])
            check(code == 0, f"step {name}: pytest collects the cuda tests")
        elif name in ("throughput", "throughput-compiled"):
            import throughput

            preset = "suite-eager" if name == "throughput" else "suite-compiled"
            configs = throughput.configs_from_args(throughput.parse_args(["--preset", preset]))
            check(bool(configs) and all(c.rows for c in configs), f"step {name}: --preset {preset} resolves")
        elif name == "speed":
            import speed_options

            check(speed_options.parse_args(["--preset", "h100", "--compile"]).compile, "step speed: arguments parse")
        elif name == "equivalence":
            import equivalence

            check(callable(getattr(equivalence, "main", None)), "step equivalence: the script imports")


def main(argv: list[str]) -> int:
    wheels, requirements, steps = Path(argv[0]), Path(argv[1]), argv[2:]
    check = Checks()
    for module in PREINSTALLED:
        check(importable(module), f"preinstalled module {module} is there")
    check_requirements(check, wheels, requirements)
    names = []
    for step in steps:
        name, _, files = step.partition("|")
        names.append(name)
        for f in files.split():
            if check(Path(f).is_file(), f"step {name}: file {f} exists") and f.endswith(".py"):
                try:
                    ast.parse(Path(f).read_text())
                    check(True, f"step {name}: {f} parses")
                except SyntaxError as exc:
                    check(False, f"step {name}: {f} does not parse ({exc})")
    sys.path.insert(0, str(BENCH))
    import gpu_summary

    with tempfile.TemporaryDirectory() as tmp:
        check(isinstance(gpu_summary.summarize(Path(tmp), {}), dict), "summary writer runs without a GPU")
    check_step_commands(check, names)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

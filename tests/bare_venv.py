"""Bare virtual environments for the install tests: a venv *without* system site-packages whose site-packages
links only the distributions of a requirement closure, taken from this interpreter's installed distributions.

Nothing is downloaded: PyPI's torch pulls gigabytes of CUDA libraries, so the closure's packages are the ones
already installed here, linked (not copied). What is not in the closure cannot be imported in the venv, which is
the point: a module used at run time but not declared as a dependency fails there.

Used by ``test_simulated_host.py`` (the GPU suite's host: torch, numpy, scipy, pip) and ``test_wheel.py`` (the
built wheel's ``Requires-Dist``).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def norm(name: str) -> str:
    """A distribution name as PEP 503 compares them (``PyYAML`` → ``pyyaml``, ``typing_extensions`` →
    ``typing-extensions``)."""
    return name.lower().replace("_", "-").replace(".", "-")


def closure(requirements: Iterable[str], strict: bool = False) -> list[md.Distribution]:
    """The installed distributions named by ``requirements`` (names or PEP 508 strings; markers evaluated for this
    interpreter, no extras) and, recursively, their declared runtime requirements. A requirement that is not
    installed is left out, unless it is one of ``requirements`` themselves and ``strict`` (then
    ``PackageNotFoundError``)."""
    from packaging.requirements import Requirement

    seen: dict[str, md.Distribution] = {}
    todo = [(text, True) for text in requirements]
    while todo:
        text, top = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = norm(req.name)
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            if strict and top:
                raise
            continue
        seen[name] = dist
        todo.extend((dep, False) for dep in dist.requires or [])
    return list(seen.values())


def site_packages(python: Path) -> Path:
    """The purelib folder of the interpreter ``python``."""
    return Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())


def make_bare_python(root: Path, dists: Iterable[md.Distribution]) -> Path:
    """A venv at ``root`` without pip and without system site-packages whose site-packages links only the
    top-level entries (packages, modules, ``.dist-info``, ``.libs``) of ``dists``. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = site_packages(python)
    for dist in dists:
        origin = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if top in ("__pycache__", "bin") or (site / top).exists() or not (origin / top).exists():
                continue
            (site / top).symlink_to(origin / top)
    return python


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what points Python elsewhere (``PYTHONPATH``, ``PYTHONHOME``,
    ``VIRTUAL_ENV``), one thread, no index for pip, matplotlib's Agg backend; ``extra`` added."""
    keep = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**keep, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "MPLBACKEND": "Agg", **extra}

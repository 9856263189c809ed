"""``import robustbench`` that works: RobustBench imports ``autoattack``, which art-adr ships (``shims/autoattack``)
or, where that module is missing, registers in memory (:func:`install_autoattack_adapter`)."""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .upstream import fill_autoattack_module

__all__ = ["install_autoattack_adapter", "import_robustbench", "robustbench_benchmark"]


def install_autoattack_adapter() -> bool:
    """Make ``import autoattack`` work: a no-op when it already does (art-adr installs a top-level
    ``autoattack`` module built by ``fill_autoattack_module``, or the upstream package is installed); else
    register an in-memory ``autoattack`` backed by ``pyautoattack``. Returns ``True`` when this call
    registered it."""
    if "autoattack" in sys.modules:
        return False
    try:
        import autoattack  # noqa: F401
        return False
    except ImportError:
        pass
    pkg = types.ModuleType("autoattack", "pyautoattack under the upstream name (installed by art_adr)")
    sys.modules["autoattack"] = pkg
    try:
        fill_autoattack_module(pkg)
    except BaseException:
        sys.modules.pop("autoattack", None)
        raise
    return True


def import_robustbench() -> types.ModuleType:
    """``import robustbench`` after installing the adapter; ``ImportError`` with the fix when impossible."""
    install_autoattack_adapter()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            import robustbench
            import robustbench.eval  # noqa: F401
            import robustbench.utils  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"RobustBench is unavailable ({exc}); art-adr needs it: "
                          "`pip install robustbench==1.1.1 'setuptools<81' 'pyautoattack>=0.2'`") from exc
    return robustbench


def robustbench_benchmark(model: nn.Module, *, dataset: str = "cifar10", n_examples: int = 10000,
                          data_dir: str | Path = "./data", batch_size: int = 250, device: Any = "cpu",
                          eps: float = 8 / 255, **kw: Any) -> tuple[float, float]:
    """Run ``robustbench.eval.benchmark`` (AutoAttack standard, L∞) through the adapter: ``(clean, robust)``."""
    rb = import_robustbench()
    return rb.eval.benchmark(model.eval(), n_examples=n_examples, dataset=dataset, threat_model="Linf",
                             data_dir=str(data_dir), device=torch.device(device), batch_size=batch_size,
                             eps=eps, **kw)

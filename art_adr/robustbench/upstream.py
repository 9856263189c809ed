"""The upstream AutoAttack API (Croce & Hein, github.com/fra31/auto-attack) over PyPI's ``pyautoattack``.

RobustBench imports ``autoattack`` with the upstream signatures (``AutoAttack(..., log_path=)``,
``run_standard_evaluation(x, y, bs=)`` returning ``x_adv``); ``pyautoattack`` is the same code under another module
name with keyword-only, renamed arguments. :func:`fill_autoattack_module` gives a module the upstream names; the
top-level ``autoattack`` module art-adr installs (``shims/autoattack``) is built by it. This module imports nothing
of art-adr and never ``autoattack`` itself, so the shim can import it without a circle.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["AUTOATTACK_SUBMODULES", "fill_autoattack_module", "logging_to"]

AUTOATTACK_SUBMODULES = ("state", "checks", "autopgd_base", "fab_pt", "fab_base", "square", "other_utils")


@contextlib.contextmanager
def logging_to(logger: logging.Logger, log_path: str | None, verbose: bool) -> Iterator[None]:
    """``logger``'s messages also to the file ``log_path`` and, when ``verbose``, to stdout (upstream's ``Logger``),
    at DEBUG level, for the duration; the handlers are removed and the level restored afterwards."""
    handlers: list[logging.Handler] = []
    if log_path:
        handlers.append(logging.FileHandler(log_path))
    if verbose:
        handlers.append(logging.StreamHandler(sys.stdout))
    old_level = logger.level
    for h in handlers:
        h.setLevel(logging.DEBUG)
        logger.addHandler(h)
    if handlers:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)


def _adapter_class() -> type:
    """``autoattack.AutoAttack`` with the upstream signatures, on top of ``pyautoattack.AutoAttack``."""
    import pyautoattack
    import torch

    class AutoAttack(pyautoattack.AutoAttack):
        """Upstream ``AutoAttack(model, norm, eps, seed, verbose, attacks_to_run, version, is_tf_model,
        device, log_path)`` mapped onto ``pyautoattack`` (messages go to logger ``auto-attack``)."""

        def __init__(self, model: Any, norm: str = "Linf", eps: float = 0.3, seed: int | None = None,
                     verbose: bool = True, attacks_to_run: list[str] | tuple[str, ...] = (),
                     version: str = "standard", is_tf_model: bool = False, device: Any = "cuda",
                     log_path: str | None = None) -> None:
            if is_tf_model:
                raise NotImplementedError("pyautoattack supports PyTorch models only")
            attacks = list(attacks_to_run) if attacks_to_run else None
            super().__init__(model, attacks=attacks, device=device, eps=eps, norm=norm, seed=seed,
                             version=version)
            self.verbose, self.log_path = verbose, log_path

        def _logging(self) -> contextlib.AbstractContextManager[None]:
            return logging_to(self.logger, self.log_path, self.verbose)

        def run_standard_evaluation(self, x_orig: torch.Tensor, y_orig: torch.Tensor, bs: int = 250,
                                    return_labels: bool = False, state_path: Any = None) -> Any:
            """Upstream signature: returns ``x_adv`` (and ``y_adv`` when ``return_labels``)."""
            state = Path(state_path) if state_path is not None else None
            with self._logging():
                x_adv, y_adv = super().run_standard_evaluation(x_orig, y_orig, batch_size=bs, state_path=state)
            return (x_adv, y_adv) if return_labels else x_adv

        def run_standard_evaluation_individual(self, x_orig: torch.Tensor, y_orig: torch.Tensor,
                                               bs: int = 250, return_labels: bool = False) -> dict[str, Any]:
            """Upstream signature: ``{attack: x_adv}`` (or ``(x_adv, y_adv)`` with ``return_labels``)."""
            with self._logging():
                adv = super().run_standard_evaluation_individual(x_orig, y_orig, batch_size=bs)
            return {k: (v if return_labels else v[0]) for k, v in adv.items()}

        def clean_accuracy(self, x_orig: torch.Tensor, y_orig: torch.Tensor, bs: int = 250) -> float:
            """Upstream signature (same as pyautoattack's)."""
            return super().clean_accuracy(x_orig, y_orig, bs=bs)

        def set_version(self, version: str = "standard") -> None:
            """Upstream public name of ``_set_version``."""
            self.version = version
            self._set_version(version)

    return AutoAttack


def fill_autoattack_module(pkg: types.ModuleType) -> types.ModuleType:
    """Give ``pkg`` (the module ``autoattack``) the upstream API backed by ``pyautoattack``: ``AutoAttack``
    with the upstream signatures, ``autoattack.autoattack`` and the submodules of ``AUTOATTACK_SUBMODULES``
    (registered in ``sys.modules`` under ``autoattack.<name>``). Used by the top-level ``autoattack`` module
    that art-adr installs and by ``install_autoattack_adapter``; returns ``pkg``."""
    import importlib

    import pyautoattack

    if not hasattr(pkg, "__path__"):
        pkg.__path__ = []  # a package, so ``import autoattack.state`` resolves through sys.modules
    pkg.__version__ = getattr(pyautoattack, "__version__", "unknown")
    pkg.AutoAttack = _adapter_class()
    for sub in AUTOATTACK_SUBMODULES:
        try:
            mod = importlib.import_module(f"pyautoattack.{sub}")
        except ImportError:
            continue
        sys.modules[f"{pkg.__name__}.{sub}"] = mod
        setattr(pkg, sub, mod)
    main = types.ModuleType(f"{pkg.__name__}.autoattack", "upstream ``autoattack.autoattack`` (art-adr adapter)")
    main.AutoAttack = pkg.AutoAttack
    sys.modules[main.__name__] = main
    pkg.autoattack = main
    return pkg

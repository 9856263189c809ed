"""``torch.compile`` for the trainers, with no silent eager fallback: :class:`Compiled` wraps one forward.

Dynamo compiles a new graph whenever a guard fails (another batch shape, train vs eval mode, grad mode, a
changed module attribute) and, past ``torch._dynamo.config.recompile_limit`` (``cache_size_limit`` before torch
2.7) recompiles of one function, runs
it **eager without a word**. Each :class:`Compiled` therefore

* gets a code object of its own (so trainers in one process do not share Dynamo's per-function limit, as they
  did through the common ``Normalized.forward`` frame),
* counts the graphs compiled and the frames traced while it runs (``stats()``; the GPU suite records them),
* raises :class:`RecompileLimitError` (naming the function) when it recompiles past ``RECOMPILE_LIMIT``, instead
  of falling back to eager — Dynamo's ``fail_on_recompile_limit_hit``, set only while the function runs.

``compile`` values (``COMPILE_MODES``; :func:`compile_mode` normalises them): ``False``/``None``/``"none"`` (eager),
``True``/``"default"`` (Inductor), ``"reduce-overhead"`` (Inductor + CUDA graphs: one graph launch instead of
thousands of kernel launches per step), ``"max-autotune"`` (autotuned kernels + CUDA graphs) and
``"max-autotune-no-cudagraphs"``.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["COMPILE_MODES", "RECOMPILE_LIMIT", "Compiled", "RecompileLimitError", "compile_mode",
           "dynamo_limit_names", "uses_cudagraphs"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
RECOMPILE_LIMIT = 12  # compilations of one function before it is an error: 2 x the call contexts of a method
BACKEND = "inductor"  # tests use "eager" (Dynamo's tracing and guards without code generation)


class RecompileLimitError(RuntimeError):
    """A compiled function recompiled past :data:`RECOMPILE_LIMIT` (torch.compile would have run it eager)."""


def compile_mode(value: Any) -> str | None:
    """The trainers' ``compile`` option as a mode name, or ``None`` for eager (``ValueError`` naming ``compile``)."""
    if value is None or value is False or (isinstance(value, str) and value.lower() in ("none", "false", "off")):
        return None
    if value is True or (isinstance(value, str) and value.lower() in ("true", "on")):
        return "default"
    if isinstance(value, str) and value in COMPILE_MODES:
        return value
    raise ValueError(f"compile must be False, True or one of {', '.join(COMPILE_MODES)}, got {value!r}")


def uses_cudagraphs(mode: str | None) -> bool:
    """Whether the mode records CUDA graphs (then each training step must mark its beginning)."""
    return mode in ("reduce-overhead", "max-autotune")


def _own_code(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` behind a function whose code object belongs to this wrapper alone (Dynamo caches per code object)."""

    def entry(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    code = entry.__code__.replace(co_name=f"compiled_{name.replace(' ', '_')}")
    return types.FunctionType(code, entry.__globals__, code.co_name, None, entry.__closure__)


# Dynamo's names for the per-function limit, the flag that makes hitting it an error, and that error, read from
# the released wheels' torch/_dynamo/config.py and exc.py: torch >= 2.7 has ``recompile_limit`` /
# ``fail_on_recompile_limit_hit`` (the old names stay as aliases); torch 2.6 only ``cache_size_limit`` /
# ``fail_on_cache_limit_hit``, with the error already called ``FailOnRecompileLimitHit``; torch 2.5 has no such
# flag at all. pyproject.toml's floor (torch>=2.6) is the first release with the flag.
_LIMIT_NAMES = (("recompile_limit", "fail_on_recompile_limit_hit", "FailOnRecompileLimitHit"),
                ("cache_size_limit", "fail_on_cache_limit_hit", "FailOnRecompileLimitHit"))


def dynamo_limit_names(config: Any = None, exc: Any = None) -> tuple[str, str, type[BaseException]]:
    """``(limit, fail flag, exception class)`` as this torch names them (``RuntimeError`` naming what is missing)."""
    config = torch._dynamo.config if config is None else config
    if exc is None:
        import torch._dynamo.exc as exc
    for limit, flag, error in _LIMIT_NAMES:
        if hasattr(config, limit) and hasattr(config, flag) and isinstance(getattr(exc, error, None), type):
            return limit, flag, getattr(exc, error)
    raise RuntimeError(f"torch {torch.__version__}: torch._dynamo has neither recompile_limit/"
                       f"fail_on_recompile_limit_hit nor cache_size_limit/fail_on_cache_limit_hit; compile needs "
                       f"torch >= 2.6")


@contextlib.contextmanager
def _loud_recompile_limit(limit: int, config: Any = None) -> Iterator[None]:
    """Dynamo raises instead of falling back to eager when the limit is hit (only while the block runs)."""
    config = torch._dynamo.config if config is None else config
    limit_name, flag_name, _ = dynamo_limit_names(config)
    saved = getattr(config, flag_name), getattr(config, limit_name)
    setattr(config, flag_name, True)
    setattr(config, limit_name, limit)
    try:
        yield
    finally:
        setattr(config, flag_name, saved[0])
        setattr(config, limit_name, saved[1])


class Compiled:
    """``torch.compile(fn, mode=mode)`` that counts its graphs and never falls back to eager silently.

    Args:
        fn: the eager callable (a module or a function).
        mode: one of ``COMPILE_MODES``.
        name: what the errors and ``stats()`` call it (``"student forward"``).
        limit: compilations allowed before :class:`RecompileLimitError` (default ``RECOMPILE_LIMIT``).
    """

    def __init__(self, fn: Callable[..., Any], mode: str, name: str, limit: int = RECOMPILE_LIMIT) -> None:
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
        self.eager, self.mode, self.name, self.limit = fn, mode, name, int(limit)
        self.graphs = 0
        self.frames = 0
        self.cudagraph_skips = 0
        options: dict[str, Any] = {"backend": BACKEND}
        if BACKEND == "inductor" and mode != "default":
            options["mode"] = mode
        self._compiled = torch.compile(_own_code(fn, name), **options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from torch._dynamo.utils import counters

        limit_hit = dynamo_limit_names()[2]
        graphs, frames = counters["stats"]["unique_graphs"], counters["frames"]["ok"]
        skips = counters["inductor"]["cudagraph_skips"]
        try:
            with _loud_recompile_limit(self.limit):
                return self._compiled(*args, **kwargs)
        except limit_hit as exc:
            raise RecompileLimitError(
                f"torch.compile: the {self.name} recompiled more than {self.limit} times ({self.graphs} graphs so "
                f"far) and would run eager from now on. Run with TORCH_LOGS=recompiles to see why (shapes that "
                f"change between batches, module attributes changed between calls), or train with compile off"
            ) from exc
        finally:
            self.graphs += counters["stats"]["unique_graphs"] - graphs
            self.frames += counters["frames"]["ok"] - frames
            self.cudagraph_skips += counters["inductor"]["cudagraph_skips"] - skips

    def stats(self) -> dict[str, Any]:
        """``{"mode", "graphs", "frames", "cudagraph_skips"}``: graphs compiled and frames traced (a recompile traces
        the frame again; DDP's forward also traces its helpers once each) while this function ran, and the graphs
        for which Inductor skipped CUDA graphs (``counters["inductor"]["cudagraph_skips"]``: a mutated input such as
        a BatchNorm buffer in train mode, CPU tensors, dynamic shapes; 0 outside ``reduce-overhead`` /
        ``max-autotune``) and ran them without."""
        return {"mode": self.mode, "graphs": self.graphs, "frames": self.frames,
                "cudagraph_skips": self.cudagraph_skips}

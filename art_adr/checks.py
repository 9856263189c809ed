"""Input validation shared by the trainers: one ``ValueError`` naming the argument per mistake."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["finite_number", "integer", "boolean", "number_pair", "check_images", "check_labels", "OptionError",
           "call_with_options"]

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` for error messages: arrays and long containers by type and shape, never their whole content."""
    if isinstance(value, (np.ndarray, Tensor)):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)) and any(isinstance(v, (np.ndarray, Tensor)) for v in value):
        return f"a {type(value).__name__} of {len(value)} arrays"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def finite_number(value: Any, name: str) -> float:
    """A finite real number (``ValueError`` naming ``name`` for NaN, ±inf, strings, complex, bools, None)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite real number, got {short_repr(value)}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def integer(value: Any, name: str, minimum: int | None = None) -> int:
    """A true integer (``2.5``, ``"10"``, ``True`` and ``None`` are refused with a ``ValueError`` naming ``name``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {short_repr(value)} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def boolean(value: Any, name: str) -> bool:
    """A true boolean (``True``/``False``, numpy booleans too); ``"false"``, ``0``, ``None`` are refused with a
    ``ValueError`` naming ``name`` (a string's truthiness would turn ``"false"`` into ``True``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {short_repr(value)} ({type(value).__name__})")
    return bool(value)


def number_pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """``(start, end)`` from a number (constant) or a pair of numbers."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        v = finite_number(value, name)
        return v, v
    if len(value) != 2:
        raise ValueError(f"{name} must be a number or a (start, end) pair, got {value!r}")
    return finite_number(value[0], name), finite_number(value[1], name)


def check_images(x: Any, input_shape: tuple[int, ...], clip_values: tuple[float, float],
                 name: str = "x") -> np.ndarray | Tensor:
    """``x`` as an array/tensor ``[N, *input_shape]`` of real numbers in ``clip_values`` (uint8 images pass)."""
    if not isinstance(x, (np.ndarray, Tensor)):
        raise ValueError(f"{name} must be a numpy array or tensor, got {type(x).__name__}")
    real = (x.dtype.is_floating_point or x.dtype in _INT_DTYPES) if isinstance(x, Tensor) \
        else x.dtype.kind in "fiu"
    if not real:
        raise ValueError(f"{name} must hold real numbers (float or uint8 images), got dtype {x.dtype}")
    if tuple(x.shape[1:]) != tuple(input_shape):
        expected = ", ".join(map(str, input_shape))
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected (N, {expected})")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    arr = x if isinstance(x, Tensor) else np.asarray(x)
    if arr.dtype != np.uint8 and arr.dtype != torch.uint8:
        finite = torch.isfinite(arr).all().item() if isinstance(arr, Tensor) else np.isfinite(arr).all()
        if not finite:
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = clip_values
        mn, mx = float(arr.min()), float(arr.max())
        if mn < lo - 1e-6 or mx > hi + 1e-6:
            raise ValueError(f"{name} has values in [{mn:.3g}, {mx:.3g}], outside clip_values ({lo}, {hi})")
    return arr


def check_labels(y: Any, n: int, nb_classes: int, name: str = "y") -> np.ndarray:
    """Index labels ``[n]`` (int64) from index labels or one-hot rows (ADR rectifies from the ground truth)."""
    y = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if y.ndim == 0 or y.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be an array of integer class indices or one-hot rows, got "
                         f"dtype {y.dtype} shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels for {n} inputs")
    if y.ndim == 2:
        if y.shape[1] != nb_classes:
            raise ValueError(f"{name} has {y.shape[1]} columns, the classifier has {nb_classes} classes")
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise ValueError(f"{name} must hold index labels or one-hot rows (ADR rectifies from the ground truth)")
        y = y.argmax(axis=1)
    elif y.ndim != 1:
        raise ValueError(f"{name} must be index labels [N] or one-hot [N, {nb_classes}], got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{name} must be integer class indices")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= nb_classes:
        raise ValueError(f"{name} has labels in [{y.min()}, {y.max()}], expected [0, {nb_classes - 1}]")
    return y


class OptionError(ValueError):
    """A user's builder options (``arch_kwargs``, ``dataset_kwargs``) that the builder cannot take."""


def call_with_options(build: Any, what: str, args: Sequence[Any], options: dict[str, Any],
                      error: type[ValueError] = OptionError) -> Any:
    """``build(*args, **options)`` where ``options`` are a user's (``arch_kwargs``, ``dataset_kwargs``): an
    unknown option, or one the builder cannot use (``{width: -1}``, ``{width: abc}``), is one ``error`` naming
    ``what`` and the option, never a ``TypeError``/``RuntimeError`` from deep inside."""
    import inspect

    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in list(params.items())[len(args):]
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(named)) if params and not takes_any else []
    if unknown:
        raise error(f"{what}: unknown option(s) {unknown}; it takes {named or 'none'}")
    try:
        return build(*args, **options)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        if isinstance(exc, error):  # the builder's own user-facing error: as it is
            raise
        text = " ".join(str(exc).split())[:300]
        raise error(f"{what} with options {options}: {type(exc).__name__}: {text}") from None

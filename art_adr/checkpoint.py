"""Atomic checkpoint files, loaded as untrusted input with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "resolve_checkpoint", "load_model",
           "model_from_checkpoint", "model_from_desc", "non_finite_tensors", "non_finite_weights", "torch_save",
           "FORMAT", "missing_folders", "remove_empty_folders"]

FORMAT = "art-adr-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is missing, corrupt, not an art-adr checkpoint, or does not fit the model."""


def atomic_write(path: str | os.PathLike, write: Any, before_replace: Any = None) -> Path:
    """Call ``write(tmp_path)`` then rename over ``path``, so a kill never leaves a half-written file.

    The temporary file ``.<name>.<pid>.<random>.tmp`` (same folder) is created with mode ``0o666`` minus the
    user's umask, like any other output file; a kill leaves at most that file, which ``art-adr train`` removes
    on its next start. ``before_replace()`` (a test hook) runs between the write and the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(tmp)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename == tmp:  # name the file, not tmp
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    return path


def missing_folders(path: str | os.PathLike) -> list[Path]:
    """``path`` and its parents that do not exist yet (innermost first): what ``mkdir(parents=True)`` creates."""
    path = Path(path)
    return [d for d in (path, *path.parents) if not d.exists()]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first, as :func:`missing_folders` lists them) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def non_finite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or an infinity."""
    return [name for name, t in state.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]


def non_finite_weights(obj: dict[str, Any]) -> list[str]:
    """``student.<name>`` / ``teacher.<name>`` of every floating-point tensor holding a NaN or an infinity."""
    return [f"{part}.{name}" for part in ("student", "teacher") if isinstance(obj.get(part), dict)
            for name in non_finite_tensors(obj[part])]


def _refuse_non_finite(obj: dict[str, Any], what: str) -> None:
    bad = non_finite_weights(obj)
    if bad:
        raise CheckpointError(f"{what} holds non-finite weights (NaN/inf in {', '.join(bad[:3])}"
                              f"{' ...' if len(bad) > 3 else ''}): the model is not usable")


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a Python file object: a full disk raises ``OSError`` (ENOSPC) naming the errno,
    where torch's C++ writer raises an opaque ``RuntimeError`` (``unexpected pos ...``, also when it closes the
    archive after a write failed); any such writer failure is an ``OSError`` naming the file."""
    try:
        with open(path, "wb") as f:
            torch.save(obj, f)
    except RuntimeError as exc:
        cause = exc.__context__
        if isinstance(cause, OSError):  # the write that failed first, e.g. ENOSPC
            raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from None
        if "unexpected pos" not in str(exc) and "inline_container" not in str(exc):
            raise
        raise OSError(errno.EIO, f"writing failed (is the disk full?): {' '.join(str(exc).split())[:200]}",
                      str(path)) from None


def save_checkpoint(path: str | os.PathLike, obj: dict[str, Any], before_replace: Any = None) -> Path:
    """Save ``obj`` with ``torch.save`` atomically (temp file in the same folder, then ``os.replace``); a state
    with a non-finite student or teacher tensor is never written (``CheckpointError``). A write that fails
    (a full disk) raises ``OSError`` and leaves the previous file as it was."""
    _refuse_non_finite(obj, f"the checkpoint for {path}")
    obj = {"format": FORMAT, "version": VERSION, **obj}
    return atomic_write(path, lambda tmp: torch_save(obj, tmp), before_replace)


def resolve_checkpoint(path: str | os.PathLike, prefer: str = "best") -> Path:
    """A checkpoint file, or ``<run_dir>/checkpoints/{prefer,final,last}.pt`` for a run directory."""
    p = Path(path)
    if p.is_dir():
        for name in (prefer, "best", "final", "last"):
            cand = p / "checkpoints" / f"{name}.pt"
            if cand.is_file():
                return cand
        raise CheckpointError(f"no checkpoint found in run directory {p} (looked for checkpoints/*.pt)")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate an art-adr checkpoint (``weights_only=True``); ``CheckpointError`` otherwise."""
    p = resolve_checkpoint(path)
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt, truncated, pickle with code, not a torch file...
        text = " ".join(str(exc).split())
        text = text.split("WeightsUnpickler error: ")[-1].split(" Check the documentation")[0][:300]
        raise CheckpointError(f"{p} is not a readable checkpoint ({type(exc).__name__}: {text})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not an art-adr checkpoint")
    if "student" not in obj or "model" not in obj:
        raise CheckpointError(f"{p} lacks the student weights or model description")
    return obj


def load_model(
    path: str | os.PathLike, which: str = "student", device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint (or run directory) in eval mode: ``(model, checkpoint)``.

    ``which`` is ``"student"`` or ``"teacher"`` (the EMA / "+WA" model).
    """
    ckpt = load_checkpoint(path)
    return model_from_checkpoint(ckpt, which, device), ckpt


def model_from_desc(desc: dict[str, Any]) -> nn.Module:
    """The (untrained) network of a checkpoint's ``model`` entry: ``arch``, ``num_classes``, ``kwargs`` and its
    inputs, ``input_shape`` (written since 0.1.0; a checkpoint without it is read with its ``dataset``'s registered
    shape, which is what built it) and the ``dataset``'s statistics (:func:`art_adr.data.model_inputs`). The one
    place a model is built for a dataset: ``art-adr train`` builds through it too."""
    from .data import model_inputs
    from .models import create_model

    inputs = model_inputs(desc.get("dataset"), desc.get("input_shape"))
    return create_model(desc["arch"], desc["num_classes"], **inputs, **desc.get("kwargs", {}))


def model_from_checkpoint(ckpt: dict[str, Any], which: str = "student",
                          device: str | torch.device = "cpu") -> nn.Module:
    """The student or teacher of an already loaded checkpoint dict, rebuilt in eval mode."""
    if which not in ("student", "teacher"):
        raise ValueError(f"which must be 'student' or 'teacher', got {which!r}")
    state = ckpt.get(which)
    if state is None:
        raise CheckpointError(f"checkpoint has no {which} weights")
    _refuse_non_finite({which: state}, f"the checkpoint of epoch {ckpt.get('epoch', '?')}")
    desc = ckpt["model"]
    model = model_from_desc(desc)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit {desc['arch']} with {desc['num_classes']} classes: {exc}") from None
    return model.to(device).eval()

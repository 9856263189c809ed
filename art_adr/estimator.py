"""Glue between ART's ``PyTorchClassifier`` and plain device-resident ``nn.Module`` calls."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .models import Normalized

__all__ = ["Normalize", "check_classifier", "check_model_outputs", "classifier_module", "classifier_device",
           "classifier_clip_values", "make_classifier", "resolve_device"]


class Normalize(Normalized):
    """``model((x − mean) / std)``: an ART classifier's standardisation applied once, on the device.

    :class:`art_adr.models.Normalized` with buffers left out of the state dict (the statistics belong to the
    classifier, not the model); a class of its own so the trainer tells it from a model's built-in
    normalisation.
    """

    def __init__(self, model: nn.Module, mean: Any, std: Any) -> None:
        super().__init__(model, mean, std, persistent=False)

    @property
    def model(self) -> nn.Module:
        """The wrapped model (``net``)."""
        return self.net


def _is_identity(op: Any) -> bool:
    return bool(np.all(np.asarray(op.mean) == 0) and np.all(np.asarray(op.std) == 1))


def check_classifier(classifier: Any) -> None:
    """``ValueError`` naming ``classifier`` unless it is an ART-style classifier around a ``torch.nn.Module``
    with a positive ``input_shape`` and ``nb_classes >= 2``."""
    if classifier is None or isinstance(classifier, nn.Module) or not isinstance(
            getattr(classifier, "model", None), nn.Module):
        got = "None" if classifier is None else type(classifier).__name__
        raise ValueError(
            f"classifier must be an ART PyTorchClassifier wrapping a torch.nn.Module, got {got}; wrap a model "
            f"with PyTorchClassifier(model, loss=..., optimizer=..., input_shape=..., nb_classes=..., "
            f"clip_values=(0.0, 1.0))"
        )
    nb = getattr(classifier, "nb_classes", None)
    if isinstance(nb, bool) or not isinstance(nb, (int, np.integer)) or nb < 2:
        raise ValueError(f"classifier.nb_classes must be an integer >= 2, got {nb!r}")
    shape = getattr(classifier, "input_shape", None)
    try:
        dims = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        dims = ()
    if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ValueError(f"classifier.input_shape must be a tuple of positive integers, got {shape!r}")


def check_model_outputs(forward: Any, model: nn.Module, input_shape: tuple[int, ...], nb_classes: int,
                        device: torch.device, channels_last: bool = False) -> None:
    """Run ``forward`` once on two zero images (eval mode, no grad; NHWC with ``channels_last``) and require
    logits ``[2, nb_classes]``. A model whose ``.view`` fails on NHWC activations is named as such."""
    from .modes import module_mode

    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    x = torch.zeros((2, *input_shape), device=device, dtype=dtype)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad(), module_mode(model, False):
            out = forward(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if channels_last and "view size is not compatible with input tensor's size and stride" in str(exc):
            raise ValueError(
                "channels_last=True: the model calls .view() on an activation that is not contiguous in NHWC "
                "memory format; use .reshape() or .flatten() in the model's forward, or channels_last=False "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        raise ValueError(f"classifier.input_shape {tuple(input_shape)} does not fit its model "
                         f"({type(exc).__name__}: {exc})") from None
    shape = tuple(getattr(out, "shape", ()))
    if not isinstance(out, torch.Tensor) or shape != (2, nb_classes):
        raise ValueError(f"classifier.nb_classes is {nb_classes} but its model maps a batch of 2 inputs to "
                         f"{type(out).__name__} of shape {shape}; expected logits of shape (2, {nb_classes})")


def resolve_device(name: Any, local_rank: int = 0) -> torch.device:
    """One device picker for every command: ``auto`` (this rank's GPU if any, else CPU), ``cpu``, ``cuda``,
    ``cuda:N`` or a ``torch.device``; ``ValueError`` with one clear line when CUDA or that GPU is missing."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    name = name.strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        index_text = name[5:] if name.startswith("cuda:") else str(local_rank)
        if not index_text.isdigit():
            raise ValueError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use --device cpu or auto")
        index, count = int(index_text), torch.cuda.device_count()
        if index >= count:
            raise ValueError(f"device {name!r} asked for, but torch sees only {count} GPU(s)")
        return torch.device("cuda", index)
    raise ValueError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")


def classifier_module(classifier: Any) -> tuple[nn.Module, nn.Module]:
    """Return ``(raw_model, forward_module)`` for an ART ``PyTorchClassifier``.

    ``forward_module`` maps ``[0, 1]`` images to logits, with the classifier's mean/std standardisation
    folded in. Preprocessing defences and other preprocessors are rejected with a ``ValueError``.
    """
    model = getattr(classifier, "model", None)
    if not isinstance(model, nn.Module):
        raise ValueError("classifier must be an ART PyTorchClassifier wrapping a torch.nn.Module")
    if getattr(classifier, "preprocessing_defences", None):
        raise ValueError("preprocessing defences are not supported by the ADR trainers; remove them")
    ops = list(getattr(classifier, "preprocessing_operations", None) or [])
    norm = None
    for op in ops:
        if hasattr(op, "mean") and hasattr(op, "std") and type(op).__name__.startswith("StandardisationMeanStd"):
            if not _is_identity(op):
                norm = op
        else:
            raise ValueError(f"unsupported preprocessing {type(op).__name__}; put it inside the model instead")
    if norm is None:
        return model, model
    return model, Normalize(model, norm.mean, norm.std)


def classifier_device(classifier: Any) -> torch.device:
    """The device of an ART ``PyTorchClassifier``: ``ValueError`` for a CUDA device torch does not see (as
    :func:`resolve_device` says it) and for a model on the meta device (no weights to train)."""
    dev = getattr(classifier, "_device", None)
    params = list(classifier.model.parameters()) + list(classifier.model.buffers())
    if any(t.is_meta for t in params):
        raise ValueError("classifier: the model's weights are on the meta device (not materialised); build it with "
                         "real weights (e.g. model.to_empty(device='cpu') and load_state_dict) first")
    if dev is None:
        dev = params[0].device if params else torch.device("cpu")
    dev = torch.device(dev)
    gpus = torch.cuda.device_count() if dev.type == "cuda" and torch.cuda.is_available() else 0
    if dev.type == "cuda" and (dev.index or 0) >= gpus:
        raise ValueError(f"classifier: its device {dev} is not available (torch {torch.__version__} sees {gpus} CUDA "
                         f"GPU(s)); build it with device_type='cpu' or on a GPU that exists")
    return dev


def classifier_clip_values(classifier: Any, required: bool = True) -> tuple[float, float] | None:
    """``clip_values`` of an ART classifier as a pair of floats."""
    cv = getattr(classifier, "clip_values", None)
    if cv is None:
        if required:
            raise ValueError("the classifier needs clip_values (e.g. clip_values=(0.0, 1.0)) for the attack's box")
        return None
    lo, hi = np.asarray(cv, dtype=np.float64).reshape(2, -1)
    if lo.size != 1 or hi.size != 1:
        raise ValueError("only scalar clip_values are supported")
    if not float(lo[0]) < float(hi[0]):
        raise ValueError(f"clip_values must satisfy min < max, got {tuple(cv)}")
    return float(lo[0]), float(hi[0])


def make_classifier(model: nn.Module, like: Any) -> Any:
    """A new ART ``PyTorchClassifier`` around ``model`` with the same shape, classes, clip values and preprocessing."""
    from art.estimators.classification import PyTorchClassifier

    ops = list(getattr(like, "preprocessing_operations", None) or [])
    preprocessing = (ops[0].mean, ops[0].std) if ops and hasattr(ops[0], "mean") else (0.0, 1.0)
    return PyTorchClassifier(
        model=model,
        loss=like._loss if getattr(like, "_loss", None) is not None else nn.CrossEntropyLoss(),
        input_shape=like.input_shape,
        nb_classes=like.nb_classes,
        clip_values=like.clip_values,
        preprocessing=preprocessing,
        channels_first=getattr(like, "channels_first", True),
        device_type="gpu" if classifier_device(like).type == "cuda" else "cpu",
    )

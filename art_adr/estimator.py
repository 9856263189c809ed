"""Glue between ART's ``PyTorchClassifier`` and plain device-resident ``nn.Module`` calls."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["Normalize", "classifier_module", "classifier_device", "classifier_clip_values", "make_classifier"]


class Normalize(nn.Module):
    """``model((x − mean) / std)``: applies an ART classifier's standardisation once, on the device."""

    def __init__(self, model: nn.Module, mean: Any, std: Any) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", _channel_tensor(mean), persistent=False)
        self.register_buffer("std", _channel_tensor(std), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def _channel_tensor(v: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(v, dtype=np.float32))
    return t.view(1, -1, 1, 1) if t.dim() == 1 and t.numel() > 1 else t.reshape(())


def _is_identity(op: Any) -> bool:
    return bool(np.all(np.asarray(op.mean) == 0) and np.all(np.asarray(op.std) == 1))


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
    """The device of an ART ``PyTorchClassifier``."""
    dev = getattr(classifier, "_device", None)
    if dev is None:
        params = list(classifier.model.parameters())
        dev = params[0].device if params else torch.device("cpu")
    return torch.device(dev)


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

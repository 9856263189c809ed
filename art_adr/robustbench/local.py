"""art-adr's own architectures (``mlp``, ``conv-fc``, ``conv-bn``, ``small-cnn``) as model-zoo entries: RobustBench
has no class for them, so the bundle carries the class itself, as a self-contained file that needs only torch
(``model_zoo/architectures/art_adr_<arch>.py``, where RobustBench keeps its architecture files)."""

from __future__ import annotations

import inspect
import math
from typing import Any

from torch import nn

from ..architectures import ARCHITECTURES
from ..data import model_inputs
from ..models import MLP, ConvBN, ConvFC, ModelInputs, SmallCNN
from . import standalone
from .standalone import ARCH_PACKAGE

__all__ = ["LOCAL_CLASSES", "architecture_module", "architecture_source", "local_spec"]

LOCAL_CLASSES: dict[str, type[nn.Module]] = {"mlp": MLP, "conv-fc": ConvFC, "conv-bn": ConvBN, "small-cnn": SmallCNN}


def architecture_module(arch: str) -> str:
    """The module name of ``arch``'s file: ``art_adr_mlp``, ``art_adr_conv_fc``, ..."""
    return "art_adr_" + arch.replace("-", "_")


def architecture_source(arch: str) -> str:
    """A Python file that needs only torch: the ``Normalized`` wrapper and ``arch``'s class, copied from art-adr."""
    cls = LOCAL_CLASSES[arch]
    return (
        f'"""art-adr\'s {cls.__name__} and the Normalized wrapper it runs in ({arch!r}), self-contained: only torch\n'
        f'is needed. Copied from art_adr.models; the logits equal art-adr\'s, bit for bit."""\n\n'
        "from __future__ import annotations\n\nfrom typing import Any\n\nimport torch\nfrom torch import nn\n\n"
        f'__all__ = ["Normalized", "{cls.__name__}"]\n\n\n'
        + inspect.getsource(standalone.Normalized) + "\n\n" + inspect.getsource(cls)
    )


def _bound(arch: str, num_classes: int, inputs: ModelInputs, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of ``arch``'s builder in :mod:`art_adr.models`, defaults filled in."""
    sig = inspect.signature(ARCHITECTURES[arch])
    bound = sig.bind(num_classes, inputs, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _constructor_args(arch: str, num_classes: int, inputs: ModelInputs,
                      kwargs: dict[str, Any]) -> tuple[dict[str, Any], tuple[int, ...]]:
    """``(keyword arguments of the class, input shape)``: what ``create_model(arch, ...)`` passes to the class."""
    a = _bound(arch, num_classes, inputs, kwargs)
    if arch == "mlp":
        shape = inputs.shape if inputs.shape is not None else (1, 28, 28)
        return {"in_features": math.prod(shape), "num_classes": num_classes, "hidden": int(a["hidden"]),
                "depth": int(a["depth"])}, tuple(shape)
    if arch == "small-cnn":
        c = int(a["in_channels"])
        side = tuple(inputs.shape[-2:]) if inputs.shape is not None else (28, 28)
        return {"in_channels": c, "num_classes": num_classes, "width": int(a["width"])}, (c, *side)
    c = inputs.channels(a["in_channels"], 1)
    size = inputs.shape[-1] if inputs.shape is not None else 28
    args: dict[str, Any] = {"in_channels": c, "num_classes": num_classes}
    if arch == "conv-fc":
        args.update(width=int(a["width"]), hidden=int(a["hidden"]))
    else:
        args.update(widths=tuple(int(w) for w in a["widths"]), hidden=int(a["hidden"]))
    return args | {"image_size": int(size)}, (c, size, size)


def local_spec(arch: str, num_classes: int, dataset: str | None, input_shape: Any = None,
               **kwargs: Any) -> dict[str, Any]:
    """How to rebuild ``create_model(arch, num_classes, **model_inputs(dataset, input_shape), **kwargs)`` from the
    bundle's own file: ``import_line`` and ``constructor`` (Python source, as RobustBench's model-zoo entries),
    ``module`` and ``source`` (the file), ``input_shape``; the weights keep art-adr's keys (``net.*``, ``mean``,
    ``std``)."""
    if arch not in ARCHITECTURES.names(local=True):
        raise ValueError(f"{arch!r} is not one of art-adr's own architectures "
                         f"{sorted(ARCHITECTURES.names(local=True))}")
    found = model_inputs(dataset, input_shape)
    inputs = ModelInputs(found.get("input_shape"), found.get("mean"), found.get("std"))
    args, shape = _constructor_args(arch, num_classes, inputs, kwargs)
    mean, std = inputs.stats(shape[0])
    cls, module = LOCAL_CLASSES[arch].__name__, architecture_module(arch)
    call = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return {"import_line": f"from {ARCH_PACKAGE}.{module} import {cls}, Normalized",
            "constructor": f"Normalized({cls}({call}), mean={tuple(mean)!r}, std={tuple(std)!r})",
            "module": module, "source": architecture_source(arch), "input_shape": shape, "local": True}

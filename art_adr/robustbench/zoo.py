"""Our models as RobustBench model-zoo entries: the Python source (imports and constructor) that rebuilds a
:func:`art_adr.models.create_model` network from RobustBench's own classes, and its weights under their keys."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..architectures import ARCHITECTURES
from ..data import model_inputs
from ..models import ModelInputs, activation_class
from .adapter import import_robustbench
from .bundle import FORBIDDEN_KEY_PARTS, ExportError

__all__ = ["robustbench_spec", "robustbench_state_dict", "zoo_constructor", "build_zoo_model", "export_state_dict",
           "model_zoo_entry", "zoo_item"]


def _cifar_sized_stats(arch: str, dataset: str | None, in_channels: int | None) -> tuple[tuple[float, ...], ...]:
    """``(mean, std)`` of ``dataset`` (identity when unregistered), which must be 3×32×32 (``ValueError``)."""
    found = model_inputs(dataset)
    inputs = ModelInputs(found.get("input_shape", (3, 32, 32)), found.get("mean"), found.get("std"))
    if inputs.shape != (3, 32, 32) or inputs.channels(in_channels, 3) != 3:
        raise ValueError(f"RobustBench's {arch} forward is fixed to 3×32×32 inputs; {dataset!r} is {inputs.shape}")
    return inputs.stats(3)


def robustbench_spec(arch: str, num_classes: int, dataset: str | None, **kwargs: Any) -> dict[str, Any]:
    """How to rebuild ``create_model(arch, num_classes, **model_inputs(dataset), **kwargs)`` from RobustBench's own
    classes.

    Keys: ``import_line`` and ``constructor`` (Python source: ``eval(constructor)`` after
    ``exec(import_line)`` builds a module taking ``[0, 1]`` inputs); ``prefix`` and ``normalizer`` (how
    our ``Normalized`` keys map, see :func:`robustbench_state_dict`); ``mean``, ``std``, ``input_shape``.

    ReLU ResNet/WRN become ``normalize_model(net, mean, std)`` from RobustBench's
    ``utils_architectures`` (keys ``normalize.mean``, ``normalize.std``, ``model.*``). DM nets (``dm-wrn-*``,
    ``preact-resnet18``, SiLU WRNs) take
    mean/std as constructor arguments (non-persistent buffers, as RobustBench's ``Rebuffi2021Fixing_*``
    entries), with ``nn.SiLU`` for RobustBench's ``Swish`` (same function; ``Swish.backward`` uses
    ``ctx.saved_variables``, gone from torch 2). Only 3×32×32 inputs are exact: RobustBench's forwards
    hard-code ``avg_pool2d(4)`` / ``avg_pool2d(8)``.
    """
    if arch not in ARCHITECTURES or arch in ARCHITECTURES.names(local=True):
        exportable = sorted(ARCHITECTURES.names(local=False))
        raise ValueError(f"{arch!r} has no RobustBench class; exportable: {exportable}")
    mean, std = _cifar_sized_stats(arch, dataset, kwargs.get("in_channels"))
    mean, std = _fmt(mean, 3), _fmt(std, 3)
    act = kwargs.get("activation", "relu")
    arch_mod = "robustbench.model_zoo.architectures"
    norm_import = f"from {arch_mod}.utils_architectures import normalize_model"
    spec: dict[str, Any] = {"mean": mean, "std": std, "input_shape": (3, 32, 32)}
    if arch == "resnet18":
        return spec | {
            "import_line": f"from {arch_mod}.resnet import BasicBlock, ResNet\n{norm_import}",
            "constructor": f"normalize_model(ResNet(BasicBlock, [2, 2, 2, 2], num_classes={num_classes}), "
            f"{mean}, {std})",
            "prefix": "model.", "normalizer": "normalize.",
        }
    dm_import = f"import torch.nn as nn\nfrom {arch_mod}.dm_wide_resnet import "
    act_src = f"nn.{activation_class(act).__name__}"
    if arch == "preact-resnet18":
        return spec | {
            "import_line": dm_import + "DMPreActResNet",
            "constructor": f"DMPreActResNet(num_classes={num_classes}, depth=18, width=0, "
            f"activation_fn={act_src}, mean={mean}, std={std})",
            "prefix": "", "normalizer": None,
        }
    depth = int(kwargs.get("depth", 34 if arch.endswith("wrn-34-10") else 28))
    width = int(kwargs.get("widen_factor", 10))
    if activation_class(act) is nn.ReLU and not arch.startswith("dm-"):
        return spec | {
            "import_line": f"from {arch_mod}.wide_resnet import WideResNet\n{norm_import}",
            "constructor": f"normalize_model(WideResNet(depth={depth}, num_classes={num_classes}, "
            f"widen_factor={width}), {mean}, {std})",
            "prefix": "model.", "normalizer": "normalize.",
        }
    return spec | {
        "import_line": dm_import + "DMWideResNet",
        "constructor": f"DMWideResNet(num_classes={num_classes}, depth={depth}, width={width}, "
        f"activation_fn={act_src}, mean={mean}, std={std})",
        "prefix": "", "normalizer": None,
    }


def _fmt(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    """Expand a one-value statistic to ``channels`` values (RobustBench wants one per channel)."""
    return tuple(float(v) for v in (values * channels if len(values) == 1 else values))


def robustbench_state_dict(
    state_dict: dict[str, torch.Tensor], spec: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Rename a ``Normalized`` state dict (``net.*``, ``mean``, ``std``) to ``spec["constructor"]``'s keys.

    DM constructors carry mean/std themselves: the stored ones must then equal ``spec["mean"/"std"]``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("net."):
            out[spec["prefix"] + key[4:]] = value
        elif key in ("mean", "std"):
            if spec["normalizer"] is not None:
                out[spec["normalizer"] + key] = value.reshape(1, -1, 1, 1).expand(1, 3, 1, 1).clone()
            elif not torch.allclose(value.flatten().expand(3).float(), torch.tensor(spec[key])):
                stored = value.flatten().tolist()
                raise ValueError(f"stored {key} {stored} differs from the spec's {spec[key]}")
        else:
            raise KeyError(f"unexpected key {key!r}: expected a Normalized state dict (net.*, mean, std)")
    return out


def zoo_constructor(spec: dict[str, Any]) -> dict[str, Any]:
    """RobustBench constructor whose keys avoid ``model.``/``module.`` (which ``load_model`` strips).

    ``normalize_model(net, mean, std)`` names the net ``model``; it is rebuilt as
    ``nn.Sequential(OrderedDict([("normalize", ImageNormalizer(mean, std)), ("net", net)]))``.
    """
    ctor, prefix, normalizer = spec["constructor"], spec["prefix"], spec["normalizer"]
    suffix = f", {spec['mean']}, {spec['std']})"
    if ctor.startswith("normalize_model(") and ctor.endswith(suffix):
        inner = ctor[len("normalize_model("):-len(suffix)]
        ctor = (f'nn.Sequential(OrderedDict([("normalize", ImageNormalizer({spec["mean"]}, {spec["std"]})), '
                f'("net", {inner})]))')
        imports = [line.replace("import normalize_model", "import ImageNormalizer")
                   for line in spec["import_line"].splitlines()]
        imports = ["from collections import OrderedDict", "import torch.nn as nn"] + imports
        return {**spec, "import_line": "\n".join(dict.fromkeys(imports)), "constructor": ctor,
                "prefix": "net.", "normalizer": "normalize."}
    return {**spec, "constructor": ctor, "prefix": prefix, "normalizer": normalizer}


def build_zoo_model(import_line: str, constructor: str) -> nn.Module:
    """Evaluate a model-zoo constructor (after its imports) in a fresh namespace."""
    import_robustbench()
    ns: dict[str, Any] = {}
    exec(import_line, ns)  # noqa: S102 - our own generated source
    return eval(constructor, ns)  # noqa: S307


def export_state_dict(state: dict[str, torch.Tensor], spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    sd = robustbench_state_dict(state, spec)
    out = {k: v.detach().to("cpu").clone().contiguous() for k, v in sd.items()}
    bad = [k for k in out if any(p in k for p in FORBIDDEN_KEY_PARTS)]
    if bad:
        raise ExportError(f"state-dict keys {bad[:3]} contain 'model.'/'module.', which RobustBench strips")
    return out


def model_zoo_entry(name: str, dataset: str, import_line: str, constructor: str, leaderboard: bool = True) -> str:
    """Text to paste into ``robustbench/model_zoo/<dataset>.py`` (imports + the ``linf`` OrderedDict item); for a
    dataset RobustBench has no zoo for (``leaderboard`` false), the same entry, said to be in its format only."""
    where = (f"robustbench/model_zoo/{dataset}.py" if leaderboard else
             f"a model-zoo file for {dataset} (RobustBench has none; this entry is in its format)")
    return (
        f"# 1) add to the imports of {where}:\n{import_line}\n\n"
        f"# 2) add to its `linf = OrderedDict([...])` (ThreatModel.Linf) list:\n"
        f"('{name}', {{\n    'model': lambda: {constructor},\n    'gdrive_id': '<GDRIVE_ID>',\n}}),\n"
    )


def zoo_item(entry_text: str) -> str:
    return entry_text.split(" list:\n", 1)[1].strip().rstrip(",")

"""Self-contained Python for a bundle: code that needs only torch, copied into every export whose architecture
RobustBench lacks, so that a user without art-adr rebuilds the model.

- :class:`Normalized` is :class:`art_adr.models.Normalized` without art-adr's helpers (same buffers, same forward:
  the logits are bit-identical); its source goes into the bundle's ``model_zoo/architectures/art_adr_<arch>.py``
  together with the architecture's class (:func:`architecture_source`).
- :func:`load_model` is RobustBench's ``robustbench.utils.load_model`` for a bundle (the model-zoo entry, then the
  weights under ``models/<dataset>/<threat model>/<name>.pt``, strictly); this module's source is the bundle's
  ``load_bundle.py``.

Nothing here imports art-adr: keep it so (a test loads a bundle with art-adr blocked).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["Normalized", "load_model", "ARCH_PACKAGE"]

ARCH_PACKAGE = "robustbench.model_zoo.architectures"  # where the architecture file goes in RobustBench's tree
_FROM_ARCH = re.compile(r"^from robustbench\.model_zoo\.architectures\.(\w+) import (.+)$")


class Normalized(nn.Module):
    """``net((x − mean) / std)`` on ``[0, 1]`` images: per-channel ``[1, C, 1, 1]`` float32 buffers ``mean`` and
    ``std`` (scalars for one channel), saved with the weights (state-dict keys ``net.*``, ``mean``, ``std``)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: nn.Module, mean: Any, std: Any) -> None:
        super().__init__()
        self.net = net
        for name, value in (("mean", mean), ("std", std)):
            t = torch.as_tensor(value, dtype=torch.float32).flatten()
            self.register_buffer(name, t.view(1, -1, 1, 1) if t.numel() > 1 else t.reshape(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def _architecture_module(root: Path, module: str) -> Any:
    """``model_zoo/architectures/<module>.py`` of the bundle, imported under RobustBench's module name (read from
    the file at every call: the bundle's own file, never one imported before)."""
    full = f"{ARCH_PACKAGE}.{module}"
    path = root / "model_zoo" / "architectures" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(full, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"architecture file {path} is missing from the bundle")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[full] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(full, None)
        raise
    return mod


def zoo_namespace(root: Path, entry: str) -> dict[str, Any]:
    """The names the model-zoo entry ``entry`` imports (its part before ``# 2)``); a
    ``robustbench.model_zoo.architectures.<module>`` import comes from the bundle's own file where it has one
    (art-adr's classes), else from RobustBench (its classes)."""
    ns: dict[str, Any] = {}
    for line in entry.split("# 2)", 1)[0].splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        found = _FROM_ARCH.match(line)
        if found and (root / "model_zoo" / "architectures" / f"{found[1]}.py").is_file():
            mod = _architecture_module(root, found[1])
            ns.update({n.strip(): getattr(mod, n.strip()) for n in found[2].split(",")})
        else:
            exec(line, ns)  # noqa: S102 - an import line of the bundle's entry
    return ns


def load_model(model_name: str, model_dir: str | Path | None = None, dataset: str = "cifar10",
               threat_model: str = "Linf", bundle_dir: str | Path | None = None) -> nn.Module:
    """A model of this bundle, as RobustBench's ``load_model`` loads a zoo model: the entry's constructor, then
    ``models/<dataset>/<threat_model>/<model_name>.pt`` (``{"state_dict"}``, ``weights_only``) loaded strictly;
    in eval mode on the CPU. ``bundle_dir``: the bundle (default: the folder of this file, ``load_bundle.py``);
    ``model_dir``: its ``models`` folder."""
    root = Path(bundle_dir if bundle_dir is not None else Path(__file__).resolve().parent)
    entry = (root / "model_zoo" / dataset / threat_model / f"{model_name}.py").read_text()
    ns = zoo_namespace(root, entry)
    item = entry.split(" list:\n", 1)[1].strip().rstrip(",")
    name, value = eval(item, ns)  # noqa: S307 - the bundle's own entry
    if name != model_name:
        raise ValueError(f"the model-zoo entry is for {name!r}, not {model_name!r}")
    model = value["model"]()
    folder = Path(model_dir) if model_dir is not None else root / "models"
    ckpt = torch.load(folder / dataset / threat_model / f"{model_name}.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.eval()

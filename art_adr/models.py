"""Architectures taking ``[0, 1]`` images, with the dataset's normalisation inside the model.

ResNet-18, PreAct ResNet-18 and WideResNets are RobustBench's own classes (robustbench==1.1.1,
``model_zoo/architectures``), so their parameters carry RobustBench's key names under ``Normalized.net``.
``dm-wrn-34-10`` (the paper recipes' WRN) is RobustBench's ``DMWideResNet``, the network of the ADR authors'
``src/model/wideresnet.py``; ``wrn-34-10`` is RobustBench's TRADES ``WideResNet``, a different network. The Python
source that rebuilds these networks from RobustBench's classes, for an export, is :mod:`art_adr.robustbench.zoo`.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .architectures import ARCHITECTURES

__all__ = [
    "Normalized",
    "channel_tensor",
    "SmallCNN",
    "ConvFC",
    "ConvBN",
    "MLP",
    "activation_class",
    "count_flops",
    "create_model",
    "ModelInputs",
]


class Normalized(nn.Module):
    """``net((x − mean) / std)``: per-channel statistics applied on the device (the one normalising wrapper).

    A model's own dataset statistics (every :func:`create_model` architecture; RobustBench's ``ImageNormalizer``
    does the same) are saved with it (``persistent``: state-dict keys ``net.*``, ``mean``, ``std``); an ART
    classifier's standardisation is not (:class:`art_adr.estimator.Normalize`). ``mean``/``std``: numbers,
    arrays or tensors, kept as ``[1, C, 1, 1]`` float32 buffers, or scalars when one value is given (so they
    broadcast over inputs of any rank).
    """

    def __init__(self, net: nn.Module, mean: Any, std: Any, persistent: bool = True) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", channel_tensor(mean), persistent=persistent)
        self.register_buffer("std", channel_tensor(std), persistent=persistent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # one-channel models saved by art-adr 0.1.0 (before the wrappers merged) store mean/std as [1, 1, 1, 1]
        for name in ("mean", "std"):
            value, mine = state_dict.get(prefix + name), getattr(self, name)
            if isinstance(value, torch.Tensor) and value.shape != mine.shape and value.numel() == mine.numel():
                state_dict[prefix + name] = value.reshape(mine.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def channel_tensor(v: Any) -> torch.Tensor:
    """Per-channel ``[1, C, 1, 1]`` (or scalar) float32 tensor on the CPU from numbers, arrays or tensors.

    Tensors (e.g. another ``Normalized``'s buffers, already moved to CUDA) are copied with ``.detach().cpu()``:
    ``np.asarray`` refuses device tensors.
    """
    if isinstance(v, torch.Tensor):
        t = v.detach().to(device="cpu", dtype=torch.float32).as_subclass(torch.Tensor).clone()
    else:
        t = torch.as_tensor(np.asarray(v, dtype=np.float32))
    t = t.flatten()
    return t.view(1, -1, 1, 1) if t.numel() > 1 else t.reshape(())


class SmallCNN(nn.Module):
    """A small conv net (two conv-BN-ReLU blocks, global pooling, linear head) for 28×28 images and tests."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class ConvFC(nn.Module):
    """Two 5×5 conv + max-pool layers and a fully-connected hidden layer, no BatchNorm (the style of Madry et
    al. 2018's MNIST model, narrower). Its dense layer gives the memorisation capacity that robust overfitting
    needs (Rice et al. 2020): the globally pooled :class:`SmallCNN` underfits small Fashion-MNIST subsets."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, hidden: int = 256,
                 image_size: int = 28) -> None:
        super().__init__()
        if width < 1 or hidden < 1 or image_size % 4:
            raise ValueError(f"conv-fc needs width, hidden >= 1 and image_size divisible by 4, got "
                             f"width={width}, hidden={hidden}, image_size={image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        side = image_size // 4
        self.fc = nn.Sequential(nn.Linear(2 * width * side * side, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class ConvBN(nn.Module):
    """Strided 3×3 conv–BN–ReLU blocks, then a dense hidden layer with BatchNorm and a linear head: the small
    BatchNorm network of the third Fashion-MNIST robust-overfitting regime (``fashion-mnist-ro3-*``). Every
    network of the ADR paper has BatchNorm; this one is cheap enough for AutoAttack on a CPU (one block halves
    the side, so ``widths=(16, 32)`` on 28×28 is two blocks to 7×7, then ``32·7·7 → hidden → classes``)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (16, 32),
                 hidden: int = 256, image_size: int = 28) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1 or hidden < 1 or image_size < 1:
            raise ValueError(f"conv-bn needs widths >= 1 (at least one), hidden >= 1 and image_size >= 1, got "
                             f"widths={widths}, hidden={hidden}, image_size={image_size}")
        layers: list[nn.Module] = []
        channels, side = in_channels, image_size
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels, side = width, (side + 1) // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(channels * side * side, hidden, bias=False), nn.BatchNorm1d(hidden),
                                nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class MLP(nn.Module):
    """A fully-connected net with two ReLU hidden layers on the flattened image (the overfitting-prone model of
    the robust-overfitting literature's small-data studies; cheap enough for AutoAttack on a CPU)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        if hidden < 1 or depth < 1:
            raise ValueError(f"mlp needs hidden >= 1 and depth >= 1, got hidden={hidden}, depth={depth}")
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(depth):
            layers += [nn.Linear(in_features if i == 0 else hidden, hidden), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


@dataclass(frozen=True)
class ModelInputs:
    """What a network needs to know of its inputs, given by the caller (the run layer reads it off the data and
    the dataset registry): ``shape`` ``(C, H, W)`` (``None``: the architecture's default), per-channel ``mean`` and
    ``std`` of the normalisation inside the model (``None``: identity; one value broadcasts)."""

    shape: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def channels(self, in_channels: int | None, default: int) -> int:
        """Explicit ``in_channels``, else the input shape's channel count, else ``default``."""
        if in_channels is not None:
            return int(in_channels)
        return int(self.shape[0]) if self.shape is not None else default

    def stats(self, in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` for ``in_channels`` channels (identity when not given)."""
        if self.mean is None or self.std is None:
            return (0.0,) * in_channels, (1.0,) * in_channels
        if len(self.mean) not in (1, in_channels):
            raise ValueError(f"the input statistics have {len(self.mean)} channels, model has {in_channels}")
        return tuple(self.mean), tuple(self.std)


# the builders ``(num_classes, inputs: ModelInputs, **arch_kwargs) -> nn.Module`` of the architectures registry
# (art_adr.architectures: one lazy line each, so --help lists them without torch)


def small_cnn(num_classes: int, inputs: ModelInputs, in_channels: int = 1, width: int = 32) -> nn.Module:
    """``small-cnn``: :class:`SmallCNN`, normalised."""
    return Normalized(SmallCNN(in_channels, num_classes, width), *inputs.stats(in_channels))


def conv_fc(num_classes: int, inputs: ModelInputs, in_channels: int | None = None, width: int = 16,
             hidden: int = 256) -> nn.Module:
    """``conv-fc``: :class:`ConvFC` for ``size``×``size`` inputs, normalised."""
    c = inputs.channels(in_channels, 1)
    size = inputs.shape[-1] if inputs.shape is not None else 28
    return Normalized(ConvFC(c, num_classes, width, hidden, size), *inputs.stats(c))


def conv_bn(num_classes: int, inputs: ModelInputs, in_channels: int | None = None,
             widths: tuple[int, ...] | list[int] = (16, 32), hidden: int = 256) -> nn.Module:
    """``conv-bn``: :class:`ConvBN` (the BatchNorm regime's network), normalised."""
    c = inputs.channels(in_channels, 1)
    size = inputs.shape[-1] if inputs.shape is not None else 28
    return Normalized(ConvBN(c, num_classes, tuple(widths), hidden, size), *inputs.stats(c))


def mlp(num_classes: int, inputs: ModelInputs, hidden: int = 256, depth: int = 2) -> nn.Module:
    """``mlp``: :class:`MLP` on the flattened image, normalised."""
    shape = inputs.shape if inputs.shape is not None else (1, 28, 28)
    return Normalized(MLP(math.prod(shape), num_classes, hidden, depth), *inputs.stats(shape[0]))


# ---------------------------------------------------------------- RobustBench's own architecture classes


def _rb_module(name: str) -> ModuleType:
    """``robustbench.model_zoo.architectures.<name>`` loaded from its file, without running
    ``robustbench/__init__.py`` (it imports pandas, AutoAttack, ...; fails when ``autoattack`` is absent)."""
    full = f"robustbench.model_zoo.architectures.{name}"
    if full in sys.modules:
        return sys.modules[full]
    private = f"art_adr._robustbench_arch.{name}"
    if private in sys.modules:
        return sys.modules[private]
    spec = importlib.util.find_spec("robustbench")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"this architecture uses RobustBench's classes ({full}); install them with "
            "`pip install robustbench==1.1.1 'setuptools<81'` (art-adr's own requirements)"
        )
    path = Path(spec.submodule_search_locations[0]) / "model_zoo" / "architectures" / f"{name}.py"
    mod_spec = importlib.util.spec_from_file_location(private, path)
    if mod_spec is None or mod_spec.loader is None or not path.exists():
        raise ImportError(f"RobustBench architecture file {path} not found")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[private] = module
    mod_spec.loader.exec_module(module)
    return module


def _pool_logits(out: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """Global average pooling + linear head (RobustBench's fixed ``avg_pool2d(k)`` made size-agnostic)."""
    return head(F.avg_pool2d(out, tuple(out.shape[-2:])).flatten(1))  # = RobustBench's avg_pool2d(4) at 32×32


def _he_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 3×3 stem conv for non-RGB inputs, initialised like the TRADES WideResNet (He normal, fan-out)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (9 * out_channels)))
    return conv


@functools.cache
def _rb_classes() -> SimpleNamespace:
    """Thin subclasses of RobustBench's classes: same parameters and state-dict keys; the forward uses
    adaptive pooling (identical at 32×32, also valid at 64×64) and skips DM's internal normalisation."""
    resnet, wrn, dm = _rb_module("resnet"), _rb_module("wide_resnet"), _rb_module("dm_wide_resnet")

    class ResNet(resnet.ResNet):
        """RobustBench ``resnet.ResNet`` (Madry-lab ResNet for 32×32) with adaptive pooling."""

        def __init__(self, num_blocks: list[int], num_classes: int, in_channels: int = 3) -> None:
            super().__init__(resnet.BasicBlock, num_blocks, num_classes=num_classes)
            if in_channels != 3:
                self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
            return _pool_logits(out, self.linear)

    class WideResNet(wrn.WideResNet):
        """RobustBench ``wide_resnet.WideResNet`` (TRADES code) with adaptive pooling."""

        def __init__(self, depth: int, widen_factor: int, num_classes: int, in_channels: int = 3) -> None:
            super().__init__(depth=depth, num_classes=num_classes, widen_factor=widen_factor)
            if in_channels != 3:
                self.conv1 = _he_conv(in_channels, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.block3(self.block2(self.block1(self.conv1(x))))
            return _pool_logits(self.relu(self.bn1(out)), self.fc)

    class DMPreActResNet(dm.DMPreActResNet):
        """RobustBench ``dm_wide_resnet.DMPreActResNet`` (Gowal et al. 2020); inputs already normalised."""

        def __init__(self, num_classes: int, activation_fn: type[nn.Module], in_channels: int = 3) -> None:
            c = in_channels
            super().__init__(num_classes=num_classes, depth=18, width=0, activation_fn=activation_fn,
                             mean=(0.0,) * c, std=(1.0,) * c, num_input_channels=c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.conv_2d(x)
            out = self.layer_3(self.layer_2(self.layer_1(self.layer_0(out))))
            return _pool_logits(self.relu(self.batchnorm(out)), self.logits)

    class DMWideResNet(dm.DMWideResNet):
        """RobustBench ``dm_wide_resnet.DMWideResNet`` (Gowal et al. 2020); inputs already normalised."""

        def __init__(self, depth: int, width: int, num_classes: int, activation_fn: type[nn.Module],
                     in_channels: int = 3) -> None:
            c = in_channels
            super().__init__(num_classes=num_classes, depth=depth, width=width, activation_fn=activation_fn,
                             mean=(0.0,) * c, std=(1.0,) * c, num_input_channels=c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.layer(self.init_conv(x))
            return _pool_logits(self.relu(self.batchnorm(out)), self.logits)

    return SimpleNamespace(ResNet=ResNet, WideResNet=WideResNet, DMPreActResNet=DMPreActResNet,
                           DMWideResNet=DMWideResNet)


_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "swish": nn.SiLU}


def activation_class(name: str) -> type[nn.Module]:
    """The ``nn.Module`` class of an activation name (``relu``, ``silu``; ``swish`` is SiLU)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


def resnet18(num_classes: int, inputs: ModelInputs, in_channels: int | None = None) -> nn.Module:
    """ResNet-18 (He et al. 2016, CIFAR variant) from RobustBench's ``resnet.ResNet``."""
    c = inputs.channels(in_channels, 3)
    net = _rb_classes().ResNet([2, 2, 2, 2], num_classes, in_channels=c)
    return Normalized(net, *inputs.stats(c))


def preact_resnet18(
    num_classes: int, inputs: ModelInputs, activation: str = "relu", in_channels: int | None = None
) -> nn.Module:
    """PreAct ResNet-18 (He et al. 2016b; DeepMind variant of Gowal et al. 2020/Rebuffi et al. 2021)."""
    c = inputs.channels(in_channels, 3)
    net = _rb_classes().DMPreActResNet(num_classes, activation_class(activation), in_channels=c)
    return Normalized(net, *inputs.stats(c))


def _wide_resnet(default_depth: int, default_width: int, deepmind: bool = False) -> Callable[..., nn.Module]:
    """Builder for WRN-``depth``-``widen_factor`` (Zagoruyko & Komodakis 2016).

    ``deepmind=False`` (``wrn-*``): ReLU is RobustBench's TRADES ``wide_resnet.WideResNet`` (symmetric padding,
    He-normal init, zero fc bias), SiLU its ``dm_wide_resnet.DMWideResNet``. ``deepmind=True`` (``dm-wrn-*``):
    ``DMWideResNet`` for every activation (Gowal et al. 2020: "SAME" padding, asymmetric ``(0, 1, 0, 1)`` on the
    stride-2 convolutions, PyTorch's default initialisation) — the ADR authors' ``src/model/wideresnet.py``,
    whose global pooling (``AvgPool2d(8)`` at 32×32, adaptive at 64×64) ours is at every size."""

    def build(num_classes: int, inputs: ModelInputs, depth: int = default_depth,
              widen_factor: int = default_width, activation: str = "relu",
              in_channels: int | None = None) -> nn.Module:
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        c, act = inputs.channels(in_channels, 3), activation_class(activation)
        classes = _rb_classes()
        if act is nn.ReLU and not deepmind:
            net = classes.WideResNet(depth, widen_factor, num_classes, in_channels=c)
        else:
            net = classes.DMWideResNet(depth, widen_factor, num_classes, act, in_channels=c)
        return Normalized(net, *inputs.stats(c))

    return build


# the WideResNets of the registry (``wrn-*``: RobustBench's TRADES WRN; ``dm-wrn-*``: its DMWideResNet)
wrn_28_10 = _wide_resnet(28, 10)
wrn_34_10 = _wide_resnet(34, 10)
dm_wrn_28_10 = _wide_resnet(28, 10, deepmind=True)
dm_wrn_34_10 = _wide_resnet(34, 10, deepmind=True)


def create_model(arch: str, num_classes: int, *, input_shape: Sequence[int] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, **kwargs: Any) -> nn.Module:
    """Build architecture ``arch`` for ``num_classes`` classes taking ``input_shape`` ``(C, H, W)`` images (the
    architecture's default when ``None``), normalised inside by ``mean``/``std`` (identity when ``None``); the
    shapes and statistics come from the caller, never from the dataset registry."""
    build = ARCHITECTURES.get(arch)  # ValueError naming the registered architectures
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    from .checks import call_with_options

    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    inputs = ModelInputs(None if input_shape is None else tuple(int(s) for s in input_shape),
                         None if mean is None else tuple(float(m) for m in mean),
                         None if std is None else tuple(float(s) for s in std))
    return call_with_options(build, f"architecture {arch!r}", (num_classes, inputs), kwargs)


# ---------------------------------------------------------------- cost


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of ``Conv2d`` and ``Linear`` layers (one multiply-add = 2 FLOPs) for one input of
    ``input_shape`` ``(C, H, W)`` (or a whole batch ``(N, C, H, W)``), counted with forward hooks on a zero
    input in eval mode (training flags restored). Bias additions, normalisation, activations and pooling are
    not counted (< 1 % for these conv nets); the convention of fvcore / ptflops MACs × 2.
    """
    from .modes import module_mode

    total = 0

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            macs_per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            macs_per_output = module.in_features
        total += 2 * output.numel() * macs_per_output

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    shape = tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)
    param = next(model.parameters(), None)
    x = torch.zeros(shape, device=param.device if param is not None else "cpu")
    try:
        with torch.no_grad(), module_mode(model, train=False):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return int(total)

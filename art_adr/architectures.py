"""The architectures registry: one lazy line per architecture, so the command line lists them (``--arch``'s help)
without importing torch; each builder ``(num_classes, inputs: ModelInputs, **arch_kwargs) -> nn.Module`` lives in
:mod:`art_adr.models` and is imported when first asked for (:func:`art_adr.models.create_model`).

``local=True``: ours, exported to RobustBench with its own class file (:mod:`art_adr.robustbench.local`);
``local=False``: built from RobustBench's classes, exported as a zoo entry. No torch import here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .registry import Registry

__all__ = ["ARCHITECTURES"]

ARCHITECTURES: Registry[Callable[..., Any]] = Registry("architecture")

ARCHITECTURES.register_lazy("small-cnn", "art_adr.models:small_cnn", local=True,
                            help="two conv-BN blocks, global pooling")
ARCHITECTURES.register_lazy("conv-fc", "art_adr.models:conv_fc", local=True,
                            help="two 5×5 convs and a dense layer, no BatchNorm")
ARCHITECTURES.register_lazy("conv-bn", "art_adr.models:conv_bn", local=True,
                            help="strided conv-BN blocks and a BatchNorm dense layer")
ARCHITECTURES.register_lazy("mlp", "art_adr.models:mlp", local=True, help="two ReLU hidden layers")
ARCHITECTURES.register_lazy("resnet18", "art_adr.models:resnet18", local=False, help="ResNet-18")
ARCHITECTURES.register_lazy("preact-resnet18", "art_adr.models:preact_resnet18", local=False,
                            help="PreAct ResNet-18")
ARCHITECTURES.register_lazy("wrn-28-10", "art_adr.models:wrn_28_10", local=False, help="WideResNet-28-10, TRADES")
ARCHITECTURES.register_lazy("wrn-34-10", "art_adr.models:wrn_34_10", local=False, help="WideResNet-34-10, TRADES")
ARCHITECTURES.register_lazy("dm-wrn-28-10", "art_adr.models:dm_wrn_28_10", local=False,
                            help="WideResNet-28-10, DeepMind")
ARCHITECTURES.register_lazy("dm-wrn-34-10", "art_adr.models:dm_wrn_34_10", local=False,
                            help="WideResNet-34-10, DeepMind: the paper recipes' (the ADR authors' network)")

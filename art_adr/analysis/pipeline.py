"""The analyses of ``art-adr analyze`` run together on several models with the same examples, direction seeds and
r₂, so their numbers compare."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..attacks import AttackSpec, example_attack_names, get_attack
from ..modes import module_mode
from .landscapes import input_landscape, surface_gradient, weight_landscape
from .metrics import output_analysis

__all__ = ["ANALYSES", "analyze_models", "analysis_settings", "attack_examples"]

ANALYSES = ("outputs", "weights", "inputs")


def analysis_settings(spec: AttackSpec, n_examples: int, *, x_ood: Tensor | None, n_bins: int,
                      magnitudes: Sequence[float], directions: int, weight_examples: int, input_examples: int,
                      grid: int, radius: float | None, seed: int, output_attack: str = "pgd") -> dict[str, Any]:
    """The ``settings`` of a result: the attack, the examples and every knob of the analyses (``radius``: the input
    plane's, default 2ε; ``output_attack``: what the output analyses' adversarial examples come from)."""
    return {"eps": spec.eps, "eps_step": spec.step_size, "max_iter": spec.steps, "norm": spec.threat_model,
            "attack": spec.describe(),
            "output_attack": get_attack(output_attack).describe(spec),
            "n_examples": n_examples, "n_ood": 0 if x_ood is None else len(x_ood), "n_bins": n_bins,
            "magnitudes": [float(m) for m in magnitudes], "directions": directions,
            "weight_examples": min(weight_examples, n_examples), "input_examples": input_examples,
            "grid": grid, "radius": 2 * spec.eps if radius is None else radius, "seed": seed}


def analyze_models(
    models: Mapping[str, nn.Module],
    x: Tensor,
    y: Tensor,
    *,
    spec: AttackSpec | None = None,
    x_ood: Tensor | None = None,
    n_bins: int = 15,
    magnitudes: Sequence[float] = tuple(np.linspace(-1.0, 1.0, 11)),
    directions: int = 1,
    weight_examples: int = 256,
    input_examples: int = 3,
    grid: int = 21,
    radius: float | None = None,
    analyses: Sequence[str] = ANALYSES,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    output_attack: str = "pgd",
) -> dict[str, Any]:
    """Run the chosen analyses on every model with the same examples, direction seeds and r₂ (comparable).

    ``spec``: the PGD attack of the output and weight-landscape analyses (default ``AttackSpec()``: PGD-10 L∞
    ε = 8/255, α = 2/255; ``art-adr analyze`` passes the run's own, as ``evaluate`` does). ``output_attack``: a
    registered attack that gives its examples (``example_attack_names()``: ``pgd``, ``margin``, ``apgd``) for the
    output analyses (ECE, entropy, JS on adversarial inputs) at the spec's norm, ε and ``k``; the weight
    landscape keeps PGD."""
    spec = spec if spec is not None else AttackSpec()
    if spec.loss != "ce" or spec.restarts != 1:
        raise ValueError(f"the analyses attack with one-start PGD (loss 'ce', restarts 1), got {spec.describe()}")
    if output_attack not in example_attack_names():
        raise ValueError(f"output_attack must be one of {', '.join(example_attack_names())} (the attacks that give "
                         f"their adversarial examples), got {output_attack!r}")
    settings = analysis_settings(spec, len(y), x_ood=x_ood, n_bins=n_bins, magnitudes=magnitudes,
                                 directions=directions, weight_examples=weight_examples,
                                 input_examples=input_examples, grid=grid, radius=radius, seed=seed,
                                 output_attack=output_attack)
    results: dict[str, Any] = {"settings": settings, "models": {name: {} for name in models}}
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    idx = torch.randperm(len(y), generator=gen, device=x.device)
    r2 = (2 * torch.randint(0, 2, x.shape[1:], generator=gen, device=x.device) - 1).to(x.dtype)
    xw, yw = x[idx[:weight_examples]], y[idx[:weight_examples]]
    for name, model in models.items():
        res = results["models"][name]
        if "outputs" in analyses:
            examples = functools.partial(attack_examples, model, attack=output_attack, spec=spec, batch_size=batch_size,
                                         seed=seed, progress=progress, desc=f"{name}: {settings['output_attack']}")
            res["outputs"] = output_analysis(model, x, y, eps=spec.eps, eps_step=spec.step_size,
                                             max_iter=spec.steps, x_ood=x_ood, n_bins=n_bins, batch_size=batch_size,
                                             seed=seed, progress=progress, norm=spec.norm, examples=examples)
        if "weights" in analyses:
            res["weights"] = weight_curves(name, model, xw, yw, spec, magnitudes, directions, batch_size=batch_size,
                                           seed=seed, progress=progress)
        if "inputs" in analyses:
            res["inputs"] = input_landscapes(name, model, x, y, idx, r2, input_examples, grid, settings["radius"],
                                             batch_size=batch_size, progress=progress)
    return results


def attack_examples(model: nn.Module, x: Tensor, y: Tensor, attack: str, spec: AttackSpec, *, batch_size: int = 256,
                    seed: int = 0, progress: bool = False, desc: str = "") -> Tensor:
    """The registered ``attack``'s adversarial examples of ``(x, y)`` at ``spec`` (eval mode, inputs in [0, 1]),
    batch by batch from one generator seeded with ``seed``."""
    chosen, gen = get_attack(attack), torch.Generator(device=x.device)
    gen.manual_seed(seed)
    out = []
    with module_mode(model, False):
        for i in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False):
            out.append(chosen.examples(model, x[i : i + batch_size], y[i : i + batch_size], spec,
                                       clip_values=(0.0, 1.0), generator=gen).detach())
    return torch.cat(out) if out else x.clone()


def weight_curves(name: str, model: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec, magnitudes: Sequence[float],
                  directions: int, *, batch_size: int, seed: int, progress: bool) -> list[dict[str, list[float]]]:
    """:func:`weight_landscape` along ``directions`` random directions, direction ``k`` drawn from a CPU generator
    seeded ``seed·1000 + k``."""
    curves = []
    for k in range(directions):
        dgen = torch.Generator(device="cpu")
        dgen.manual_seed(seed * 1000 + k)
        curves.append(weight_landscape(
            model, x, y, magnitudes, generator=dgen, eps=spec.eps, eps_step=spec.step_size, max_iter=spec.steps,
            batch_size=batch_size, seed=seed, progress=progress, norm=spec.norm,
            desc=f"{name}: weight landscape {k + 1}/{directions}"))
    return curves


def input_landscapes(name: str, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor, r2: Tensor, n: int, grid: int,
                     radius: float, *, batch_size: int, progress: bool) -> list[dict[str, Any]]:
    """:func:`input_landscape` of the first ``n`` examples in the order ``idx``, all on the same ``r2``, each with
    its index, label and slope."""
    lands = []
    for j in tqdm(range(min(n, len(y))), desc=f"{name}: input landscape", disable=not progress, leave=False):
        i = int(idx[j])
        land = input_landscape(model, x[i], y[i], grid, radius=radius, r2=r2, batch_size=batch_size)
        land["index"] = i
        land["label"] = int(y[i])
        land["slope"] = surface_gradient(land["loss"], land["a"], land["b"])
        lands.append(land)
    return lands

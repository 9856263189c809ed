"""Loss landscapes: robust loss along filter-normalised weight directions (§5.5, Fig. 4) and CE loss over an input
plane (App. E, Fig. 7)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..modes import module_mode
from .metrics import robust_loss

__all__ = ["filter_normalized_direction", "perturbed_weights", "weight_landscape", "input_landscape",
           "surface_gradient"]


def filter_normalized_direction(
    model: nn.Module, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Gaussian direction scaled per filter to the filter's norm, biases/BN zero (Li et al. 2018; Fig. 4).

    Every parameter with ≥ 2 dimensions (conv kernels, linear weights) is split into filters along its
    first (output) dimension and each random filter ``d_i`` becomes ``d_i / ‖d_i‖ · ‖w_i‖``.
    """
    direction: dict[str, Tensor] = {}
    for name, p in model.named_parameters():
        if p.dim() <= 1:
            direction[name] = torch.zeros_like(p)
            continue
        gen_device = generator.device if generator is not None else p.device
        d = torch.randn(p.shape, generator=generator, device=gen_device, dtype=torch.float32).to(p.device)
        shape = (-1,) + (1,) * (p.dim() - 1)
        d_norm = d.flatten(1).norm(dim=1).view(shape)
        w_norm = p.detach().float().flatten(1).norm(dim=1).view(shape)
        direction[name] = (d * w_norm / (d_norm + 1e-10)).to(p.dtype)
    return direction


@contextlib.contextmanager
def perturbed_weights(model: nn.Module, direction: Mapping[str, Tensor], alpha: float) -> Iterator[nn.Module]:
    """Temporarily set ``w ← w₀ + α·d`` (names from ``named_parameters``); restores ``w₀`` bit for bit."""
    params = dict(model.named_parameters())
    unknown = set(direction) - set(params)
    if unknown:
        raise ValueError(f"direction has parameters the model lacks: {sorted(unknown)[:3]}")
    saved = {name: params[name].detach().clone() for name in direction}
    try:
        with torch.no_grad():
            for name, d in direction.items():
                params[name].copy_(saved[name] + alpha * d.to(saved[name].device, saved[name].dtype))
        yield model
    finally:
        with torch.no_grad():
            for name, w in saved.items():
                params[name].copy_(w)


def weight_landscape(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    magnitudes: Sequence[float],
    *,
    direction: Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    eps: float = 8 / 255,
    eps_step: float | None = None,
    max_iter: int = 10,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
    desc: str = "weight landscape",
    norm: str = "inf",
) -> dict[str, list[float]]:
    """Robust loss along ``w + α·d`` with PGD-k examples regenerated for each perturbed model (§5.5, Fig. 4).

    Returns ``{"magnitudes", "losses", "accuracies"}``; the loss is one-hot CE on the adversarial
    examples, each attack seeded with ``seed``. The weights are restored exactly afterwards.
    """
    if direction is None:
        direction = filter_normalized_direction(model, generator)
    losses, accs = [], []
    for alpha in tqdm(list(magnitudes), desc=desc, disable=not progress, leave=False):
        with perturbed_weights(model, direction, float(alpha)):
            loss, acc = robust_loss(model, x, y, eps=eps, eps_step=eps_step, max_iter=max_iter,
                                    batch_size=batch_size, seed=seed, norm=norm)
        losses.append(loss)
        accs.append(acc)
    return {"magnitudes": [float(a) for a in magnitudes], "losses": losses, "accuracies": accs}


def _grid_coords(grid: int | Sequence[float], radius: float) -> np.ndarray:
    if isinstance(grid, int):
        if grid < 2:
            raise ValueError(f"grid must have >= 2 points, got {grid}")
        return np.linspace(-radius, radius, grid)
    return np.asarray(list(grid), dtype=np.float64)


def input_landscape(
    model: nn.Module,
    x: Tensor,
    y: Tensor | int,
    grid: int | Sequence[float] = 21,
    *,
    radius: float = 16 / 255,
    generator: torch.Generator | None = None,
    r2: Tensor | None = None,
    clip_values: tuple[float, float] | None = None,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """CE loss over the plane ``x + a·sign(∇ₓ loss) + b·r₂``, ``r₂ ~ Rademacher`` (App. E, Fig. 7).

    ``x`` is one image ``[C, H, W]`` (or ``[1, C, H, W]``); ``grid`` the points per axis (an odd count holds
    the origin) over ``[−radius, radius]`` or explicit coordinates. Returns ``{"a", "b", "loss"}`` with
    ``loss[i, j]`` at ``(a[i], b[j])``. ``r2`` may be given to share it between models.
    """
    x = x.reshape(1, *x.shape[-3:]).detach()
    y_t = torch.as_tensor(y, device=x.device).reshape(1).long()
    coords = _grid_coords(grid, radius)
    with module_mode(model, False):
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            grad = torch.autograd.grad(F.cross_entropy(model(xg).float(), y_t), xg)[0]
        r1 = grad.sign()
        if r2 is None:
            gen_device = generator.device if generator is not None else x.device
            r2 = torch.randint(0, 2, x.shape, generator=generator, device=gen_device).to(x.device, x.dtype)
            r2 = 2 * r2 - 1
        r2 = r2.reshape(x.shape).to(x.device, x.dtype)
        aa, bb = np.meshgrid(coords, coords, indexing="ij")
        a_t = torch.as_tensor(aa.ravel(), dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        b_t = torch.as_tensor(bb.ravel(), dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        losses = []
        with torch.no_grad():
            for i in range(0, len(a_t), batch_size):
                pts = x + a_t[i : i + batch_size] * r1 + b_t[i : i + batch_size] * r2
                if clip_values is not None:
                    pts = pts.clamp(*clip_values)
                logits = model(pts).float()
                losses.append(F.cross_entropy(logits.double(), y_t.expand(len(pts)), reduction="none"))
    loss = torch.cat(losses).view(len(coords), len(coords)).cpu().numpy()
    return {"a": coords, "b": coords.copy(), "loss": loss}


def surface_gradient(loss: np.ndarray, a: np.ndarray, b: np.ndarray, unit: float = 1 / 255) -> np.ndarray:
    """Slope ``‖∇_{(a,b)} z‖`` of the landscape per ``unit`` step (Fig. 7's colour, before clipping)."""
    da, db = np.gradient(np.asarray(loss, dtype=np.float64), np.asarray(a) / unit, np.asarray(b) / unit)
    return np.sqrt(da**2 + db**2)

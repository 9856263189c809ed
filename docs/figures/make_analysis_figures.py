"""Train tiny Fashion-MNIST models (standard, PGD-AT, AT+ADR) on CPU for the README's ``art-adr analyze`` figures.

Usage: ``python docs/figures/make_analysis_figures.py /tmp/adr-demo`` (a few CPU-minutes), then
``art-adr analyze /tmp/adr-demo/standard.pt --vs /tmp/adr-demo/at.pt --vs /tmp/adr-demo/at-adr.pt``.
These are a few hundred steps each: an illustration of the tool, not a reproduction of the paper's numbers.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from art_adr.attacks import pgd
from art_adr.checkpoint import save_checkpoint
from art_adr.data import load_dataset
from art_adr.ema import EMATeacher
from art_adr.functional import cosine_schedule, rectify_labels, soft_cross_entropy
from art_adr.models import create_model

EPS, STEPS, BATCH, ATTACK_STEPS = 0.1, 400, 128, 5
KWARGS = {"width": 16}


def train(method: str, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> tuple[dict, dict | None]:
    """``method`` in standard / at / at-adr; SGD with a cosine learning rate, ε = 0.1, PGD-5 in training."""
    torch.manual_seed(seed)
    model = create_model("small-cnn", 10, dataset="fashion-mnist", **KWARGS)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    teacher = EMATeacher(model, decay=0.99) if method == "at-adr" else None
    gen = torch.Generator().manual_seed(seed)
    for step in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = cosine_schedule(0.05, 0.0, step, STEPS)
        idx = torch.randint(0, len(y), (BATCH,), generator=gen)
        xb, yb = x[idx], y[idx]
        target: torch.Tensor = yb
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher.module(xb)
            tau = cosine_schedule(2.5, 2.0, step, STEPS)
            lam = cosine_schedule(0.7, 0.95, step, STEPS)
            target = rectify_labels(t_logits, yb, tau, lam)
        model.train()
        if method != "standard":
            xb = pgd(model, xb, target, eps=EPS, eps_step=2.5 * EPS / ATTACK_STEPS, max_iter=ATTACK_STEPS,
                     bn_mode="train", generator=gen)
        logits = model(xb)
        loss = soft_cross_entropy(logits, target) if target.dim() == 2 else F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if teacher is not None:
            teacher.update(model)
        if step % 100 == 0:
            print(f"{method} step {step} loss {loss.item():.3f}", flush=True)
    return model.state_dict(), (teacher.module.state_dict() if teacher is not None else None)


def main(out_dir: str) -> None:
    """Train the three models and save art-adr checkpoints under ``out_dir``."""
    torch.set_num_threads(2)
    out = Path(out_dir)
    ds = load_dataset("fashion-mnist", "train")
    sub = np.random.default_rng(0).permutation(len(ds.y))[:20_000]
    x = torch.from_numpy(ds.x[sub]).float() / 255
    y = torch.from_numpy(ds.y[sub])
    for method in ("standard", "at", "at-adr"):
        t0 = time.time()
        student, teacher = train(method, x, y)
        desc = {"arch": "small-cnn", "num_classes": 10, "dataset": "fashion-mnist", "kwargs": KWARGS}
        config = {"method": method, "eps": EPS, "steps": STEPS, "batch_size": BATCH}
        save_checkpoint(out / f"{method}.pt", {"model": desc, "config": config, "student": student,
                                               "teacher": teacher, "epoch": 0, "step": STEPS})
        print(f"{method}: {time.time() - t0:.0f}s -> {out / f'{method}.pt'}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/adr-demo")

"""Equivalence check: the speed/implementation switches must not change results beyond numerical noise.

Trains AT+ADR briefly (small CNN, Fashion-MNIST subset when available, else a learnable synthetic task)
with the reference settings (fp32, ``attack_bn_mode="train"``) and with each switch flipped
(``attack_bn_mode="eval"``, bf16 autocast, fp16 on CUDA), and reports clean and PGD accuracy. The
seed-to-seed spread of the reference run (several seeds) is the noise band each variant is compared with.

Usage::

    python benchmarks/equivalence.py --threads 1 --out benchmarks/results/equivalence-cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from bench_utils import art_classifier, environment, format_table, resolve_device, write_json


def load_task(n_train: int, n_test: int, seed: int = 0,
              data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """``(x_train, y_train, x_test, y_test, name)``: a Fashion-MNIST subset (uint8 NCHW) if it can be loaded
    (from ``data_dir``, else the default places), else class prototypes + noise on 1×28×28 images."""
    try:
        from art_adr.data import load_dataset

        train = load_dataset("fashion-mnist", "train", data_dir)
        test = load_dataset("fashion-mnist", "test", data_dir)
        rng = np.random.default_rng(seed)
        i, j = rng.permutation(len(train))[:n_train], rng.permutation(len(test))[:n_test]
        return train.x[i], train.y[i], test.x[j], test.y[j], f"fashion-mnist ({n_train} train / {n_test} test)"
    except Exception as exc:  # no data set on this machine: fall back to the synthetic task
        print(f"fashion-mnist unavailable ({exc}); using the synthetic task", file=sys.stderr)
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0, 1, (10, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, n_train + n_test)
    x = np.clip(protos[y] + rng.normal(0, 0.25, (len(y), 1, 28, 28)), 0, 1).astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], "synthetic prototypes (10 classes, 1x28x28)"


def train_and_eval(data: tuple, args: argparse.Namespace, device: torch.device, seed: int,
                   **options: Any) -> dict[str, Any]:
    """Train AT+ADR with ``options`` from seed ``seed``; clean/PGD accuracy of student and EMA teacher."""
    from art_adr.data import model_inputs
    from art_adr.models import create_model
    from art_adr.trainer import AdversarialTrainerADR

    x_train, y_train, x_test, y_test, _ = data
    torch.manual_seed(seed)
    model = create_model("small-cnn", 10, **model_inputs("fashion-mnist"), width=args.width)
    clf = art_classifier(model, (1, 28, 28), 10, device, lr=args.lr)
    trainer = AdversarialTrainerADR(clf, eps=args.eps, eps_step=args.eps / 4, max_iter=args.steps,
                                    temperature=(1.5, 1.0), interpolation=(0.7, 0.95), seed=seed,
                                    ema_decay=args.ema_decay,
                                    eval_max_iter=args.eval_steps, verbose=False, **options)
    t0 = time.perf_counter()
    trainer.fit(x_train, y_train, batch_size=args.batch_size, nb_epochs=args.epochs)
    seconds = time.perf_counter() - t0
    metrics = trainer.evaluate(x_test, y_test, adversarial=True)
    return {"seed": seed, "train_seconds": seconds, **metrics}


VARIANTS: dict[str, dict[str, Any]] = {
    "reference (fp32, attack BN train)": {},
    "attack_bn_mode=eval": {"attack_bn_mode": "eval"},
    "amp=bf16": {"amp": "bf16"},
    "amp=fp16": {"amp": "fp16"},
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--steps", type=int, default=5, help="training PGD steps")
    p.add_argument("--eval-steps", type=int, default=10)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--ema-decay", type=float, default=0.98, help="teacher decay (short runs need < 0.995)")
    p.add_argument("--seeds", type=int, default=2, help="reference seeds (noise band)")
    p.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                   help="include fp16 (default: on CUDA only)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX .gz files")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the reference over ``--seeds`` seeds and every variant on seed 0; print a table and the verdicts."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_task(args.n_train, args.n_test, data_dir=args.data_dir)
    use_fp16 = args.fp16 if args.fp16 is not None else device.type == "cuda"
    rows = []
    for name, options in VARIANTS.items():
        if name == "amp=fp16" and not use_fp16:
            continue
        seeds = range(args.seeds) if not options else [0]
        for seed in seeds:
            print(f"{name} seed {seed} ...", file=sys.stderr, flush=True)
            rows.append({"variant": name, **train_and_eval(data, args, device, seed, **options)})
    ref = [r for r in rows if r["variant"].startswith("reference")]
    band = {k: (max(r[k] for r in ref) - min(r[k] for r in ref)) for k in ("clean_acc", "pgd_acc")}
    ref0 = ref[0]
    for r in rows:
        r["d_clean"] = r["clean_acc"] - ref0["clean_acc"]
        r["d_pgd"] = r["pgd_acc"] - ref0["pgd_acc"]
    result = {"benchmark": "equivalence", "environment": environment(device), "task": data[4],
              "settings": vars(args), "rows": rows, "seed_spread": band,
              "reference_mean": {k: statistics.mean(r[k] for r in ref) for k in ("clean_acc", "pgd_acc")}}
    print(f"\ntask: {data[4]}; AT+ADR small-cnn, {args.epochs} epochs, PGD-{args.steps} training, "
          f"PGD-{args.eval_steps} eval, eps {args.eps}")
    print(format_table(rows, [("variant", "variant", ""), ("seed", "seed", "d"), ("clean_acc", "clean", ".3f"),
                              ("pgd_acc", "PGD", ".3f"), ("teacher_clean_acc", "T clean", ".3f"),
                              ("teacher_pgd_acc", "T PGD", ".3f"), ("d_clean", "d clean", "+.3f"),
                              ("d_pgd", "d PGD", "+.3f"), ("train_seconds", "train s", ".1f")]))
    print(f"seed-to-seed spread of the reference: clean {band['clean_acc']:.3f}, PGD {band['pgd_acc']:.3f}")
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

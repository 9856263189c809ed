"""What the per-epoch validation costs against a training epoch, in forward-equivalents, for every GPU recipe.

For each CIFAR-10/100 and Tiny-ImageNet recipe (as shipped, and with the former validation: every epoch, every
validation full, 3 APGD-T targets): a training epoch's forward-equivalents (training images ×
:func:`bench_utils.forward_equivalents` of the recipe's method, ADR and AWP) and the validation's, averaged over the
run's epochs. A *full* validation (every ``val_full_every``-th, and the last) measures student and teacher: clean,
PGD-k and the selecting attack; the others what selects (:func:`art_adr.validation.selective_plan`). Counting
convention as ``throughput.py``'s: a forward F, a forward+backward 3F; an attack's cost is its declared worst case
(:meth:`art_adr.attacks.Attack.forward_equivalents`) — an upper bound for ``apgd``, whose APGD-T runs only on the
images APGD-CE left robust (the agreement study counts the real passes). No training runs: the numbers follow from
the configs. Writes ``<out>.json`` and ``<out>.md``.

    python benchmarks/validation_cost.py --out benchmarks/results/validation-cost
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import forward_equivalents, git_commit  # noqa: E402

from art_adr.attacks import AttackSpec, get_attack  # noqa: E402
from art_adr.config import RunConfig, list_recipes, resolve_config  # noqa: E402
from art_adr.defaults import is_auto  # noqa: E402
from art_adr.tables import markdown_table, write_report  # noqa: E402
from art_adr.validation import full_plan, resolve_best_metric, selective_plan, validation_at  # noqa: E402

TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "tinyimagenet": 100_000}
TARGET = 0.05  # of a CIFAR-10 ResNet-18 AT+ADR epoch
FORMER = {"eval_every": 1, "val_full_every": 1, "val_targets": 3}  # every recipe's validation before issue 24 §6


def plan_fe(plan: dict[str, tuple[str, ...]], attack: str, targets: int, steps: int) -> float:
    """Forward-equivalents per hold-out image of one validation measuring ``plan`` (model → kinds)."""
    spec = AttackSpec(steps=steps)
    cost = {"clean": 1.0, "pgd": get_attack("pgd").forward_equivalents(spec),
            attack: get_attack(attack, validates=True, targets=targets).forward_equivalents(spec)}
    return sum(cost[kind] for kinds in plan.values() for kind in kinds)


def validation_fe_per_epoch(config: RunConfig) -> tuple[float, int, int]:
    """``(forward-equivalents per hold-out image and epoch, full validations, selective ones)`` over the run."""
    metric = resolve_best_metric(config.best_metric, config.val_attack)
    auto = config.adr and (is_auto(config.temperature) or is_auto(config.interpolation))
    full = plan_fe(full_plan(config.val_attack), config.val_attack, config.val_targets, config.eval_max_iter)
    sel = plan_fe(selective_plan(metric, config.val_attack, auto), config.val_attack, config.val_targets,
                  config.eval_max_iter)
    kinds = [validation_at(e, config.epochs, config.eval_every, config.val_full_every)
             for e in range(1, config.epochs + 1)]
    n_full, n_sel = kinds.count("full"), kinds.count("selective")
    return (n_full * full + n_sel * sel) / config.epochs, n_full, n_sel


def epoch_images(config: RunConfig) -> int:
    """Images a training epoch forwards: the training set less the hold-out; with extra data an epoch is one pass
    over the real images in full batches of which they are the ``1 - extra_fraction`` share (the DDPM recipes)."""
    real = TRAIN_IMAGES[config.dataset] - (config.val_size if config.val_split == "holdout" else 0)
    if not config.extra_fraction:
        return real
    return real // round(config.batch_size * (1 - config.extra_fraction)) * config.batch_size


def recipe_row(name: str) -> dict[str, Any]:
    config = resolve_config(name)
    train_images = epoch_images(config)
    epoch = train_images * forward_equivalents(config.method, config.max_iter, config.adr, config.awp_rho > 0)
    former = dataclasses.replace(config, **FORMER)
    row: dict[str, Any] = {"recipe": name, "train_images": train_images, "val_size": config.val_size,
                           "epoch_fe": epoch}
    for label, cfg in (("now", config), ("former", former)):
        per_image, n_full, n_sel = validation_fe_per_epoch(cfg)
        row[label] = {"val_full_every": cfg.val_full_every, "val_targets": cfg.val_targets, "full": n_full,
                      "selective": n_sel, "fe_per_epoch": per_image * cfg.val_size,
                      "fraction": per_image * cfg.val_size / epoch}
    return row


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = ["recipe", "epoch (M F)", "hold-out", "full / selective validations", "targets",
            "validation now (M F / epoch)", "% of epoch", "former (every epoch, all)", "former %"]
    body = [[r["recipe"], f"{r['epoch_fe'] / 1e6:.2f}", str(r["val_size"]),
             f"{r['now']['full']} / {r['now']['selective']}", str(r["now"]["val_targets"]),
             f"{r['now']['fe_per_epoch'] / 1e6:.3f}", f"{100 * r['now']['fraction']:.1f}",
             f"{r['former']['fe_per_epoch'] / 1e6:.3f}", f"{100 * r['former']['fraction']:.1f}"] for r in rows]
    return "\n".join([f"# Validation cost per epoch, forward-equivalents (upper bound; commit {meta['commit']}, "
                      f"{meta['date']})", "", f"Command: `{meta['command']}`", "", *markdown_table(head, body), "",
                      f"Target: ≤ {100 * TARGET:.0f} % of a CIFAR-10 ResNet-18 AT+ADR epoch.", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefixes", default="cifar10-,cifar100-,tinyimagenet-",
                    help="recipes whose names start with one of these (comma-separated)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/validation-cost"))
    args = ap.parse_args(argv)
    prefixes = tuple(p for p in args.prefixes.split(",") if p)
    rows = [recipe_row(n) for n in sorted(list_recipes()) if n.startswith(prefixes)]
    if not rows:
        ap.error(f"no recipe starts with {args.prefixes}")
    meta = {"command": "python " + " ".join(sys.argv), "commit": git_commit(), "date": time.strftime("%Y-%m-%d")}
    write_report(args.out, {"meta": meta, "rows": rows}, markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

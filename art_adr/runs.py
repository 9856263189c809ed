"""Training runs: data, model, trainer, per-epoch metrics, plots, atomic checkpoints, exact resume, DDP."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from . import __version__
from .checkpoint import atomic_write, load_checkpoint, save_checkpoint
from .config import RunConfig, coerce

__all__ = ["train_run", "RunError", "RunStopped", "load_run_config", "build_scheduler_lambda", "plot_curves"]

CONFIG_FILE = "config.yaml"


class RunError(ValueError):
    """A run that cannot start: an existing run directory, missing data, a config that does not resume."""


class RunStopped(Exception):
    """Raised internally to stop a run cleanly after ``stop_after_epochs`` epochs of this invocation."""


@dataclass
class DistInfo:
    """Rank facts of a ``torchrun`` process (or of a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return info


def pick_device(name: str, dist: DistInfo) -> torch.device:
    """``auto`` → this rank's GPU when there is one, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RunError("--device cuda asked for, but torch sees no GPU")
        return torch.device(f"cuda:{dist.local_rank}" if name == "cuda" else name)
    if name != "cpu":
        raise RunError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")
    return torch.device("cpu")


def build_scheduler_lambda(config: RunConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """LR factor per iteration: step decay at ``milestones`` (§5.1) or linear warm-up + cosine (§5.4)."""
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "multistep":
        bounds = [round(m * total) for m in config.milestones]

        def multistep(step: int) -> float:
            return config.lr_gamma ** sum(step >= b for b in bounds)

        return multistep
    warm = int(round(config.warmup_epochs * steps_per_epoch))

    def cosine(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return cosine


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_config(out: Path, config: RunConfig, meta: dict[str, Any]) -> None:
    """``config.yaml``: the resolved options (loadable again), with what ran in a header comment."""
    header = "".join(f"# {k}: {v}\n" for k, v in meta.items())
    text = header + yaml.safe_dump(config.to_dict(), sort_keys=False)
    atomic_write(out / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text))


def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """Read back a run directory's ``config.yaml`` as a validated ``RunConfig``."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{path} not found: not a run directory")
    data = yaml.safe_load(path.read_text()) or {}
    return RunConfig(**{k: coerce(k, v) for k, v in data.items()}).validate()


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Rows with possibly different keys as one CSV (columns in order of first appearance), atomically."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write(out / "metrics.jsonl", lambda tmp: Path(tmp).write_text(lines))
    write_csv(out / "metrics.csv", history)


def plot_curves(history: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Clean/PGD accuracy of student and teacher per epoch (the robust-overfitting picture), plus loss, τ, λ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label, style in (("clean_acc", "student clean", "C0-"), ("pgd_acc", "student PGD", "C1-"),
                              ("teacher_clean_acc", "teacher (WA) clean", "C0--"),
                              ("teacher_pgd_acc", "teacher (WA) PGD", "C1--")):
        pts = [(r["epoch"], r[key]) for r in history if key in r]
        if pts:
            ax.plot(*zip(*pts), style, marker="o", ms=3, label=label)
    ax.plot(epochs, [r["train_robust_acc"] for r in history], "C2:", label="train adversarial")
    best = [r.get("best_epoch") for r in history if r.get("best_epoch")]
    if best:
        ax.axvline(best[-1], color="grey", lw=0.8, ls=":", label=f"best epoch {best[-1]}")
    ax.set(xlabel="epoch", ylabel="accuracy", title=title or "accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax2.plot(epochs, [r["loss"] for r in history], "k-", label="train loss")
    ax2.set(xlabel="epoch", ylabel="loss")
    handles, labels = ax2.get_legend_handles_labels()
    if all("tau" in r for r in history):  # ADR runs: the annealing schedules
        ax3 = ax2.twinx()
        ax3.plot(epochs, [r["tau"] for r in history], "C3--", label="τ (temperature)")
        ax3.plot(epochs, [r["lambda"] for r in history], "C4--", label="λ (interpolation)")
        ax3.set_ylabel("τ, λ")
        h2, l2 = ax3.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax2.legend(handles, labels, fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _load_data(config: RunConfig):
    from .data import load_dataset, load_extra_npz

    kw = dict(config.dataset_kwargs)
    train = load_dataset(config.dataset, "train", config.data_dir, config.download, **kw)
    test = load_dataset(config.dataset, "test", config.data_dir, config.download, **kw)
    if config.val_split == "holdout":
        if config.val_size >= len(train):
            raise RunError(f"val_size {config.val_size} leaves no training data ({len(train)} examples)")
        train, val = train.split(config.val_size, seed=config.seed)
    else:
        val = test.subset(config.val_size) if config.val_size else test
    if config.subset is not None and config.subset < len(train):
        idx = np.sort(np.random.default_rng(config.seed + 1).permutation(len(train))[: config.subset])
        train = train.subset(idx)
    extra = None
    if config.extra_fraction > 0:
        if not config.extra_data:
            raise RunError("extra_fraction > 0 needs --extra-data FILE.npz (image uint8 NHWC, label)")
        extra = load_extra_npz(config.extra_data, num_classes=train.num_classes)
        if extra.shape != train.shape:
            raise RunError(f"extra data images are {extra.shape}, the dataset's are {train.shape}")
    return train, val, test, extra


def _model_desc(config: RunConfig, num_classes: int) -> dict[str, Any]:
    return {"arch": config.arch, "num_classes": num_classes, "dataset": config.dataset,
            "kwargs": dict(config.arch_kwargs)}


def build_trainer(config: RunConfig, num_classes: int, shape: tuple[int, ...], device: torch.device,
                  verbose: bool = True):
    """Model, SGD optimizer, ART classifier and the configured trainer (before data or resume)."""
    from art.estimators.classification import PyTorchClassifier

    from .models import create_model
    from .trainer import AdversarialTrainerADR, AdversarialTrainerTRADESADR

    torch.manual_seed(config.seed)
    model = create_model(config.arch, num_classes, dataset=config.dataset, **config.arch_kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), optimizer=opt, input_shape=tuple(shape),
                            nb_classes=num_classes, clip_values=(0.0, 1.0),
                            device_type="gpu" if device.type == "cuda" else "cpu")
    kw = dict(
        eps=config.eps, eps_step=config.eps_step, max_iter=config.max_iter, norm=config.norm,
        temperature=config.temperature, interpolation=config.interpolation,
        ema_decay=config.ema_decay, ema_warmup=config.ema_warmup,
        adr=config.adr, awp_rho=config.awp_rho, awp_warmup=config.awp_warmup,
        augment=config.augment, crop_padding=config.crop_padding, amp=config.amp,
        channels_last=config.channels_last, compile=config.compile, eval_max_iter=config.eval_max_iter,
        eval_every=config.eval_every, eval_batch_size=config.eval_batch_size, scheduler_interval="step",
        seed=config.seed, verbose=verbose,
    )
    if config.attack_bn_mode is not None:
        kw["attack_bn_mode"] = config.attack_bn_mode
    if config.method == "trades":
        return AdversarialTrainerTRADESADR(clf, beta=config.beta, **kw)
    return AdversarialTrainerADR(clf, **kw)


def _checkpoint(trainer: Any, config: RunConfig, desc: dict[str, Any], record: dict[str, Any] | None) -> dict:
    return {"model": desc, "config": config.to_dict(), **trainer.state_dict(), "metrics": record or {}}


def train_run(
    config: RunConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    verbose: bool = True,
    command: str | None = None,
) -> Path:
    """Run ``art-adr train``: writes ``config.yaml``, ``metrics.{jsonl,csv}``, ``curves.png`` and
    ``checkpoints/{last,best,final}.pt`` under ``out_dir``; ``resume=True`` continues from ``last.pt``
    bit-for-bit (CPU, fixed seed). Under ``torchrun`` every rank trains a shard of each batch and rank 0 writes.
    """
    from .loader import DeviceBatches, MixedBatches, fits_on_device, to_tensor_images

    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    dist = init_distributed(config.device)
    device = pick_device(config.device, dist)
    last = ckpt_dir / "last.pt"
    if resume:
        if not last.is_file():
            raise RunError(f"nothing to resume: {last} does not exist")
    elif (out / CONFIG_FILE).exists() or last.exists():
        raise RunError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    config.validate()
    train, val, _test, extra = _load_data(config)
    if config.batch_size % dist.world_size:
        raise RunError(f"batch_size {config.batch_size} is not divisible by {dist.world_size} processes")
    trainer = build_trainer(config, train.num_classes, train.shape, device, verbose=verbose)
    desc = _model_desc(config, train.num_classes)

    store = device if fits_on_device(train.x.nbytes, device) else torch.device("cpu")
    xs, ys = to_tensor_images(train.x, store), torch.as_tensor(train.y, device=store)
    main = DeviceBatches(xs, ys, config.batch_size, shuffle=True, augment=trainer.augment, seed=config.seed,
                         device=device, channels_last=config.channels_last, rank=dist.rank,
                         world_size=dist.world_size)
    batches: Any = main
    if extra is not None:
        batches = MixedBatches(main, to_tensor_images(extra.x, store), torch.as_tensor(extra.y, device=store),
                               config.extra_fraction)
    steps = len(batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, build_scheduler_lambda(config, steps))
    trainer.scheduler = scheduler
    if resume:
        state = load_checkpoint(last, map_location=device)
        saved = state.get("config", {})
        if saved and saved != config.to_dict():
            diff = sorted(k for k in saved if saved.get(k) != config.to_dict().get(k))
            raise RunError(f"the checkpoint was trained with different options ({', '.join(diff)})")
        trainer.load_state_dict(state, scheduler=scheduler)
    elif dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"art_adr": __version__, "torch": torch.__version__, "python": platform.python_version(),
                "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                "world_size": dist.world_size, "git_commit": _git_commit(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command or "train_run()",
                "train_examples": len(train), "val_examples": len(val), "val_split": config.val_split}
        write_config(out, config, meta)

    started_at = trainer.epoch
    best_value = max((r.get(config.best_metric, -1.0) for r in trainer.history), default=-1.0)

    def on_epoch_end(tr: Any, record: dict[str, Any]) -> None:
        nonlocal best_value
        if dist.is_main:
            ckpt = _checkpoint(tr, config, desc, record)
            save_checkpoint(last, ckpt)
            value = record.get(config.best_metric)
            if value is not None and value > best_value:
                best_value = value
                save_checkpoint(ckpt_dir / "best.pt", ckpt)
            _write_metrics(out, tr.history)
            plot_curves(tr.history, out / "curves.png", title=config.recipe or f"{config.dataset} {config.method}")
        if stop_after_epochs is not None and tr.epoch - started_at >= stop_after_epochs and tr.epoch < config.epochs:
            raise RunStopped

    try:
        trainer.fit_batches(batches.epoch, steps, config.epochs, (val.x, val.y), scheduler, [on_epoch_end])
    except RunStopped:
        if verbose and dist.is_main:
            print(f"stopped after epoch {trainer.epoch}; continue with: art-adr train --out {out} --resume")
        return out
    if dist.world_size > 1:
        replicas_in_sync(trainer._raw)
    if dist.is_main:
        save_checkpoint(ckpt_dir / "final.pt", _checkpoint(trainer, config, desc, trainer.history[-1]))
        if not (ckpt_dir / "best.pt").exists():
            save_checkpoint(ckpt_dir / "best.pt", _checkpoint(trainer, config, desc, trainer.history[-1]))
    return out


def replicas_in_sync(model: torch.nn.Module) -> None:
    """Check that every DDP rank holds rank 0's parameters exactly (``RuntimeError`` otherwise)."""
    flat = torch.cat([p.detach().flatten().float() for p in model.parameters()])
    ref = flat.clone()
    torch.distributed.broadcast(ref, src=0)
    mismatch = torch.tensor([float((ref != flat).any())], device=flat.device)
    torch.distributed.all_reduce(mismatch)
    if mismatch.item():
        raise RuntimeError("DDP replicas diverged: parameters differ between ranks")


def summarize(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Best and final epochs' metrics of a finished run (from ``metrics.jsonl``)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise RunError(f"{path} not found")
    history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not history:
        raise RunError(f"{path} is empty")
    config = load_run_config(run_dir)
    scored = [r for r in history if config.best_metric in r]
    best = max(scored, key=lambda r: r[config.best_metric]) if scored else history[-1]
    return {"best": best, "final": history[-1], "epochs": len(history), "best_metric": config.best_metric}


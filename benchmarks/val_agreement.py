"""Which validation attack ranks checkpoints as standard AutoAttack does? (issue: "ADR that helps by default").

For every checkpoint of the given run directories (``checkpoints/epoch-*.pt`` written with ``save_every``, the last
of which is ``final.pt``, plus ``best.pt`` when it is another epoch), on the first ``--n-examples`` images of the
run's own validation hold-out (never test images), this measures the student's accuracy under each candidate of
:mod:`art_adr.validation` (``pgd``, ``margin``, ``apgd`` and APGD-CE alone) and under standard AutoAttack, with the
cost of each candidate (forward+backward passes per image, counted, and seconds). Then: Kendall τ-b between each
candidate and AutoAttack over all checkpoints pooled and within each run (mean over runs), the mean |candidate − AA|
for ADR and non-ADR runs, and the checkpoint each would select per run (and what AA says of it). Writes
``<out>.json``, ``<out>.md`` and ``<out>.png`` (candidate vs AA accuracy, one point per checkpoint). Every
checkpoint's numbers are cached beside it (keyed by its SHA-256), so an interrupted study resumes, and a candidate
added later (``--candidates``) reuses the cached AutoAttack reference.

A candidate is ``NAME[-tT][@K]``: one of :data:`CANDIDATES`, ``-tT`` APGD-T with ``T`` target classes (``apgd``
only; default 3), ``@K`` on the first ``K`` of the ``--n-examples`` images only (AutoAttack stays on all of them):
``apgd-t1@100`` asks whether a cheaper validation ranks checkpoints as well.

    python benchmarks/val_agreement.py RUN_DIR [RUN_DIR ...] --n-examples 200 --out benchmarks/results/val-agreement
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import scipy.stats
import torch

from art_adr.attacks import AttackSpec, get_attack
from art_adr.attacks.autoattack import autoattack_eval
from art_adr.checkpoint import load_checkpoint, model_from_checkpoint
from art_adr.evaluation import file_sha256, first_n, load_split
from art_adr.loader import to_unit_float
from art_adr.tables import markdown_table, write_report

CANDIDATES = ("pgd", "margin", "apgd-ce", "apgd")
CACHE_VERSION = 1


class Counting(torch.nn.Module):
    """Counts the images passed through ``model`` (a forward with or without backward counts once)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += int(x.shape[0])
        return self.model(x)


def kendall_tau_b(a: list[float], b: list[float]) -> float:
    """Kendall's τ-b of two equally long sequences (ties in either are allowed; ``scipy.stats.kendalltau``'s
    default variant); NaN when undefined (fewer than two points, or one sequence constant)."""
    if len(a) != len(b):
        raise ValueError("sequences of different lengths")
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(scipy.stats.kendalltau(a, b, variant="b").statistic)


def parse_candidate(key: str) -> tuple[str, int | None, int | None]:
    """``"apgd-t1@100"`` → ``("apgd", 1, 100)``; ``"pgd"`` → ``("pgd", None, None)`` (``ValueError`` if malformed)."""
    head, _, images = key.partition("@")
    name, targets = head, None
    if "-t" in head and head.rsplit("-t", 1)[1].isdigit():
        name, t = head.rsplit("-t", 1)
        targets = int(t)
    if name not in CANDIDATES or (targets is not None and (name != "apgd" or targets < 1)) or \
            (images and not images.isdigit()) or images == "0":
        raise ValueError(f"candidate {key!r}: expected NAME[-tT][@K] with NAME one of {', '.join(CANDIDATES)} "
                         "(-tT for apgd only, T, K >= 1)")
    return name, targets, int(images) if images else None


def _candidate(key: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec,
               seed: int) -> dict[str, float]:
    name, targets, images = parse_candidate(key)
    x, y = (x[:images], y[:images]) if images else (x, y)
    counting = Counting(model)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    if name == "apgd-ce":  # APGD-CE alone: the first half of "apgd"
        from pyautoattack.autopgd_base import APGDAttack

        with torch.random.fork_rng(devices=[]):
            adv = APGDAttack(counting, norm="Linf" if spec.norm == "inf" else "L2", eps=spec.eps, n_iter=spec.steps,
                             n_restarts=1, seed=seed, device=x.device, loss="ce").perturb(x, y)
        with torch.no_grad():
            flags = counting(adv).argmax(1) == y
    else:
        flags = get_attack(name, validates=True, targets=targets).flags(counting, x, y, spec,  # None: the default
                                                                        clip_values=(0.0, 1.0), generator=gen)
    return {"acc": 100.0 * float(flags.float().mean()), "seconds": time.perf_counter() - t0,
            "forwards_per_image": counting.images / len(y), "n": len(y)}


def evaluate_file(path: Path, n_examples: int, candidates: tuple[str, ...] = CANDIDATES,
                  seed: int = 0) -> dict[str, Any]:
    """``candidates`` and standard AutoAttack on the student of one checkpoint (cached beside it; a candidate
    missing from the cache is added to it, the AutoAttack reference reused)."""
    cache = path.parent.parent / "agreement" / f"{path.stem}-n{n_examples}.json"
    sha = file_sha256(path)
    out: dict[str, Any] = {}
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("sha256") == sha and saved.get("version") == CACHE_VERSION:
            out = saved
    if out and all(c in out for c in candidates):
        return out
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, which="student", device="cpu").eval()
    data = first_n(load_split(ckpt, "holdout"), n_examples)
    x, y = to_unit_float(torch.as_tensor(data.x)), torch.as_tensor(data.y).long()
    config = ckpt["config"]
    spec = AttackSpec.from_config(config, steps=int(config.get("eval_max_iter", 10)))
    if not out:
        out = {"version": CACHE_VERSION, "file": path.name, "sha256": sha, "epoch": int(ckpt["epoch"]),
               "n": len(y), "spec": spec.describe(), "adr": bool(config.get("adr")),
               "method": config.get("method"), "seed": int(config.get("seed", 0))}
        with torch.no_grad():
            out["clean"] = 100.0 * float((model(x).argmax(1) == y).float().mean())
    for key in candidates:
        if key not in out:
            out[key] = _candidate(key, model, x, y, spec, seed)
    if "aa" not in out:
        counting = Counting(model)
        t0 = time.perf_counter()
        aa = autoattack_eval(counting, x, y, eps=spec.eps, norm=spec.norm, version="standard", seed=seed)
        out["aa"] = {"acc": aa["cumulative"][aa["attacks"][-1]], "cumulative": aa["cumulative"],
                     "seconds": time.perf_counter() - t0, "forwards_per_image": counting.images / len(y)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out, indent=1))
    return out


def checkpoints_of(run_dir: Path) -> list[Path]:
    """The run's kept checkpoints in epoch order, then ``best.pt`` (``final.pt`` is the last ``epoch-`` file)."""
    ck = run_dir / "checkpoints"
    files = sorted(ck.glob("epoch-*.pt"))
    return files + ([ck / "best.pt"] if (ck / "best.pt").is_file() else [])


def distinct(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run's checkpoints once each: ``best.pt`` only when its epoch is not one of the kept ``epoch-`` files."""
    kept = {p["epoch"] for p in points if p["file"] != "best.pt"}
    return [p for p in points if p["file"] != "best.pt" or p["epoch"] not in kept]


def summarise(runs: dict[str, list[dict[str, Any]]], candidates: tuple[str, ...] = CANDIDATES) -> dict[str, Any]:
    """Kendall τ-b (pooled and within runs), gaps to AA by ADR / non-ADR, costs and per-run selections."""
    runs = {r: distinct(ps) for r, ps in runs.items()}
    points = [dict(p, run=r) for r, ps in runs.items() for p in ps]
    aa = [p["aa"]["acc"] for p in points]
    out: dict[str, Any] = {"n_checkpoints": len(points), "n_runs": len(runs), "candidates": {}}
    for c in candidates:
        within = [kendall_tau_b([p[c]["acc"] for p in ps], [p["aa"]["acc"] for p in ps]) for ps in runs.values()]
        within = [t for t in within if not math.isnan(t)]
        gaps = {kind: [p[c]["acc"] - p["aa"]["acc"] for p in points if p["adr"] == flag]
                for kind, flag in (("adr", True), ("baseline", False))}
        sel_loss = []
        for ps in runs.values():
            cand = ps
            if not cand:
                continue
            chosen = max(cand, key=lambda p: (p[c]["acc"], p["epoch"]))
            sel_loss.append(max(p["aa"]["acc"] for p in cand) - chosen["aa"]["acc"])
        out["candidates"][c] = {
            "kendall_pooled": kendall_tau_b([p[c]["acc"] for p in points], aa),
            "kendall_within_mean": sum(within) / len(within) if within else float("nan"),
            "kendall_within": within,
            "gap_adr": _mean(gaps["adr"]), "gap_baseline": _mean(gaps["baseline"]),
            "abs_gap_adr": _mean([abs(g) for g in gaps["adr"]]),
            "abs_gap_baseline": _mean([abs(g) for g in gaps["baseline"]]),
            "forwards_per_image": _mean([p[c]["forwards_per_image"] for p in points]),
            "seconds_per_image": _mean([p[c]["seconds"] / p["n"] for p in points]),
            "selection_aa_loss_mean": _mean(sel_loss),
            "images": min(int(p[c].get("n", p["n"])) for p in points) if points else 0,
        }
    pgd_cost = out["candidates"].get("pgd", {}).get("forwards_per_image", math.nan)
    for c in candidates:
        out["candidates"][c]["cost_vs_pgd"] = out["candidates"][c]["forwards_per_image"] / pgd_cost
    out["aa_forwards_per_image"] = _mean([p["aa"]["forwards_per_image"] for p in points])
    out["aa_seconds_per_image"] = _mean([p["aa"]["seconds"] / p["n"] for p in points])
    return out


def _mean(v: list[float]) -> float:
    return sum(v) / len(v) if v else float("nan")


def plot(runs: dict[str, list[dict[str, Any]]], path: Path, candidates: tuple[str, ...] = CANDIDATES) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(candidates), figsize=(4.2 * len(candidates), 4.2), sharey=True, squeeze=False)
    axes = axes[0]
    points = [p for ps in runs.values() for p in distinct(ps)]
    lo = min(min(p["aa"]["acc"] for p in points), 0) if points else 0
    for ax, c in zip(axes, candidates):
        for flag, colour, label in ((False, "tab:blue", "without ADR"), (True, "tab:red", "with ADR")):
            sel = [p for p in points if p["adr"] == flag]
            ax.scatter([p[c]["acc"] for p in sel], [p["aa"]["acc"] for p in sel], s=14, c=colour, label=label,
                       alpha=0.75)
        vals = [p[c]["acc"] for p in points] + [p["aa"]["acc"] for p in points]
        a, b = (min(vals) - 2, max(vals) + 2) if vals else (lo, 100)
        ax.plot([a, b], [a, b], "k--", lw=0.8, label="y = x")
        ax.set(xlabel=f"{c} accuracy (%)", title=c, xlim=(a, b), ylim=(a, b))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("standard AutoAttack accuracy (%)")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("validation attacks vs AutoAttack, one point per checkpoint (hold-out images, students)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"# Validation attacks vs standard AutoAttack ({summary['n_checkpoints']} checkpoints of "
             f"{summary['n_runs']} runs, {meta['n_examples']} hold-out images each)", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; commit {meta['commit']}; "
             f"{meta['date']}", ""]
    head = ["candidate", "Kendall τ pooled", "τ within run (mean)", "candidate − AA, ADR (pp)", "baseline (pp)",
            "images", "cost (passes/image)", "× PGD-10", "s/image", "AA lost by its choice (pp)"]
    lines += markdown_table(head, [
        [c, f"{s['kendall_pooled']:.3f}", f"{s['kendall_within_mean']:.3f}", f"{s['gap_adr']:+.2f}",
         f"{s['gap_baseline']:+.2f}", str(s["images"]), f"{s['forwards_per_image']:.1f}", f"{s['cost_vs_pgd']:.2f}",
         f"{1e3 * s['seconds_per_image']:.2f} ms", f"{s['selection_aa_loss_mean']:.2f}"]
        for c, s in summary["candidates"].items()])
    lines += ["", f"Standard AutoAttack: {summary['aa_forwards_per_image']:.0f} passes/image, "
              f"{1e3 * summary['aa_seconds_per_image']:.0f} ms/image.", "",
              "'AA lost by its choice': per run, the AutoAttack accuracy of the checkpoint AA itself ranks first minus "
              "that of the checkpoint the candidate ranks first (mean over runs; 0 = same choice).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--n-examples", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/val-agreement"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--candidates", default=",".join(CANDIDATES),
                    help="comma-separated NAME[-tT][@K] (default: %(default)s)")
    args = ap.parse_args(argv)
    candidates = tuple(c.strip() for c in args.candidates.split(",") if c.strip())
    for c in candidates:
        parse_candidate(c)
    torch.set_num_threads(args.threads)
    runs: dict[str, list[dict[str, Any]]] = {}
    for run in args.runs:
        files = checkpoints_of(run)
        if not (run / "checkpoints" / "final.pt").is_file():
            print(f"skip {run}: not finished", file=sys.stderr)
            continue
        runs[run.name] = []
        for f in files:
            t0 = time.perf_counter()
            runs[run.name].append(evaluate_file(f, args.n_examples, candidates))
            p = runs[run.name][-1]
            print(f"{run.name} {f.name}: clean {p['clean']:.1f} " + " ".join(
                f"{c} {p[c]['acc']:.1f}" for c in candidates) + f" aa {p['aa']['acc']:.1f} "
                f"({time.perf_counter() - t0:.0f}s)", flush=True)
    summary = summarise(runs, candidates)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"command": "python " + " ".join(sys.argv), "n_examples": args.n_examples, "commit": commit,
            "machine": f"{platform.machine()} {platform.processor() or ''} CPU, torch {torch.__version__}, "
                       f"{args.threads} thread(s)".replace("  ", " "),
            "date": time.strftime("%Y-%m-%d")}
    write_report(args.out, {"meta": meta, "summary": summary, "runs": runs}, markdown(summary, meta))
    plot(runs, args.out.with_suffix(".png"), candidates)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

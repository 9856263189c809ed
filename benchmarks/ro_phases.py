"""When does robust overfitting happen, and how much of it does ADR remove? Per-epoch hold-out curves, paired.

For run directories of one regime (AT and AT+ADR, the same seeds), from each run's ``metrics.jsonl`` (the hold-out
validation of every epoch: the students' accuracy under the run's validation attack, ``apgd`` by default), the
robust accuracy at its peak, at the first learning-rate decay and at the end, and so the best − final gap split
into what is lost before the decay and after it; then AT vs AT+ADR paired over seeds. Hold-out numbers, not test
numbers: the peak is the maximum over the validations of the very images it is read on (biased upwards alike for
both methods), which is why the test-set tables select on the hold-out and report on the test set. No model runs.

    python benchmarks/ro_phases.py --regime ro2 RUNS/fashion-mnist-ro2-at-s{0,1,2} \
        RUNS/fashion-mnist-ro2-at-adr-s{0,1,2} --out benchmarks/results/ro-phases-ro2
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from art_adr.config import with_legacy_defaults
from art_adr.tables import markdown_table, write_report
from art_adr.validation import metric_name

FIELDS = ("peak", "at_decay", "final", "gap", "lost_before_decay", "lost_after_decay")  # summarised per method


def phases(history: list[dict[str, Any]], key: str, decay_epoch: int) -> dict[str, float]:
    """Peak, value at ``decay_epoch`` (the last validation at or before it) and final of ``key`` (in %), and the
    peak − final gap split at the decay (``before`` + ``after`` = ``gap``, ``before`` from the peak before it)."""
    points = [(int(r["epoch"]), 100.0 * float(r[key])) for r in history if key in r]
    if not points:
        raise ValueError(f"no {key!r} in the history")
    peak_epoch, peak = max(points, key=lambda p: (p[1], -p[0]))
    before = [v for e, v in points if e <= decay_epoch]
    at_decay = before[-1] if before else points[0][1]
    final = points[-1][1]
    peak_before = max(before) if before else at_decay
    return {"peak": peak, "peak_epoch": peak_epoch, "at_decay": at_decay, "final": final, "gap": peak - final,
            "lost_before_decay": peak_before - at_decay, "lost_after_decay": at_decay - final,
            "peak_before_decay": peak_before}


def read_run(run: Path) -> dict[str, Any]:
    config = with_legacy_defaults(yaml.safe_load((run / "config.yaml").read_text()))  # as art-adr reads it
    plain = run / "metrics.jsonl"  # or gzipped, as the committed copies are (the tree travels to a GPU host)
    text = plain.read_text() if plain.is_file() else gzip.decompress((run / "metrics.jsonl.gz").read_bytes()).decode()
    history = [json.loads(line) for line in text.splitlines() if line.strip()]
    key = metric_name(config["val_attack"])
    decay = int(round(float(config["milestones"][0]) * int(config["epochs"])))
    return {"run": run.name, "seed": int(config.get("seed", 0)), "adr": bool(config.get("adr")), "key": key,
            "decay_epoch": decay, **phases(history, key, decay)}


def _mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f} ± {statistics.pstdev(values):.2f}" if values else "–"


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds per method and the paired (AT+ADR − AT, same seed) differences."""
    by = {flag: {r["seed"]: r for r in runs if r["adr"] == flag} for flag in (False, True)}
    seeds = sorted(set(by[False]) & set(by[True]))
    out: dict[str, Any] = {"seeds": seeds}
    for label, flag in (("at", False), ("at_adr", True)):
        out[label] = {f: [by[flag][s][f] for s in seeds] for f in FIELDS}
    out["paired"] = {f: [by[True][s][f] - by[False][s][f] for s in seeds] for f in FIELDS}
    return out


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    head = ["", "peak", "at the LR decay", "final", "peak − final", "lost before the decay", "lost after it"]
    rows = [[label] + [_mean_std(summary[key][f]) for f in FIELDS]
            for label, key in (("AT", "at"), ("AT+ADR", "at_adr"), ("paired AT+ADR − AT", "paired"))]
    return "\n".join([f"# Where robust overfitting happens: {meta['regime']} (hold-out, students, seeds "
                      f"{', '.join(map(str, summary['seeds']))}; %, mean ± population std)", "",
                      f"Command: `{meta['command']}`  ", f"Date {meta['date']}; the runs' own config.yaml name their "
                      "commit.", "", *markdown_table(head, rows), ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--regime", required=True, help="a name for the table (e.g. ro2)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    runs = [read_run(r) for r in args.runs]
    summary = summarise(runs)
    if not summary["seeds"]:
        ap.error("no seed has both an AT and an AT+ADR run")
    meta = {"command": "python " + " ".join(sys.argv), "regime": args.regime, "date": time.strftime("%Y-%m-%d")}
    write_report(args.out, {"meta": meta, "runs": runs, "summary": summary}, markdown(summary, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

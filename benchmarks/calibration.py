"""Is AT+ADR better calibrated than AT (paper §3.2)? Paired by seed, from ``art-adr analyze`` outputs.

Each ``analysis.json`` holds two models of one seed, labelled ``AT`` and ``AT+ADR`` (``art-adr analyze
AT_RUN --vs ADR_RUN --label AT --label AT+ADR``); the file's folder names its regime, seed and attack as
``<regime>-s<seed>-<attack>`` (e.g. ``ro3-s0-apgd``). Per regime and attack, over seeds: ECE of the clean and
of the adversarial outputs, the clean↔adversarial JS divergence, the mean entropy on out-of-distribution images,
AT's and AT+ADR's and their paired difference (AT+ADR − AT), with the plain verdict of ``ro_verdicts.py`` (a
difference is "within noise" when its mean is below its std over seeds or below ``--noise``).

    python benchmarks/calibration.py CAL/*/analysis.json --out benchmarks/results/calibration
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

from art_adr.tables import markdown_table

# metric -> (how to read it from a model's summary, which direction the paper's claim expects for AT+ADR)
METRICS = {
    "ECE clean": (lambda m: m["ece_clean"], "lower"),
    "ECE adversarial": (lambda m: m["ece_adv"], "lower"),
    "JS clean↔adv": (lambda m: m["js"]["mean"], "lower"),
    "entropy OOD": (lambda m: m["entropy"]["ood"]["mean"], "higher"),
    "entropy clean (test)": (lambda m: m["entropy"]["clean"]["mean"], None),  # what the OOD entropy compares with
    "accuracy clean": (lambda m: m["accuracy"], None),
    "accuracy adversarial": (lambda m: m["adv_accuracy"], None),
}
MIN_SEEDS = 3


def read(paths: list[str]) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """``{(regime, attack): {seed: summary}}`` from the folder names ``<regime>-s<seed>-<attack>``."""
    out: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for path in paths:
        match = re.fullmatch(r"(.+)-s(\d+)-(\w+)", Path(path).parent.name)
        if match is None:
            raise ValueError(f"{path}: its folder must be named <regime>-s<seed>-<attack>")
        regime, seed, attack = match.group(1), int(match.group(2)), match.group(3)
        out.setdefault((regime, attack), {})[seed] = json.loads(Path(path).read_text())
    return out


def _verdict(diff: list[float], expect: str | None, noise: float) -> str:
    if expect is None:
        return ""
    if len(diff) < MIN_SEEDS:
        return f"{len(diff)} seed(s): no verdict"
    mean, std = statistics.fmean(diff), statistics.pstdev(diff)
    if abs(mean) < max(std, noise):
        return "within noise"
    return "as the paper says" if (mean < 0) == (expect == "lower") else "the opposite"


def rows(data: dict[tuple[str, str], dict[int, dict[str, Any]]], noise: float) -> list[dict[str, Any]]:
    """One row per regime × attack × metric: AT, AT+ADR and the paired difference over seeds."""
    out = []
    for (regime, attack), seeds in sorted(data.items()):
        order = sorted(seeds)
        for metric, (get, expect) in METRICS.items():
            at = [get(seeds[s]["models"]["AT"]) for s in order]
            adr = [get(seeds[s]["models"]["AT+ADR"]) for s in order]
            diff = [b - a for a, b in zip(at, adr)]
            out.append({"regime": regime, "attack": attack, "metric": metric, "seeds": order,
                        "at": (statistics.fmean(at), statistics.pstdev(at)),
                        "adr": (statistics.fmean(adr), statistics.pstdev(adr)),
                        "diff": (statistics.fmean(diff), statistics.pstdev(diff)),
                        "expect": expect, "verdict": _verdict(diff, expect, noise)})
    return out


def to_markdown(entries: list[dict[str, Any]]) -> str:
    head = ["regime", "adversarial outputs of", "metric", "seeds", "AT", "AT+ADR", "AT+ADR − AT (paired)",
            "paper expects AT+ADR", "verdict"]
    body = [[e["regime"], e["attack"], e["metric"], ",".join(map(str, e["seeds"])),
             "{:.3f} ± {:.3f}".format(*e["at"]), "{:.3f} ± {:.3f}".format(*e["adr"]),
             "{:+.3f} ± {:.3f}".format(*e["diff"]), e["expect"] or "—", e["verdict"]] for e in entries]
    return "\n".join(markdown_table(head, body)) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="analysis.json files in <regime>-s<seed>-<attack> folders")
    parser.add_argument("--noise", type=float, default=0.01, help="smallest difference that counts (default 0.01)")
    parser.add_argument("--out", help="write OUT.md and OUT.json")
    args = parser.parse_args(argv)
    entries = rows(read(args.files), args.noise)
    text = to_markdown(entries)
    print(text, end="")
    if args.out:
        Path(f"{args.out}.md").write_text(text)
        Path(f"{args.out}.json").write_text(json.dumps({"files": args.files, "rows": entries}, indent=1))


if __name__ == "__main__":
    main()

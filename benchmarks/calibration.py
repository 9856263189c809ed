"""Are robust models, and AT+ADR's, better calibrated (paper §3.2)? Paired by seed, from ``art-adr analyze`` outputs.

Each ``analysis.json`` holds the models of one seed under their labels (``art-adr analyze STANDARD_RUN --vs AT_RUN
--vs ADR_RUN --label Standard --label AT --label AT+ADR``); the file's folder names its regime, seed and attack as
``<regime>-s<seed>-<attack>`` (e.g. ``ro3-s0-apgd``). Per pair of labels ``A:B`` (``--pairs``), regime and attack,
over seeds: ECE of the clean and of the adversarial outputs, the clean↔adversarial JS divergence, the mean entropy
on out-of-distribution, clean, adversarial and misclassified clean images, A's and B's and their paired difference
(B − A), with the plain verdict of ``ro_verdicts.py`` against what the paper says of B (a difference is "within
noise" when its mean is below its std over seeds or below ``--noise``).

The paper's claims (§3.2, Figs. 1–2): a robust model, against a standard one, is better calibrated, more uncertain
on OOD data, on clean and adversarial inputs ("higher entropy output regardless of the input type") and on the
examples it misclassifies, and consistent between clean and adversarial inputs (low JS); ADR's labels are
"well-calibrated", so AT+ADR, against AT, is expected better calibrated, consistent and uncertain on OOD data.

    python benchmarks/calibration.py CAL/*/analysis.json --pairs Standard:AT,AT:AT+ADR --out benchmarks/results/cal
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
from pathlib import Path
from typing import Any

from art_adr.tables import markdown_table, write_report

# metric -> how to read it from a model's summary
METRICS = {
    "ECE clean": lambda m: m["ece_clean"],
    "ECE adversarial": lambda m: m["ece_adv"],
    "JS clean↔adv": lambda m: m["js"]["mean"],
    "entropy OOD": lambda m: m["entropy"]["ood"]["mean"],
    "entropy clean (test)": lambda m: m["entropy"]["clean"]["mean"],
    "entropy adversarial": lambda m: m["entropy"]["adv"]["mean"],
    "entropy misclassified": lambda m: m["entropy"]["incorrect"]["mean"],
    "accuracy clean": lambda m: m["accuracy"],
    "accuracy adversarial": lambda m: m["adv_accuracy"],
}
# (A, B) -> {metric: the direction the paper expects of B against A}; other metrics and pairs: no verdict
CLAIMS = {
    ("Standard", "AT"): {"ECE clean": "lower", "ECE adversarial": "lower", "JS clean↔adv": "lower",
                         "entropy OOD": "higher", "entropy clean (test)": "higher", "entropy adversarial": "higher",
                         "entropy misclassified": "higher"},
    ("AT", "AT+ADR"): {"ECE clean": "lower", "ECE adversarial": "lower", "JS clean↔adv": "lower",
                       "entropy OOD": "higher"},
}
MIN_SEEDS = 3


def read(paths: list[str]) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """``{(regime, attack): {seed: summary}}`` from the folder names ``<regime>-s<seed>-<attack>`` (files
    ``analysis.json`` or, as committed, ``analysis.json.gz``)."""
    out: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for path in paths:
        match = re.fullmatch(r"(.+)-s(\d+)-(\w+)", Path(path).parent.name)
        if match is None:
            raise ValueError(f"{path}: its folder must be named <regime>-s<seed>-<attack>")
        regime, seed, attack = match.group(1), int(match.group(2)), match.group(3)
        text = gzip.decompress(Path(path).read_bytes()).decode() if path.endswith(".gz") else Path(path).read_text()
        out.setdefault((regime, attack), {})[seed] = json.loads(text)
    return out


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``"Standard:AT,AT:AT+ADR"`` -> ``[("Standard", "AT"), ("AT", "AT+ADR")]``."""
    pairs = [tuple(item.split(":")) for item in text.split(",") if item]
    if not pairs or any(len(p) != 2 or not all(p) for p in pairs):
        raise ValueError(f"--pairs must be A:B[,A:B...] of model labels, got {text!r}")
    return pairs  # type: ignore[return-value]


def _verdict(diff: list[float], expect: str | None, noise: float) -> str:
    if expect is None:
        return ""
    if len(diff) < MIN_SEEDS:
        return f"{len(diff)} seed(s): no verdict"
    mean, std = statistics.fmean(diff), statistics.pstdev(diff)
    if abs(mean) < max(std, noise):
        return "within noise"
    return "as the paper says" if (mean < 0) == (expect == "lower") else "the opposite"


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values)


def rows(data: dict[tuple[str, str], dict[int, dict[str, Any]]], noise: float,
         pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One row per pair × regime × attack × metric: A, B and the paired difference B − A over seeds (only the
    seeds whose analysis holds both models)."""
    out = []
    for a, b in pairs:
        for (regime, attack), seeds in sorted(data.items()):
            order = [s for s in sorted(seeds) if {a, b} <= set(seeds[s]["models"])]
            if not order:
                continue
            for metric, get in METRICS.items():
                first = [get(seeds[s]["models"][a]) for s in order]
                second = [get(seeds[s]["models"][b]) for s in order]
                diff = [y - x for x, y in zip(first, second)]
                expect = CLAIMS.get((a, b), {}).get(metric)
                out.append({"pair": [a, b], "regime": regime, "attack": attack, "metric": metric, "seeds": order,
                            "a": _stats(first), "b": _stats(second), "diff": _stats(diff), "expect": expect,
                            "verdict": _verdict(diff, expect, noise)})
    return out


def to_markdown(entries: list[dict[str, Any]]) -> str:
    head = ["A → B", "regime", "adversarial outputs of", "metric", "seeds", "A", "B", "B − A (paired)",
            "paper expects B", "verdict"]
    body = [[" → ".join(e["pair"]), e["regime"], e["attack"], e["metric"], ",".join(map(str, e["seeds"])),
             "{:.3f} ± {:.3f}".format(*e["a"]), "{:.3f} ± {:.3f}".format(*e["b"]),
             "{:+.3f} ± {:.3f}".format(*e["diff"]), e["expect"] or "—", e["verdict"]] for e in entries]
    return "\n".join(markdown_table(head, body)) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="analysis.json files in <regime>-s<seed>-<attack> folders")
    parser.add_argument("--pairs", default="AT:AT+ADR", help="model labels A:B to compare, a comma list "
                        "(default AT:AT+ADR; e.g. Standard:AT,AT:AT+ADR)")
    parser.add_argument("--noise", type=float, default=0.01, help="smallest difference that counts (default 0.01)")
    parser.add_argument("--out", help="write OUT.md and OUT.json (and print the table)")
    args = parser.parse_args(argv)
    entries = rows(read(args.files), args.noise, parse_pairs(args.pairs))
    text = to_markdown(entries)
    if args.out:
        write_report(Path(args.out), {"files": args.files, "pairs": args.pairs, "rows": entries}, text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()

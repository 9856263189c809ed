"""Per method, does ADR reduce robust overfitting and raise the final AutoAttack accuracy? Paired by seed.

Reads the ``table1.json`` that ``art-adr benchmark`` writes (one or more files: rows are pooled), pairs every
``<method>`` run with its ``<method> + ADR`` run of the same seed (same data subset, hold-out split and
initialisation), and prints, for students and teachers: final AutoAttack of each, the best − final AutoAttack
gap of each, and the paired differences (mean ± population std over seeds), with a plain verdict. A difference
counts as "within noise" when its mean is smaller than its std over seeds or smaller than 1 pp. With fewer than 3
paired seeds (the project's rule for a claim) there is no verdict ("one seed: no verdict", "2 seeds: no
verdict"), and one seed's numbers are printed without a ± (a std of one value is no spread).

    python benchmarks/ro_verdicts.py OUT/table1.json [MORE.json ...] --out benchmarks/results/NAME-verdicts

With ``--against BASE.json``, the tables are a *variant* (the same methods trained with one option changed, e.g.
``--set ema_buffers=student``), each run paired with the base table's run of the same method, model and seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from art_adr.tables import markdown_table


def _seed_rows(paths: list[str]) -> list[dict[str, Any]]:
    """Per-seed rows of the tables, the method label without its parenthesis ("AT + ADR (τ 2→1.5, ...)" → "AT +
    ADR": the benchmark names options that differ from the recipe there)."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        rows += [{**r, "method": r["method"].split(" (")[0]} for r in json.loads(Path(path).read_text())["rows"]
                 if r.get("kind") == "seed"]
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values)


MIN_SEEDS = 3  # the project's rule: a claim rests on at least 3 seeds


def _verdict(mean: float, std: float, better: str, worse: str, n_seeds: int = MIN_SEEDS) -> str:
    if n_seeds < MIN_SEEDS:
        return f"{'one seed' if n_seeds == 1 else f'{n_seeds} seeds'}: no verdict"
    if abs(mean) < max(std, 1.0):
        return "within noise"
    return better if mean > 0 else worse


def _entry(method: str, which: str, seeds: list[int], base: list[dict[str, Any]], other: list[dict[str, Any]],
           attack: str) -> dict[str, Any]:
    """The paired comparison of ``other`` (ADR, or a variant) against ``base``, seed by seed."""
    final_gain = [a[f"{attack}_final"] - b[f"{attack}_final"] for a, b in zip(other, base)]
    gap_cut = [b[f"{attack}_diff"] - a[f"{attack}_diff"] for a, b in zip(other, base)]
    entry: dict[str, Any] = {"method": method, "which": which, "seeds": seeds, "attack": attack}
    for name, group in (("base", base), ("adr", other)):
        entry[f"{name}_final"] = _mean_std([r[f"{attack}_final"] for r in group])
        entry[f"{name}_gap"] = _mean_std([r[f"{attack}_diff"] for r in group])
    entry["final_gain"], entry["gap_reduction"] = _mean_std(final_gain), _mean_std(gap_cut)
    entry["raised_final"] = _verdict(*entry["final_gain"], "yes", "no, lowered it", len(seeds))
    entry["reduced_gap"] = _verdict(*entry["gap_reduction"], "yes", "no, widened it", len(seeds))
    return entry


def compare(rows: list[dict[str, Any]], attack: str = "aa") -> list[dict[str, Any]]:
    """One entry per (base method, model) that has both a baseline and an ADR run for some seed."""
    by_key = {(r["method"], r["which"], r["seed"]): r for r in rows}
    out = []
    for method, which in dict.fromkeys((r["method"], r["which"]) for r in rows):
        if method.endswith(" + ADR"):
            continue
        seeds = sorted(s for (m, w, s) in by_key if m == method and w == which
                       and (f"{method} + ADR", which, s) in by_key)
        if seeds:
            out.append(_entry(method, which, seeds, [by_key[(method, which, s)] for s in seeds],
                              [by_key[(f"{method} + ADR", which, s)] for s in seeds], attack))
    return out


def compare_variant(base_rows: list[dict[str, Any]], variant_rows: list[dict[str, Any]],
                    attack: str = "aa") -> list[dict[str, Any]]:
    """A variant (the same method trained with one option changed, another table) against the base table's runs
    of the same method, model and seed."""
    base = {(r["method"], r["which"], r["seed"]): r for r in base_rows}
    variant = {(r["method"], r["which"], r["seed"]): r for r in variant_rows}
    out = []
    for method, which in dict.fromkeys((m, w) for m, w, _ in variant):
        seeds = sorted(s for (m, w, s) in variant if (m, w) == (method, which) and (m, w, s) in base)
        if seeds:
            out.append(_entry(method, which, seeds, [base[(method, which, s)] for s in seeds],
                              [variant[(method, which, s)] for s in seeds], attack))
    return out


def _pm(pair: tuple[float, float], n_seeds: int) -> str:
    return f"{pair[0]:.2f} ± {pair[1]:.2f}" if n_seeds > 1 else f"{pair[0]:.2f}"


def to_markdown(entries: list[dict[str, Any]], other: str = "+ ADR") -> str:
    head = ["method", "model", "seeds", "final AA", f"{other} final AA", "paired gain (pp)", "raised final AA?",
            "best − final AA gap", f"{other} gap", "paired reduction (pp)", "reduced the gap?"]
    rows = []
    for e in entries:
        n = len(e["seeds"])
        rows.append([e["method"], e["which"], ",".join(map(str, e["seeds"])), _pm(e["base_final"], n),
                     _pm(e["adr_final"], n), _pm(e["final_gain"], n), e["raised_final"], _pm(e["base_gap"], n),
                     _pm(e["adr_gap"], n), _pm(e["gap_reduction"], n), e["reduced_gap"]])
    return "\n".join(markdown_table(head, rows)) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", help="table1.json files written by art-adr benchmark")
    parser.add_argument("--attack", default="aa", help="the robust column to judge by (default aa)")
    parser.add_argument("--against", nargs="+", metavar="BASE", help="compare the tables' runs (a variant: the "
                        "same methods with one option changed) with these tables' runs of the same method and seed")
    parser.add_argument("--label", default="variant", help="the variant's column label with --against")
    parser.add_argument("--out", help="write OUT.md and OUT.json")
    args = parser.parse_args(argv)
    if args.against:
        entries = compare_variant(_seed_rows(args.against), _seed_rows(args.tables), args.attack)
        text = to_markdown(entries, args.label)
    else:
        entries = compare(_seed_rows(args.tables), args.attack)
        text = to_markdown(entries)
    print(text, end="")
    if args.out:
        Path(f"{args.out}.md").write_text(text)
        Path(f"{args.out}.json").write_text(json.dumps({"tables": args.tables, "against": args.against,
                                                         "entries": entries}, indent=1))


if __name__ == "__main__":
    main()

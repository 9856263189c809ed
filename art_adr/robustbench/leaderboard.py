"""Placement against the shipped RobustBench leaderboard snapshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .bundle import ADR_PAPER

__all__ = ["LEADERBOARD_FILE", "load_leaderboard", "leaderboard_table", "format_leaderboard"]


LEADERBOARD_FILE = Path(__file__).with_name("leaderboard-2025-03-31.json")


# ----------------------------------------------------------------------------------------- leaderboard
def load_leaderboard(path: str | Path = LEADERBOARD_FILE) -> dict[str, Any]:
    """The shipped snapshot: ``{"source", "note", "date", "entries": {"cifar10/Linf": [...], ...}}``."""
    return json.loads(Path(path).read_text())


def _score(entry: dict[str, Any]) -> float:
    value = entry.get("external") or entry.get("autoattack_acc")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("-inf")


def leaderboard_table(dataset: str, threat_model: str = "Linf", ours: dict[str, Any] | None = None,
                      snapshot: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Leaderboard rows ranked by ``external`` if present else ``autoattack_acc`` (RobustBench's rule),
    with ``ours`` (``name``, ``clean_acc``, ``autoattack_acc``, ``architecture``, ``additional_data``)
    inserted and flagged ``ours=True``. Each row also carries the snapshot's ``source`` and ``date``."""
    snap = snapshot or load_leaderboard()
    key = f"{dataset}/{threat_model}"
    if key not in snap["entries"]:
        raise ValueError(f"no {key} leaderboard in the snapshot; available: {sorted(snap['entries'])}")
    rows = [{"model_id": e.get("model_id", ""), "name": e.get("name", ""), "clean_acc": float(e["clean_acc"]),
             "autoattack_acc": float(e["autoattack_acc"]), "score": _score(e),
             "architecture": e.get("architecture", ""), "additional_data": bool(e.get("additional_data")),
             "venue": e.get("venue", ""), "ours": False} for e in snap["entries"][key]]
    if ours is not None:
        rows.append({"model_id": ours.get("name", "ours"), "name": ours.get("paper", ADR_PAPER["name"]),
                     "clean_acc": float(ours["clean_acc"]), "autoattack_acc": float(ours["autoattack_acc"]),
                     "score": float(ours["autoattack_acc"]), "architecture": ours.get("architecture", ""),
                     "additional_data": bool(ours.get("additional_data", False)),
                     "venue": ours.get("venue", "(this run)"), "ours": True})
    rows.sort(key=lambda r: (-r["score"], r["ours"]))  # ties: ours placed after the listed model
    for i, r in enumerate(rows, 1):
        r.update(rank=i, source=snap["source"], date=snap.get("date", ""))
    return rows


def format_leaderboard(rows: list[dict[str, Any]], context: int = 3) -> str:
    """Markdown excerpt: the top ``context`` rows and the rows around ours, with the snapshot source; the
    "ranked by" column is the score the rank follows (``external`` where an entry has a lower one)."""
    mine = [r["rank"] for r in rows if r["ours"]]
    keep = {r["rank"] for r in rows if r["rank"] <= context or any(abs(r["rank"] - m) <= context for m in mine)}
    lines = ["| rank | model | clean | AutoAttack | ranked by | architecture | extra data |",
             "|---|---|---|---|---|---|---|"]
    last = 0
    for r in rows:
        if r["rank"] not in keep:
            continue
        if r["rank"] > last + 1:
            lines.append("| … | | | | | | |")
        mark = "**" if r["ours"] else ""
        ranked = f"{r['score']:.2f}" + (" (external)" if r["score"] != r["autoattack_acc"] else "")
        lines.append(f"| {r['rank']} | {mark}{r['model_id']}{mark} | {r['clean_acc']:.2f} | "
                     f"{r['autoattack_acc']:.2f} | {ranked} | {r['architecture']} | "
                     f"{'yes' if r['additional_data'] else 'no'} |")
        last = r["rank"]
    src = rows[0]["source"] if rows else ""
    where = f"Placement: rank {mine[0]} of {len(rows)}. " if mine else ""
    return "\n".join(lines) + f"\n\n{where}Snapshot: {src}\n"

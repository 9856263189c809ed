"""Markdown tables: the one writer behind every table art-adr prints or saves (evaluation reports, the Table-1
benchmark, the τ×λ sweep, the benchmarks/ scripts). Imports nothing heavy."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["markdown_table", "write_report"]


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], *, pad: bool = False) -> list[str]:
    """The lines of a Markdown table: ``| a | b |``, ``|---|---|``, then one line per row.

    Cells are ``str()``-ed; a ``|`` inside a cell is escaped. Every row must have as many cells as the header.
    ``pad=True`` pads each column to its widest cell (first column left-aligned, the others right-aligned), for a
    table read in a terminal; the Markdown it renders to is the same.

    Example:
        >>> markdown_table(["model", "clean"], [["student", "81.50"]])
        ['| model | clean |', '|---|---|', '| student | 81.50 |']
    """
    head = [_cell(h) for h in header]
    body = [[_cell(c) for c in row] for row in rows]
    for row in body:
        if len(row) != len(head):
            raise ValueError(f"a table row has {len(row)} cells, the header {len(head)}: {row}")
    if not pad:
        return [_line(head), "|" + "---|" * len(head)] + [_line(r) for r in body]
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [_line(_padded(head, widths))] + [rule] + [_line(_padded(r, widths)) for r in body]


def write_report(out: Path, data: dict[str, Any], text: str) -> None:
    """A benchmark's report: ``<out>.json`` (``data``) and ``<out>.md`` (``text``, also printed); the folder is
    made."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    out.with_suffix(".md").write_text(text)
    print(text)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _padded(cells: Sequence[str], widths: Sequence[int]) -> list[str]:
    return [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]

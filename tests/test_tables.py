"""art_adr.tables.markdown_table: the one Markdown-table writer (reports, Table 1, sweep, benchmarks/ scripts)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from art_adr.tables import markdown_table

_CELL = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=6)


def _cells(line: str) -> list[str]:
    """The cells of one Markdown table line (escaped pipes kept in their cell), stripped."""
    parts, cur, i = [], "", 1
    while i < len(line) - 1:
        if line[i] == "\\" and line[i + 1] == "|":
            cur, i = cur + "|", i + 2
            continue
        if line[i] == "|":
            parts.append(cur.strip())
            cur = ""
        else:
            cur += line[i]
        i += 1
    return parts + [cur.strip()]


@given(st.integers(1, 5).flatmap(lambda n: st.tuples(st.lists(_CELL, min_size=n, max_size=n),
                                                     st.lists(st.lists(_CELL, min_size=n, max_size=n), max_size=4))),
       st.booleans())
def test_round_trip(table, pad):
    header, rows = table
    lines = markdown_table(header, rows, pad=pad)
    assert len(lines) == 2 + len(rows)
    assert set(lines[1]) <= {"|", "-"} and lines[1].count("|") == len(header) + 1
    assert [_cells(line) for line in [lines[0], *lines[2:]]] == [[c.strip() for c in r] for r in [header, *rows]]
    if pad:  # a terminal table: every line as wide as the rule
        assert len({len(line) for line in lines}) == 1


def test_exact_text():
    assert markdown_table(["model", "clean"], [["student", 81.5]]) == [
        "| model | clean |", "|---|---|", "| student | 81.5 |"]
    assert markdown_table(["a", "bb"], [["xyz", 1]], pad=True) == ["| a   | bb |", "|-----|----|", "| xyz |  1 |"]


def test_ragged_row_is_an_error():
    with pytest.raises(ValueError, match="2 cells, the header 3"):
        markdown_table(["a", "b", "c"], [["1", "2"]])

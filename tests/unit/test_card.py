"""Markdown tables of the model card (tasks/card.py): numbers right-aligned, a '|' inside a
cell escaped so it cannot split the row."""

from __future__ import annotations

from tasks.card import _table


def test_table_escapes_pipes_and_aligns_numbers():
    """Check that a '|' in a cell is escaped, numbers are right-aligned (not the first column)
    and floats are printed with four significant digits."""
    lines = _table(["name", "rows", "cost", "note"],
                   [["a|b", 10, 0.123456, "x | y"], ["c", 2, None, None]])
    assert lines[0] == "| name | rows | cost | note |"
    assert lines[1] == "|---|---:|---:|---|"
    assert lines[2] == "| a\\|b | 10 | 0.1235 | x \\| y |"
    assert lines[3] == "| c | 2 |  |  |"
    assert all(line.count("|") - line.count("\\|") == 5 for line in lines)


def test_table_without_rows_is_a_header():
    """Check that a table with no rows is a header and a left-aligned rule."""
    assert _table(["a", "b"], []) == ["| a | b |", "|---|---|"]

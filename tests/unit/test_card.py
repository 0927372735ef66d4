"""Markdown tables of the model card (tasks/registry/model_card.py): numbers right-aligned, a '|'
inside a
cell escaped so it cannot split the row."""

from __future__ import annotations

from tasks.registry.model_card import _table


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


def test_card_says_which_rows_of_a_source_it_was_trained_on():
    """Check that the model card names a source's window and the `since` of a drift
    retraining, and says nothing of the kind for a plain file."""
    from tasks.registry.model_card import card_window

    lineage = {"as_of": "2025-04-14T00:00:00+00:00", "kind": "directory", "source": "/d/tx",
               "window": "56d", "time_column": "event_time", "since": None}
    assert card_window(lineage)[0].startswith("Rows: the last 56d of `/d/tx` up to 2025-04-14")
    assert "since a recall drift" not in card_window(lineage)[0]
    drifted = card_window({**lineage, "since": "2025-03-10T01:13:23+00:00"})[0]
    assert "from 2025-03-10T01:13:23+00:00 on (the rows since a recall drift)" in drifted
    assert card_window({**lineage, "kind": "file", "time_column": None}) == []


PAYLOAD = "x</script><script>alert(1)</script>"


def test_names_from_data_never_become_html_in_the_card():
    """Check that a column, label or category name holding HTML reaches the card escaped in a
    table and inside a code span (backticks in it included), never as markup."""
    from tasks.registry.model_card import _code, card_intro

    assert "<script>" not in "\n".join(_table(["feature"], [[PAYLOAD]]))
    meta = {"config": {"name": "m", "data": "a`b.csv"}, "trained_at": "t",
            "fingerprints": {"rows": 3},
            "schema": {"label": PAYLOAD, "positive": "1", "negative": "0"}}
    intro = "\n".join(card_intro(meta))
    assert f"`{PAYLOAD}`" in intro  # inside a code span, HTML is shown as text
    assert "``a`b.csv``" in intro
    assert _code("`x`") == "`` `x` ``"

"""Progress of the strategy search (tasks/search/progress.py): plain log lines without a terminal,
a rich bar in one, and nothing that can stop the search."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from tasks.search.progress import SearchProgress, format_seconds


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_plain_lines_with_elapsed_and_remaining_time(caplog):
    """Check that without a terminal it logs the first fit, then at most one line per
    interval, then the last, with elapsed and remaining time from the rate so far."""
    clock = Clock()
    progress = SearchProgress(terminal=False, artifact=False, log_every_s=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="tasks.search.progress"):
        progress.start(10)
        for k in range(10):
            clock.now += 3
            progress.advance("hgb|none|none", k % 5)
        progress.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "Strategy search: 10 fits (candidates x folds) to run"
    assert lines[1] == ("Strategy search: 1/10 fits (hgb|none|none fold 1), 3 s elapsed, "
                        "about 27 s left")
    assert "5/10" in lines[2] and "10/10" in lines[-2]
    assert len(lines) == 6  # start, fits 1, 5 (after 12 s), 9 (after 12 s more), 10, done
    assert lines[-1] == "Strategy search: 10 of 10 fits in 30 s"


def test_skipped_fits_are_reported_at_finish(caplog):
    """Check that finishing early (time budget) says how many fits did not run."""
    progress = SearchProgress(terminal=False, artifact=False, clock=Clock())
    with caplog.at_level(logging.INFO, logger="tasks.search.progress"), progress:
        progress.start(6)
        progress.advance("a", 0)
    assert caplog.records[-1].getMessage().endswith("(5 not run)")


def test_terminal_bar_draws_and_returns_the_consoles(monkeypatch):
    """Check that in a terminal a rich bar counts the fits and the Prefect console handlers
    get their own consoles back afterwards."""
    import tasks.runtime._prefect_console as prefect_console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)

    class Shared:
        def __enter__(self):
            return console

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(prefect_console, "shared_prefect_console", Shared)
    progress = SearchProgress(terminal=True, artifact=False)
    progress.start(4)
    for k in range(4):
        progress.advance("logreg|none|balanced", k)
    assert progress.bar.tasks[0].completed == 4
    progress.finish()
    assert progress.bar is None and "4/4" in out.getvalue()


def test_advance_before_start_is_ignored():
    """Check that a reporter never started ignores fits and finish (no error)."""
    progress = SearchProgress(terminal=False, artifact=False)
    progress.advance("a", 0)
    progress.finish()


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (59.4, "59 s"), (61, "1:01"),
                                           (3600, "60:00")])
def test_format_seconds(seconds, text):
    """Check that durations read as seconds, or minutes:seconds from a minute on."""
    assert format_seconds(seconds) == text

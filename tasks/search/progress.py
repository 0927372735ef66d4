"""Progress of the strategy search: candidates × folds fitted, elapsed and remaining time.

:class:`SearchProgress` is told ``start(total)``, ``advance(candidate, fold)`` after each fold
fit and ``finish()``; it knows nothing of the loop that calls it. It reports to

* a terminal: a rich progress bar with elapsed and remaining time (on stderr);
* no terminal (CI, a worker's log): plain log lines, at most one per ``log_every_s`` seconds
  (and the first and last fit);
* the Prefect UI, inside a run: a progress artifact updated in place (at most once a second).

While the bar is drawn, Prefect's console log lines are printed through the bar's console
(:func:`tasks.runtime._prefect_console.shared_prefect_console`), so they scroll above it instead of
tearing it.
"""

from __future__ import annotations

import contextlib
import logging
import time

logger = logging.getLogger(__name__)

ARTIFACT_EVERY_S = 1.0
LOG_EVERY_S = 10.0


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class SearchProgress:
    """Reports candidate × fold fits as they finish.

    Args:
        title: What is being fitted, for every sink.
        terminal: Draw a rich bar (default: when stderr is a terminal).
        artifact: Publish a Prefect progress artifact (only inside a flow or task run).
        log_every_s: Least seconds between two plain log lines.
        clock: Seconds, monotonic (tests give their own).
    """

    def __init__(self, title: str = "Strategy search", *, terminal: bool | None = None,
                 artifact: bool = True, log_every_s: float = LOG_EVERY_S,
                 clock=time.monotonic):
        self.title = title
        self.terminal = terminal
        self.artifact = artifact
        self.log_every_s = log_every_s
        self.clock = clock
        self.total = self.done = 0
        self.started = self.last_log = self.last_artifact = None
        self.bar = self.task_id = self.artifact_id = None
        self._routing = None

    # -- what callers use ---------------------------------------------------------------
    def start(self, total: int) -> None:
        """Begin: ``total`` fits expected."""
        self.total, self.done = int(total), 0
        self.started = self.last_log = self.clock()
        if self.terminal is None:
            from rich.console import Console

            self.terminal = Console(stderr=True).is_terminal
        if self.terminal:
            self._start_bar()
        if self.bar is None:
            logger.info("%s: %d fits (candidates x folds) to run", self.title, self.total)
        if self.artifact:
            self._start_artifact()

    def advance(self, candidate: str, fold: int) -> None:
        """One fit finished (``fold`` counts from 0)."""
        if self.started is None:
            return
        self.done += 1
        now = self.clock()
        if self.bar is not None:
            self._draw(completed=self.done,
                       description=f"{self.title}: {candidate} fold {fold + 1}")
        if self.bar is None and (self.done in (1, self.total)
                                 or now - self.last_log >= self.log_every_s):
            self.last_log = now
            logger.info("%s", self.line(candidate, fold, now))
        if self.artifact_id is not None and (self.done == self.total
                                             or now - self.last_artifact >= ARTIFACT_EVERY_S):
            self._update_artifact(now)

    def finish(self) -> None:
        """Done (also when the budget stopped the search early)."""
        if self.started is None:
            return
        elapsed = self.clock() - self.started
        if self.bar is not None:
            self._draw(completed=self.done)
            self._stop_bar()
        skipped = self.total - self.done
        logger.info("%s: %d of %d fits in %s%s", self.title, self.done, self.total,
                    format_seconds(elapsed), f" ({skipped} not run)" if skipped else "")
        if self.artifact_id is not None:
            self._update_artifact(self.clock(), final=True)
        self.started = None

    def __enter__(self) -> SearchProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.finish()

    # -- what it shows ------------------------------------------------------------------
    def remaining(self, now: float) -> float | None:
        """Seconds left at the rate so far (None before the first fit)."""
        if not self.done:
            return None
        return (now - self.started) / self.done * (self.total - self.done)

    def line(self, candidate: str, fold: int, now: float) -> str:
        left = self.remaining(now)
        return (f"{self.title}: {self.done}/{self.total} fits ({candidate} fold {fold + 1}), "
                f"{format_seconds(now - self.started)} elapsed"
                + (f", about {format_seconds(left)} left" if left is not None else ""))

    def _start_bar(self) -> None:
        from rich.default_styles import DEFAULT_STYLES
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.theme import Theme

        from tasks.runtime._prefect_console import shared_prefect_console

        self._routing = contextlib.ExitStack()
        try:
            console = self._routing.enter_context(shared_prefect_console())
            # the bar's own styles, under the log handlers' theme (which lacks them)
            console.push_theme(Theme({k: v for k, v in DEFAULT_STYLES.items()
                                      if k.startswith(("bar.", "progress."))}))
            self._routing.callback(console.pop_theme)
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("fits"), TimeElapsedColumn(),
                                TextColumn("left"), TimeRemainingColumn(), console=console,
                                transient=False)
            self.task_id = self.bar.add_task(self.title, total=self.total)
            self.bar.start()
        except Exception as exc:  # a display problem never stops the search
            self._give_up_bar(exc)

    def _draw(self, **fields) -> None:
        try:
            self.bar.update(self.task_id, **fields)
        except Exception as exc:  # a display problem never stops the search
            self._give_up_bar(exc)

    def _stop_bar(self) -> None:
        with contextlib.suppress(Exception):
            self.bar.stop()
        self._routing.close()
        self.bar = None

    def _give_up_bar(self, exc: Exception) -> None:
        logger.warning("No progress bar (%s: %s); progress goes to the log instead",
                       type(exc).__name__, exc)
        if self.bar is not None:
            self._stop_bar()
        else:
            self._routing.close()

    def _start_artifact(self) -> None:
        from prefect.artifacts import create_progress_artifact
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        try:
            self.artifact_id = create_progress_artifact(
                progress=0.0, key="strategy-search-progress",
                description=f"{self.title}: {self.total} fits (candidates x folds)")
            self.last_artifact = self.clock()
        except Exception as exc:  # progress must never stop the search
            logger.warning("No progress artifact: %s", exc)

    def _update_artifact(self, now: float, *, final: bool = False) -> None:
        from prefect.artifacts import update_progress_artifact

        self.last_artifact = now
        percent = 100.0 if final or not self.total else 100.0 * self.done / self.total
        try:
            update_progress_artifact(artifact_id=self.artifact_id, progress=percent)
        except Exception as exc:  # progress must never stop the search
            logger.warning("Progress artifact not updated: %s", exc)
            self.artifact_id = None

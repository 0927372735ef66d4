"""The terminal's log filter of a command-line run: an error rareflow reports itself (one line,
at the end) is not printed again by each of Prefect's run loggers."""

from __future__ import annotations

import logging

from schemas.errors import RareflowError

RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine",
               "prefect.flow_engine")


class QuietExpectedErrors(logging.Filter):
    """Keep errors rareflow reports itself in one line (at the end) off the terminal.

    Prefect logs such an error three or four times (the task run failed, the task's final
    state, the flow run failed, the flow's final state), each with the whole message: this
    filter, on the terminal's handlers, drops the records that carry it or repeat its text.
    The API's handler (a real server's UI) still gets them.
    """

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(RUN_LOGGERS):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RareflowError):
            text = str(exc)
            self.seen.update({text, repr(text)[1:-1]})
            return False
        message = record.getMessage()
        if any(f"exception {name}: " in message or f"exception: {name}: " in message
               for name in _error_names(RareflowError)):  # a final state's message
            return False
        return not any(text in message for text in self.seen)


def _error_names(cls: type) -> set[str]:
    """The names of ``cls`` and its subclasses (as Prefect's state messages print them)."""
    return {cls.__name__}.union(*(_error_names(sub) for sub in cls.__subclasses__()))


class _TerminalFilterInstaller(logging.Filter):
    """On the run loggers: puts :class:`QuietExpectedErrors` on the root logger's handlers
    (the terminal), once Prefect has configured them, before the first record reaches them."""

    def __init__(self, quiet: QuietExpectedErrors):
        super().__init__()
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.logging.handlers import PrefectConsoleHandler

        for handler in logging.getLogger().handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.addFilter(self.quiet)  # once: addFilter skips a filter it has
        return True


_TERMINAL_FILTER = _TerminalFilterInstaller(QuietExpectedErrors())


def quiet_expected_errors() -> None:
    """Print each error rareflow reports itself once: filter the terminal's copies."""
    for name in RUN_LOGGERS:
        logging.getLogger(name).addFilter(_TERMINAL_FILTER)

"""A shortcut through Prefect's console log handlers, and why.

* :func:`shared_prefect_console`: Prefect's console log handlers print through one rich
  console while a progress bar is drawn on it.

Each shortcut here names the versions it was checked against (``CHECKED_AGAINST``);
``tests/unit/test_library_internals.py`` holds its upgrade test, which fails loudly when the
library stops doing what it relies on. After a dependency upgrade: run those tests,
re-measure if one fails, and update ``CHECKED_AGAINST``.
"""

from __future__ import annotations

import contextlib
import logging

CHECKED_AGAINST = {"prefect": "3.9"}


# -- Prefect: its console log handlers, under a progress bar -----------------------------------
def _all_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [obj for obj in logging.Logger.manager.loggerDict.values()
                                       if isinstance(obj, logging.Logger)]
    seen, out = set(), []
    for lg in loggers:
        for handler in lg.handlers:
            if id(handler) not in seen:
                seen.add(id(handler))
                out.append(handler)
    return out


@contextlib.contextmanager
def shared_prefect_console():
    """Yield the rich Console every Prefect console log handler prints through while inside.

    Why: a rich progress bar redraws itself in place; a log line printed by another Console
    onto the same terminal is overwritten or tears the bar. Prefect's console handlers each
    own a Console, so while the bar is drawn they all print through the bar's (the first
    handler's, which keeps Prefect's colours): rich then prints each line above the bar.
    The handlers get their own consoles back on leaving (also on errors).

    Relies on: ``prefect.logging.handlers.PrefectConsoleHandler`` printing every record with
    ``self.console.print(...)``, ``console`` being a ``rich.console.Console`` attribute set
    in ``__init__`` (Prefect 3.9), and ``logging.Logger.manager.loggerDict`` listing the
    loggers (the standard library).
    """
    from prefect.logging.handlers import PrefectConsoleHandler
    from rich.console import Console

    handlers = [h for h in _all_handlers() if isinstance(h, PrefectConsoleHandler)
                and isinstance(getattr(h, "console", None), Console)]
    shared = handlers[0].console if handlers else Console(stderr=True)
    saved = [(h, h.console) for h in handlers]
    for handler in handlers:
        handler.console = shared
    try:
        yield shared
    finally:
        for handler, console in saved:
            handler.console = console

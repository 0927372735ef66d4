"""The Prefect server a command's flows use: Prefect's temporary one, started when the command
starts and stopped at exit (the low-level start is ``tasks/runtime/_temporary_server.py``)."""

from __future__ import annotations

import atexit
import logging


class FlowServer:
    """The Prefect server a command's flows use: Prefect's temporary one, started when the
    command starts (so it boots while the command imports), unless PREFECT_API_URL is set.

    Call :meth:`activate` right before the first flow: it waits until the server answers and
    points Prefect at it for the rest of the process; the server stops at exit, after
    Prefect has sent its last logs and events. If it does not come up, Prefect starts its
    own as usual.
    """

    def __init__(self):
        from tasks.runtime._temporary_server import start_temporary_server

        self.server = start_temporary_server()
        self.active, self.settings = False, None
        if self.server is not None:
            atexit.register(self.server.stop)

    def activate(self) -> None:
        if self.server is None or self.active:
            return
        from prefect.settings import get_current_settings

        settings = get_current_settings()
        if settings.api.url or not settings.server.ephemeral.enabled:  # e.g. from a profile
            self.server.stop()
            self.server = None
            return
        timeout = settings.server.ephemeral.startup_timeout_seconds
        if not self.server.ready(timeout):
            logging.getLogger(__name__).warning(
                "Prefect's temporary server did not start on port %d; Prefect starts its own",
                self.server.port)
            self.server.stop()
            self.server = None
            return
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

        # kept (a dropped generator context would exit): in force for the rest of the process;
        # no UI URL: "View at <url>" would name a server that stops with the command
        self.settings = temporary_settings(updates={PREFECT_API_URL: self.server.api_url,
                                                    PREFECT_UI_URL: ""})
        self.settings.__enter__()
        self.active = True

"""Prefect's temporary API server, started when a command starts rather than at its first API
call, so that it boots (in its own process, on the other core) while the command imports.

Why: without ``PREFECT_API_URL`` every ``rareflow`` command runs its flows on Prefect's
temporary (ephemeral) server, which Prefect starts at the first API call: after the command
has imported Prefect, scikit-learn, pandas, evidently... and after importing Prefect's own
server modules in the command's process. In ``rareflow monitor`` on 100,000 rows the imports
and the server start were two thirds of the process time, one after the other. Started
first, the server boots while the command imports; Prefect is then pointed at it
(``temporary_settings(PREFECT_API_URL=...)``) and never imports its server modules here.

This module imports nothing heavy (no Prefect, no scikit-learn) so the server can start
within the command's first second. It is one of rareflow's shortcuts through a library's
internals (each lives in a private module of its stage): it runs the command Prefect runs for
its temporary server.

Relies on: ``prefect.server.api.server.SubprocessASGIServer._run_uvicorn_command`` running
``python -m uvicorn --app-dir <site-packages> --factory
prefect.server.api.server:create_app --host 127.0.0.1 --port P --log-level error --lifespan
on`` with ``EPHEMERAL_SERVER_ENV`` added to the environment (Prefect 3.9; the upgrade test is
in ``tests/unit/test_library_internals.py``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKED_AGAINST = {"prefect": "3.9"}

EPHEMERAL_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                        "PREFECT__SERVER_FINAL": "1"}
FALSE = ("0", "false", "no", "off")


def uvicorn_command(port: int) -> list[str]:
    """The command Prefect runs for its temporary server, on ``port``."""
    prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent
    return [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent),
            "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "error", "--lifespan", "on"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryServer:
    """Prefect's temporary API server in a subprocess (see :func:`start_temporary_server`)."""

    def __init__(self, process: subprocess.Popen, port: int):
        self.process, self.port = process, port

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def ready(self, timeout: float) -> bool:
        """Wait until the server answers /health (False: it exited or did not answer)."""
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                        return True
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Terminate the server (killed after 5 s), as Prefect stops its own."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def private_prefect_home() -> dict[str, str]:
    """The environment that gives a command-line run a Prefect home of rareflow's own
    (``prefect`` in :func:`tasks.runtime.user_dirs.cache_dir`), or {} when the user chose otherwise.

    Without it, the temporary server's database would be ``~/.prefect/prefect.db``, the one
    the user's own ``prefect server start`` uses: its UI would list every throwaway run of
    rareflow. Left alone: ``PREFECT_API_URL`` or ``PREFECT_HOME`` in the environment, or an
    API URL or a home from Prefect's other sources (the active profile, ``prefect.toml``,
    ``.env``), as Prefect's own settings resolve them. The user's profiles file stays in
    force (``PREFECT_PROFILES_PATH``), so their other settings still apply, and so does their
    ``logging.yml`` if they have one.
    """
    if os.environ.get("PREFECT_API_URL") or os.environ.get("PREFECT_HOME"):
        return {}
    from tasks.runtime.user_dirs import cache_dir

    base = cache_dir()
    if base is None:
        return {}
    from prefect.settings import Settings  # imports Prefect: its settings are read below

    settings = Settings()
    if settings.api.url or "home" in settings.model_fields_set:
        return {}
    updates = {"PREFECT_HOME": str(base / "prefect"),
               "PREFECT_PROFILES_PATH": str(settings.profiles_path)}
    if Path(settings.logging.config_path).is_file():
        updates["PREFECT_LOGGING_CONFIG_PATH"] = str(settings.logging.config_path)
    return updates


def use_private_prefect_home() -> dict[str, str]:
    """Put :func:`private_prefect_home` in force for this process (its settings are read
    again) and the servers and workers it starts; returns what was set."""
    updates = private_prefect_home()
    if updates:
        from prefect.context import refresh_global_settings_context

        from tasks.runtime.user_dirs import private_dir

        try:
            private_dir(Path(updates["PREFECT_HOME"]))
        except OSError as exc:  # e.g. a read-only home: Prefect's own default, as before
            logger.warning("Cannot use %s as rareflow's Prefect home (%s); using Prefect's "
                           "default home", updates["PREFECT_HOME"], exc.strerror or exc)
            return {}
        os.environ.update(updates)
        refresh_global_settings_context()
    return updates


def start_temporary_server(env: dict | None = None) -> TemporaryServer | None:
    """Start Prefect's temporary server now, unless ``PREFECT_API_URL`` or
    ``PREFECT_SERVER_EPHEMERAL_ENABLED=false`` is in the environment (None then).

    The caller must still check Prefect's settings (a profile can set an API URL too) before
    using it, and stop it when that says so.
    """
    env = dict(os.environ if env is None else env)
    if env.get("PREFECT_API_URL") or \
            env.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "").lower() in FALSE:
        return None
    port = free_port()
    process = subprocess.Popen(uvicorn_command(port), env={**env, **EPHEMERAL_SERVER_ENV},
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return TemporaryServer(process, port)

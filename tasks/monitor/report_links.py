"""Links from the Prefect UI to the files monitoring writes (evidently HTML reports).

A browser refuses to open a ``file://`` link from a page served over http (the Prefect UI),
so report links point at a small static file server over the registry folder
(``rareflow reports serve``, :mod:`tasks.monitor.reports_server`) whose address the runs know from
``RAREFLOW_REPORTS_URL``. Without it, the UI shows the file's path and how to serve it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import quote

from schemas.config import REPORTS_PORT, REPORTS_URL_ENV
from schemas.errors import ConfigError

logger = logging.getLogger(__name__)

# <root>/<name>/versions/<version>/reports/<run>/<file>: the part under the registry root
LAYOUT_DEPTH = 6


def reports_base_url(env: dict | None = None) -> str | None:
    """The base URL of the reports server, from ``RAREFLOW_REPORTS_URL`` (None if unset).

    Raises:
        ConfigError: it is set but is not an http(s) URL.
    """
    value = (os.environ if env is None else env).get(REPORTS_URL_ENV, "").strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{REPORTS_URL_ENV} must be an http(s) URL such as "
                          f"http://127.0.0.1:{REPORTS_PORT}; got {value!r}")
    return value.rstrip("/")


def registry_relative(path: str | Path) -> str | None:
    """A report's path under the registry root (name/versions/v/reports/run/file), or None."""
    parts = Path(path).resolve().parts
    tail = parts[-LAYOUT_DEPTH:]
    if len(tail) < LAYOUT_DEPTH or tail[1] != "versions" or tail[3] != "reports":
        return None
    return "/".join(tail)


def report_url(path: str | Path, *, base: str | None) -> str | None:
    """The http URL of a report file on the reports server at ``base``, or None."""
    relative = registry_relative(path)
    if base is None or relative is None:
        return None
    return f"{base}/{quote(relative)}"


def report_link_markdown(paths: dict[str, str], *, base: str | None) -> str:
    """Markdown links to the HTML reports, or their paths and how to reach them."""
    html = {name: p for name, p in paths.items() if str(p).endswith(".html")}
    if base is not None:
        return " | ".join(f"[{name}]({report_url(p, base=base) or Path(p).resolve()})"
                          for name, p in html.items())
    listed = ", ".join(f"`{Path(p).resolve()}`" for p in html.values())
    return (f"{listed} (files on the machine that ran this flow; a browser does not open "
            "file links from the UI: run `rareflow reports serve --registry <registry>` and "
            f"set {REPORTS_URL_ENV} for the runs to link them here)")

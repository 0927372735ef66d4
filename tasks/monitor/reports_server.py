"""The reports server (``rareflow reports serve``): monitoring reports over http, nothing else.

Anyone who can write the registry folder (but cannot read the signing key) must not be able to
use the server to read other files. So a request is served only when:

- its path is ``<name>/versions/<version>/reports/<run>/<file>`` (the layout monitoring
  writes, :data:`tasks.monitor.report_links.LAYOUT_DEPTH` parts) with a report file's suffix;
- every folder on the way is a real folder and the file a regular file with one link, each
  opened relative to its parent without following a symbolic link (``O_NOFOLLOW`` on directory
  file descriptors, so a link swapped in between the check and the read is refused as well);
- the response tells the browser to sandbox it (``Content-Security-Policy: sandbox
  allow-scripts``: the evidently report's scripts run in an origin of their own and cannot read
  the server) and not to guess its type (``X-Content-Type-Options: nosniff``).

Everything else (a model, the reference rows, metadata, a symlink to a key or to
``/proc/self/environ``, a directory listing) answers 404.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import stat
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from schemas.config import REPORTS_PORT
from schemas.errors import ConfigError
from tasks.monitor.report_links import LAYOUT_DEPTH

logger = logging.getLogger(__name__)

REPORT_SUFFIXES = frozenset({".html", ".json", ".png"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "sandbox allow-scripts",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)


def report_parts(url_path: str) -> list[str] | None:
    """The path's parts when it names a report file in the registry's layout, else None."""
    parts = unquote(urlsplit(url_path).path).split("/")[1:]
    if len(parts) != LAYOUT_DEPTH or parts[1] != "versions" or parts[3] != "reports":
        return None
    if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        return None
    if Path(parts[-1]).suffix.lower() not in REPORT_SUFFIXES:
        return None
    return parts


def open_report(root_fd: int, parts: list[str]) -> int | None:
    """A file descriptor of the report at ``parts`` under ``root_fd``, or None when any part
    is a symbolic link, not a folder on the way, or not a regular single-link file."""
    fds = []
    try:
        fd = root_fd
        for part in parts[:-1]:
            fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            fds.append(fd)
        file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    except OSError:  # ELOOP for a symlink, ENOTDIR, ENOENT, EACCES
        return None
    finally:
        for opened in fds:
            os.close(opened)
    info = os.fstat(file_fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(file_fd)
        return None
    return file_fd


class ReportsHandler(BaseHTTPRequestHandler):
    """GET/HEAD of report files only; the server's ``root_fd`` is the registry folder."""

    server_version = "rareflow-reports"

    def log_message(self, format, *args):  # noqa: A002 - the standard library's name
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self):  # noqa: N802 - the standard library's name
        self._answer(body=True)

    def do_HEAD(self):  # noqa: N802 - the standard library's name
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        parts = report_parts(self.path)
        fd = None if parts is None else open_report(self.server.root_fd, parts)
        if fd is None:
            self._headers(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", 10)
            if body:
                self.wfile.write(b"not found\n")
            return
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
        kind = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
        if kind.startswith("text/") or kind == "application/json":
            kind += "; charset=utf-8"
        self._headers(HTTPStatus.OK, kind, len(data))
        if body:
            self.wfile.write(data)

    def _headers(self, status: HTTPStatus, kind: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()


class ReportsServer(ThreadingHTTPServer):
    """A threading http server holding the registry folder open as ``root_fd``."""

    daemon_threads = True

    def __init__(self, root: Path, address: tuple[str, int]):
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            super().__init__(address, ReportsHandler)
        except OSError:
            os.close(self.root_fd)
            raise

    def server_close(self):
        super().server_close()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1


def make_server(root: str | Path, *, host: str = "127.0.0.1",
                port: int = REPORTS_PORT) -> ReportsServer:
    """The reports server over the registry folder ``root`` (see the module's docstring).

    Raises:
        ConfigError: the folder does not exist or the port is taken.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"registry folder {str(root)!r} does not exist; pass --registry "
                          "or set RAREFLOW_REGISTRY")
    try:
        return ReportsServer(root.resolve(), (host, port))
    except OSError as exc:
        raise ConfigError(f"cannot serve reports on {host}:{port} ({exc}); pick another "
                          "port with --port") from exc

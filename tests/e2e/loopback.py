"""Servers the end-to-end tests start on 127.0.0.1 (moto, Azurite, fake-gcs-server) and the
documented command blocks they run against them: start, wait until the port answers, stop by
process id; and a docs block run as written with its server's port and folders swapped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

START_S = 60
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(command: list[str], *, port: int, log: Path, env: dict | None = None):
    """Start ``command`` (its output in ``log``), wait until ``port`` answers, yield its
    process, stop it by its pid (terminate, then kill)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                env=env if env is not None else os.environ.copy())
    try:
        deadline = time.monotonic() + START_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{Path(command[0]).name} did not start: "
                                   f"{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run_documented_loop(doc: Path, heading: str, *, port: str, server: str, skip: tuple,
                        env: dict, tmp_path: Path, venv_bin: str) -> str:
    """Run the command block under ``heading`` of ``doc`` as written, but on a free port in
    place of ``port``, ``tmp_path`` in place of /tmp and the test's venv; the line starting
    the server (holding ``server``) is waited for and the server killed with the block's
    process group. Lines starting with ``skip`` (installs) are left out. Returns the output.

    Raises:
        AssertionError: the block failed (its last output).
    """
    from tests.doc_blocks import block_after

    free = free_port()
    script = ["set -eu"]
    for line in block_after(doc, heading):
        if line.startswith(skip):
            continue
        script.append(line.replace(port, str(free)).replace("/tmp/", f"{tmp_path}/")
                      .replace(".venv/bin/", f"{venv_bin}/"))
        if server in line:
            script += ["SERVER=$!", "trap 'kill $SERVER' EXIT",
                       f"for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/{free}) "
                       "2>/dev/null && break; sleep 0.2; done"]
    proc = subprocess.Popen(["bash", "-c", "\n".join(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
                            start_new_session=True)  # its own group: the server ends with it
    try:
        out = proc.communicate(timeout=600)[0]
    finally:  # whatever ended the wait: nothing of the block's group outlives it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == 0, out[-4000:]
    return out

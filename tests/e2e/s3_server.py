"""A local S3-protocol server for tests: moto's standalone server (``python -m moto.server``)
on a free 127.0.0.1 port, a real HTTP S3 API (conditional writes included), stopped by its
process id. Fake credentials only."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

FAKE_KEY_ID = "AKIARAREFLOWTESTKEY0"
FAKE_SECRET = "rareflow-test-secret-9f8e7d6c5b4a39281706"
START_S = 60


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str
    pid: int

    def env(self) -> dict[str, str]:
        """The environment a process needs to reach this server (standard AWS variables)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": FAKE_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def new_bucket(self) -> str:
        """A fresh bucket (one per test keeps tests apart)."""
        import boto3

        name = f"rf-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=FAKE_KEY_ID,
                     aws_secret_access_key=FAKE_SECRET,
                     region_name="us-east-1").create_bucket(Bucket=name)
        return name

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=FAKE_KEY_ID,
                            aws_secret_access_key=FAKE_SECRET, region_name="us-east-1")


@contextlib.contextmanager
def running_s3_server(log: Path):
    """Start moto's server, wait until it answers, yield it, stop it by its pid."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"})
    try:
        deadline = time.monotonic() + START_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield S3Server(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

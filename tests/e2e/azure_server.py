"""A local Azure Blob Storage server for tests: Azurite, Microsoft's storage emulator (npm,
installed by .ci/needs-e2e.sh into .ci/azurite), its blob service on a free 127.0.0.1 port,
a real HTTP Blob API (ETag preconditions, shared-key signatures: a wrong key is refused with
403 AuthenticationFailed), stopped by its process id."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.loopback import REPO, free_port, running_server

# Azurite's well-known development account (public, documented by Microsoft; not a secret)
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


def azurite_command() -> str | None:
    """Azurite's blob service: .ci/azurite's (npm ci), else one on PATH."""
    local = REPO / ".ci" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


@dataclass
class AzureServer:
    endpoint: str
    pid: int
    key: str = ACCOUNT_KEY

    def connection_string(self, key: str | None = None) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
                f"AccountKey={key or self.key};BlobEndpoint={self.endpoint};")

    def env(self) -> dict[str, str]:
        """The environment a process needs to reach this server (the variable adlfs and
        rareflow's Azure store both read)."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string()}

    def client(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string())

    def new_container(self) -> str:
        """A fresh container (one per test keeps tests apart)."""
        name = f"rf-{uuid.uuid4().hex[:12]}"
        self.client().create_container(name)
        return name

    def put(self, container: str, key: str, data: bytes) -> None:
        """Overwrite a blob behind rareflow's back (tamper tests)."""
        self.client().get_blob_client(container, key).upload_blob(data, overwrite=True)

    def keys(self, container: str, prefix: str) -> list[str]:
        return sorted(b.name for b in self.client().get_container_client(container)
                      .list_blobs(name_starts_with=prefix))


@contextlib.contextmanager
def running_azure_server(folder: Path):
    """Start Azurite's blob service, wait until it answers, yield it, stop it by its pid."""
    command = azurite_command()
    if command is None:
        raise FileNotFoundError("azurite-blob is not installed: run `npm ci --prefix "
                                ".ci/azurite` (as .ci/needs-e2e.sh does)")
    port = free_port()
    with running_server([command, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                         "--location", str(folder / "data"), "--skipApiVersionCheck",
                         "--disableTelemetry"], port=port, log=folder / "azurite.log") as proc:
        yield AzureServer(f"http://127.0.0.1:{port}/{ACCOUNT}", proc.pid)

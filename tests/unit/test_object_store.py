"""The storage interface on local disk (no server): put-if-absent, compare-and-swap, listing;
the lock-free object registry over it; and the one-line errors of storage settings."""

from __future__ import annotations

import sys

import pytest
from sklearn.linear_model import LogisticRegression

from schemas.errors import ConfigError
from tasks.registry.object_champion import StaleMove
from tasks.registry.object_registry import ObjectRegistry
from tasks.registry.open_registry import open_registry
from tasks.registry.store import Registry
from tasks.runtime.object_store import LocalStore, StorePath, open_store
from tasks.runtime.object_store_api import STORAGE_OPTIONS_ENV, is_remote, storage_options


@pytest.fixture(scope="module")
def model():
    return LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])


def test_local_store_conditional_writes(tmp_path):
    """Check that the local store creates once, swaps only on the tag it was given, lists
    and deletes."""
    store = LocalStore(tmp_path)
    assert store.put_if_absent("a/b.json", b"1") and not store.put_if_absent("a/b.json", b"2")
    data, tag = store.read_tagged("a/b.json")
    assert data == b"1"
    assert store.replace_if("a/b.json", b"3", tag) and not store.replace_if("a/b.json", b"4", tag)
    assert not store.replace_if("a/b.json", b"5", None)
    assert store.replace_if("c.json", b"6", None)
    assert store.list() == ["a/b.json", "c.json"] and store.list("a/") == ["a/b.json"]
    store.delete("c.json")
    assert store.read_tagged("c.json") is None and store.read("a/b.json") == b"3"
    assert [p.name for p in StorePath(store).iterdir()] == ["a"]


@pytest.mark.parametrize("location, remote", [
    ("registry", False), ("/tmp/r", False), ("file:///tmp/r", False),
    ("s3://bucket/reg", True), ("gs://bucket/reg", True)])
def test_which_locations_are_remote(location, remote):
    """Check that local paths and file:// URLs are local, other fsspec URLs remote."""
    assert is_remote(location) is remote
    if not location.startswith("gs://"):  # a GCS client looks for credentials at once
        assert isinstance(open_registry(location, "m"), ObjectRegistry) is remote


def test_folder_registry_refuses_an_object_store_url():
    """Check that the folder registry does not take s3://b/p for a folder named 's3:'."""
    from schemas.errors import RegistryError

    with pytest.raises(RegistryError, match="open_registry"):
        Registry("s3://bucket/reg", "m")


def test_object_registry_on_local_disk(tmp_path, model):
    """Check that the lock-free registry keeps its guarantees over the local store: versions
    listed once signed, a stale swap refused and recorded, history in order."""
    a, b = ObjectRegistry(tmp_path, "m"), ObjectRegistry(tmp_path, "m")
    v1 = a.register(model, {"verdict": {"status": "passed"}})
    a.store.put_if_absent("m/versions/v0002/.claim", b"x")  # a writer killed after its claim
    assert a.version_ids() == [v1]
    v3 = a.register(model, {"verdict": {"status": "passed"}})
    assert v3 == "v0003" and a.version_ids() == [v1, v3]
    assert a.champion() is None and b.champion() is None
    b.promote(v3, reason="b")
    with pytest.raises(StaleMove, match="stale"):
        a.log.move(v1, action="promote", reason="a", forced=False, name="m", status="passed")
    assert ObjectRegistry(tmp_path, "m").champion()["version"] == v3
    assert a.verify(v3)["version"] == v3


@pytest.mark.parametrize("url, message", [
    ("memory://bucket/reg", "conditional writes rareflow implements only for S3"),
    ("s3://", "names no bucket"),
    ("gs://", "names no bucket"),
    ("az://", "names no container"),
    ("gs://-bad-/reg", "not a valid GCS bucket name"),
])
def test_unsupported_registry_urls(url, message):
    """Check that a registry URL rareflow cannot keep its guarantees on is one line."""
    with pytest.raises(ConfigError, match=message):
        open_store(url)


def test_missing_s3fs_names_the_extra(monkeypatch):
    """Check that an s3:// URL without s3fs installed names the extra to install."""
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(ConfigError, match="s3 extra"):
        open_store("s3://bucket/reg")


@pytest.mark.parametrize("module, url, extra", [
    ("azure.storage.blob", "az://container/reg", "azure extra"),
    ("google.cloud.storage", "gs://bucket/reg", "gcs extra"),
])
def test_missing_cloud_client_names_the_extra(monkeypatch, module, url, extra):
    """Check that an az:// or gs:// registry without its client installed names the extra."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError, match=extra):
        open_store(url)


def test_cloud_refusals_name_each_clouds_credentials():
    """Check that a refused or missing credential names the variables of the URL's cloud
    (GCS's 401/403 from google-api-core, Azure's codes, S3's), never a value."""
    from azure.core.exceptions import ClientAuthenticationError
    from google.api_core.exceptions import Forbidden, Unauthorized
    from google.auth.exceptions import DefaultCredentialsError

    from tasks.runtime.object_store_api import storage_problem

    for exc in (Forbidden("no"), Unauthorized("no")):
        assert storage_problem(exc, "gs://b/r").startswith(
            "access denied: check the credentials (GOOGLE_APPLICATION_CREDENTIALS")
    assert "no credentials found: set GOOGLE_APPLICATION_CREDENTIALS" in storage_problem(
        DefaultCredentialsError("none"), "gs://b/r")
    assert "AZURE_STORAGE_ACCOUNT_KEY" in storage_problem(
        ClientAuthenticationError("Server failed to authenticate"), "az://c/r")


def test_no_azure_credential_and_an_expired_gcs_login_say_so():
    """Check that DefaultAzureCredential finding no token (a ClientAuthenticationError with no
    HTTP status) reads "no credentials found" while the service's 403 reads "access denied",
    and that an expired GCS login (google-auth's RefreshError) says to sign in again; neither
    echoes the exception's text."""
    from azure.core.exceptions import ClientAuthenticationError
    from google.auth.exceptions import RefreshError

    from tasks.runtime.object_store_api import storage_problem

    no_token = ClientAuthenticationError(
        "DefaultAzureCredential failed to retrieve a token from the included credentials.")
    assert storage_problem(no_token, "az://c/r").startswith(
        "no credentials found: set AZURE_STORAGE_CONNECTION_STRING")
    refused = ClientAuthenticationError("Server failed to authenticate the request.")
    refused.status_code = 403
    assert storage_problem(refused, "az://c/r").startswith("access denied")
    expired = storage_problem(RefreshError("invalid_grant: token-abc"), "gs://b/r")
    assert expired.startswith("the credentials could not be refreshed") and "abc" not in expired
    assert "gcloud auth application-default login" in expired


def test_azure_endpoint_from_the_url_or_the_options():
    """Check that the Azure store's endpoint keeps a sovereign cloud's suffix from the URL's
    ``@ACCOUNT.dfs...`` host (its blob twin), takes adlfs's ``account_host``, and otherwise
    names the account on the public cloud."""
    from tasks.runtime.azure_store import account_url

    assert account_url("az://c@acct.dfs.core.chinacloudapi.cn/p", {}) == \
        "https://acct.blob.core.chinacloudapi.cn"
    assert account_url("az://c/p", {"account_host": "a.blob.core.usgovcloudapi.net"}) == \
        "https://a.blob.core.usgovcloudapi.net"
    assert account_url("abfs://c@acct/p", {}) == "https://acct.blob.core.windows.net"
    assert account_url("az://c/p", {}) is None


def test_storage_options_never_echoed(monkeypatch):
    """Check that bad RAREFLOW_STORAGE_OPTIONS is one line that does not show the value."""
    monkeypatch.setenv(STORAGE_OPTIONS_ENV, '{"secret": "hunter2"')
    with pytest.raises(ConfigError) as caught:
        storage_options()
    assert "hunter2" not in str(caught.value) and STORAGE_OPTIONS_ENV in str(caught.value)
    monkeypatch.setenv(STORAGE_OPTIONS_ENV, '{"anon": false}')
    assert storage_options() == {"anon": False}


def test_config_storage_options_sit_under_the_environments(monkeypatch):
    """Check that a config's storage_options apply within its run only (a flow, a Dask
    worker), under RAREFLOW_STORAGE_OPTIONS, and that a credential in them (at any depth, any
    case) is refused without showing its value, for every command's config."""
    from pydantic import ValidationError

    from flows.cli_errors import pydantic_message
    from schemas.config import IngestConfig, MonitoringConfig, TrainingConfig
    from schemas.scoring import ScoringConfig
    from tasks.runtime.object_store_api import configured_storage

    monkeypatch.delenv(STORAGE_OPTIONS_ENV, raising=False)
    with configured_storage({"endpoint_url": "http://127.0.0.1:9", "anon": True}):
        assert storage_options() == {"endpoint_url": "http://127.0.0.1:9", "anon": True}
        monkeypatch.setenv(STORAGE_OPTIONS_ENV, '{"anon": false}')
        assert storage_options() == {"endpoint_url": "http://127.0.0.1:9", "anon": False}
    with configured_storage({"client_kwargs": {"region_name": "x", "verify": True}}):
        monkeypatch.setenv(STORAGE_OPTIONS_ENV, '{"client_kwargs": {"verify": false}}')
        assert storage_options() == {"client_kwargs": {"region_name": "x", "verify": False}}
        monkeypatch.setenv(STORAGE_OPTIONS_ENV, '{"anon": false}')
    assert storage_options() == {"anon": False}
    needs = {TrainingConfig: {"label": "y"}, IngestConfig: {"source": "s"},
             MonitoringConfig: {}, ScoringConfig: {}}
    for model, required in needs.items():
        ok = model(data="d", **required, storage_options={"client_kwargs": {"region_name": "x"}})
        assert ok.storage_options == {"client_kwargs": {"region_name": "x"}}
        flag = model(data="d", **required, storage_options='{"anon": true}')  # as the flag
        assert flag.storage_options == {"anon": True}
        with pytest.raises(ValidationError, match="a JSON object"):
            model(data="d", **required, storage_options="anon")
        for bad in ({"Secret": "hunter2"}, {"client_kwargs": {"aws_session_token": "hunter2"}},
                    {"headers": {"Authorization": "hunter2"}}, {"my_api_key": "hunter2"},
                    {"endpoint_url": "https://u:hunter2@host"}, {"hosts": ["s3://u:hunter2@h"]}):
            with pytest.raises(ValidationError, match="is a credential") as caught:
                model(data="d", **required, storage_options=bad)
            assert "hunter2" not in str(caught.value)
            assert "hunter2" not in pydantic_message(caught.value)


def test_sign_refuses_object_storage_in_one_line():
    """Check that `models sign` of an s3:// registry is refused in one line (not silently
    written to a local folder named 's3:')."""
    from schemas.errors import RegistryError
    from tasks.registry.sign_existing import upgrade_registry

    with pytest.raises(RegistryError, match="object storage"):
        upgrade_registry("s3://b/reg", None)

"""The `storage_options` setting: fsspec options for object storage (an endpoint, a region,
anonymous access, ...) that a config file or a deployment's parameters carry.

Credentials never belong there: a run's config is recorded with the version it trains and
shown in the Prefect UI. They come from each cloud's standard chain (the environment such as
``AWS_ACCESS_KEY_ID``, a profile, an instance role) or ``RAREFLOW_STORAGE_OPTIONS``.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import BeforeValidator, Field

# option names (any level, any case) that hold a credential: refused in a config
CREDENTIAL_OPTIONS = frozenset({
    "key", "secret", "token", "password", "passwd", "session_token", "access_key",
    "secret_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
    "account_key", "sas_token", "connection_string", "client_secret", "credential",
    "credentials"})


def _credential_at(options: dict, prefix: str = "") -> str | None:
    for name, value in options.items():
        where = f"{prefix}.{name}" if prefix else str(name)
        if str(name).lower() in CREDENTIAL_OPTIONS:
            return where
        if isinstance(value, dict) and (found := _credential_at(value, where)):
            return found
    return None


def check_storage_options(value):
    """A mapping of fsspec options (or its JSON text, as the flag gives it) with no
    credential in it (empty: none).

    Raises:
        ValueError: not a mapping, or a credential among its options (its value not shown).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict):
        raise ValueError("storage_options must be a mapping of fsspec options (on the command "
                         "line, a JSON object such as '{\"endpoint_url\": "
                         "\"http://127.0.0.1:9000\"}')")
    if found := _credential_at(value):
        raise ValueError(f"storage_options.{found} is a credential, and a config is recorded "
                         "with each version: remove it and give credentials through the "
                         "cloud's standard chain (environment such as AWS_ACCESS_KEY_ID, a "
                         "profile, an instance role) or RAREFLOW_STORAGE_OPTIONS")
    return value


def storage_options_field():
    return Field(default_factory=dict, description="fsspec options for object-storage URLs "
                 "(e.g. `endpoint_url`, `client_kwargs: {region_name: ...}`, `anon`), under "
                 "those of `RAREFLOW_STORAGE_OPTIONS`. No credentials: those come from the "
                 "cloud's standard chain (environment, profile, instance role).")


StorageOptions = Annotated[dict, BeforeValidator(check_storage_options)]

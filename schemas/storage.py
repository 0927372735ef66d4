"""The `storage_options` setting: fsspec options for object storage (an endpoint, a region,
anonymous access, ...) that a config file or a deployment's parameters carry.

Credentials never belong there: a run's config is recorded with the version it trains and
shown in the Prefect UI. They come from each cloud's standard chain (the environment such as
``AWS_ACCESS_KEY_ID``, a profile, an instance role) or ``RAREFLOW_STORAGE_OPTIONS``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import BeforeValidator, Field

# an option (any level, any case) named so, or whose name holds one of the words, holds a
# credential: refused in a config; so is a URL with a user or password in it
CREDENTIAL_NAMES = frozenset({"key", "sas", "auth"})
CREDENTIAL_WORDS = ("secret", "token", "password", "passwd", "credential", "private_key",
                    "api_key", "access_key", "account_key", "session_key", "sas_token",
                    "connection_string", "authorization", "cookie")
URL_WITH_USER = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*@", re.IGNORECASE)


def _credential_at(value, where: str = "") -> str | None:
    """Where in ``value`` (a setting's path) a credential is, if anywhere."""
    if isinstance(value, dict):
        for name, inner in value.items():
            at = f"{where}.{name}" if where else str(name)
            lowered = str(name).lower()
            if lowered in CREDENTIAL_NAMES or any(w in lowered for w in CREDENTIAL_WORDS):
                return at
            if found := _credential_at(inner, at):
                return found
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            if found := _credential_at(inner, f"{where}[{i}]"):
                return found
    elif isinstance(value, str) and URL_WITH_USER.match(value.strip()):
        return where
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

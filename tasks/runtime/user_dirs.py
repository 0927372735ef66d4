"""The user's own folders for rareflow, by the XDG base directory convention: the signing key
lives in the config folder (``$XDG_CONFIG_HOME/rareflow``, default ``~/.config/rareflow``), the
command line's private Prefect home in the cache folder (``$XDG_CACHE_HOME/rareflow``, default
``~/.cache/rareflow``). Both are computed from the environment given, never from a registry."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP = "rareflow"


def _base(env: Mapping[str, str], variable: str, default: str) -> Path | None:
    value = env.get(variable, "")
    if value and Path(value).is_absolute():  # the spec says to ignore relative values
        return Path(value)
    home = env.get("HOME") or env.get("USERPROFILE")
    return Path(home) / default if home else None


def config_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """``$XDG_CONFIG_HOME/rareflow`` (default ``~/.config/rareflow``); None without a home."""
    base = _base(os.environ if env is None else env, "XDG_CONFIG_HOME", ".config")
    return base / APP if base else None


def cache_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """``$XDG_CACHE_HOME/rareflow`` (default ``~/.cache/rareflow``); None without a home."""
    base = _base(os.environ if env is None else env, "XDG_CACHE_HOME", ".cache")
    return base / APP if base else None


def private_dir(path: Path) -> Path:
    """Make ``path`` (and its parents) and leave it readable by its owner only (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path

"""Opening a model's registry by where it lives: a folder (:class:`Registry`) or object storage
(``s3://bucket/prefix``: :class:`ObjectRegistry`, no lock, conditional writes)."""

from __future__ import annotations

from pathlib import Path

from tasks.registry.object_registry import ObjectRegistry
from tasks.registry.store import _AUTO, Registry
from tasks.runtime.object_store_api import is_remote


def open_registry(root: Registry | str | Path, name: str, *, key=_AUTO) -> Registry:
    """Model ``name``'s registry under ``root`` (a folder, a ``file://`` URL or an object-store
    URL); a registry already open is returned as it is."""
    if isinstance(root, Registry):
        return root
    if is_remote(root):
        return ObjectRegistry(root, name, key=key)
    return Registry(root, name, key=key)

"""Fixtures of the unit layer."""

from __future__ import annotations

import pytest


@pytest.fixture
def reg(tmp_path):
    """An empty registry for the model ``fraud`` (signed with the session's key)."""
    from tasks.registry.store import Registry

    return Registry(tmp_path / "registry", "fraud")

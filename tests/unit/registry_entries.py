"""Tiny registry entries for the registry, signing, approval and audit tests: a picklable
stand-in for a fitted model, the two verdicts, one call that registers a version and one that
runs ``rareflow models ...`` in-process (the ``reg`` fixture is in tests/unit/conftest.py)."""

from __future__ import annotations

import pandas as pd

PASSED = {"verdict": {"status": "passed"}}
FAILED = {"verdict": {"status": "failed"}}


class Model:
    """A tiny picklable stand-in for a fitted model."""

    def __init__(self, value):
        self.value = value


def add(reg, value=1, meta=PASSED, **kw) -> str:
    """Register ``Model(value)`` with ``meta``, a two-row reference and a one-line card."""
    reference = pd.DataFrame({"x": [1.0, 2.0], "label": ["0", "1"]})
    return reg.register(Model(value), dict(meta), reference=reference,
                        card="# {version}\n", **kw)


def models_cli(reg, *args: str) -> tuple[int, str]:
    """``rareflow models ARGS --registry ROOT --name NAME`` in-process: exit code, output."""
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["models", *args, "--registry", str(reg.root),
                                      "--name", reg.name])
    return result.exit_code, result.output + result.stderr

"""`rareflow models challenge VERSION | --clear`: name the shadow challenger (scored beside the
champion, never served) or retire it. The record and its rules: tasks/registry/challenger.py."""

from __future__ import annotations

import typer

from flows.cli_errors import reported
from flows.cli_models import models_app, open_registry
from flows.cli_options import ModelName, RegistryDir
from schemas.errors import EXIT_OK, ConfigError


@models_app.command("challenge")
@reported
def models_challenge(version: str = typer.Argument(None, help="The version to shadow the "
                                                   "champion, e.g. v0004."),
                     clear: bool = typer.Option(False, "--clear", help="Retire the current "
                                                "challenger (recorded in history)."),
                     reason: str = typer.Option("named by hand", "--reason",
                                                help="Why (recorded in history)."),
                     registry: RegistryDir = None, name: ModelName = None) -> int:
    """Make a version the shadow challenger (at most one per model): the scorer also scores
    with it, and monitoring promotes it on live matured rows or retires it."""
    from tasks.registry.challenger import challenge, clear_challenger

    if clear == (version is not None):
        raise ConfigError("models challenge takes a VERSION or --clear (one of them): "
                          "`rareflow models challenge v0004` or `--clear`")
    reg = open_registry(registry, name)
    if clear:
        entry = clear_challenger(reg, reason=reason if reason != "named by hand" else
                                 "cleared by hand")
        typer.echo(f"{reg.name}: {entry['version']} is no longer the challenger")
        return EXIT_OK
    entry = challenge(reg, version, reason=reason)
    typer.echo(f"{reg.name}: {entry['version']} is the challenger, shadowing champion "
               f"{entry['champion']} (scored beside it, never served)")
    return EXIT_OK

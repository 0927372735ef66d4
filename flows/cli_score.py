"""`rareflow score`'s summary and `rareflow audit`: which version decided a scored row."""

from __future__ import annotations

import typer

from flows.cli_config import DEFAULT_REGISTRY, project_defaults
from flows.cli_errors import reported
from flows.cli_options import RegistryDir
from schemas.errors import EXIT_OK, ConfigError


def check_score_config(config) -> None:
    """Refuse before any work what the flow would: a file to score needs --out.

    Raises:
        ConfigError: in one line.
    """
    from flows.scoring import is_single_file

    if is_single_file(config.data) and not config.out:
        raise ConfigError(f"--out is required to score the file {config.data!r}: give the "
                          "scored file's path (a folder or glob is scored into "
                          "<source>-scored by default)")


def print_score_result(result: dict, name: str) -> None:
    """What `rareflow score` says: the batch, or each partition newly scored."""
    head = (f"with {name} {result['version']} (threshold {result['threshold']:.4f})")
    if "partitions" not in result:
        typer.echo(f"Scored {result['rows']} rows {head}: {result['flagged']} flagged -> "
                   f"{result['out']}")
        return
    for part in result["partitions"]:
        typer.echo(f"  {part['partition']}  {part['rows']} rows, {part['flagged']} flagged")
    typer.echo(f"Scored {len(result['partitions'])} new partitions ({result['rows']} rows) "
               f"{head}: {result['flagged']} flagged; {result['unchanged']} already scored "
               f"-> {result['out']}")


@reported
def audit(
    row_key: str = typer.Argument(..., help="The row's key: its id column value, or its "
                                  "row_key fingerprint."),
    scored: str = typer.Option(..., "--scored", help="The scored source (the --out folder or "
                               "URL of `rareflow score --data SOURCE`)."),
    registry: RegistryDir = None,
) -> int:
    """Say which version decided a scored row, when, at which threshold, with which
    signature, and whether it was the champion then."""
    from tasks.serving.audit import audit as find_decision

    registry = registry or project_defaults().get("registry") or DEFAULT_REGISTRY
    for line in find_decision(row_key, scored, registry).lines():
        typer.echo(line)
    return EXIT_OK

"""`rareflow models ...` (list, show, promote, approve, reject, roll back, history, sign),
`rareflow keygen` and `rareflow schema infer`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flows.cli_config import DEFAULT_NAME, DEFAULT_REGISTRY, project_defaults
from flows.cli_errors import reported
from flows.cli_options import ModelName, RegistryDir
from schemas.errors import EXIT_OK, EXIT_REJECTED, ConfigError, RegistryError
from schemas.statuses import PENDING

models_app = typer.Typer(no_args_is_help=True,
                         help="List, inspect, promote, roll back, audit and sign versions.")
schema_app = typer.Typer(no_args_is_help=True, help="Schemas for your data.")


def open_registry(registry: str | None, name: str | None):
    """The registry of the flags, else of the project defaults (``RAREFLOW_*``,
    ``rareflow.yaml``), else of the config schema's defaults."""
    from tasks.registry.open_registry import open_registry

    defaults = project_defaults()
    return open_registry(registry or defaults.get("registry", DEFAULT_REGISTRY),
                    name or defaults.get("name", DEFAULT_NAME))


@models_app.command("list")
@reported
def models_list(registry: RegistryDir = None, name: ModelName = None) -> int:
    """Versions with their verdicts and key metrics (* marks the champion); "signature ok"
    once the signature and every file's sha256 (model.joblib's bytes too) verify."""
    reg = open_registry(registry, name)
    table = reg.summaries()
    if table.empty:
        typer.echo(f"no versions of {reg.name!r} in {str(reg.root)!r}")
        return EXIT_OK
    problems = table.pop("problem") if "problem" in table else None
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for problem in [] if problems is None else problems.dropna():
        typer.echo(f"INVALID {problem}")
    return EXIT_OK


@models_app.command("show")
@reported
def models_show(version: str = typer.Argument("champion"), registry: RegistryDir = None,
                name: ModelName = None,
                as_json: bool = typer.Option(False, "--json", help="Print all metadata.")) -> int:
    """Show one version after verifying its signature: its model card (or all metadata with
    --json)."""
    from tasks.registry.store import CARD_FILE

    reg = open_registry(registry, name)
    vid = reg.resolve(version)
    meta = reg.verify(vid)  # a forged or altered version is refused (exit 6)
    card = reg.version_dir(vid) / CARD_FILE
    status = reg.log.status(vid, meta.get("verdict", {}).get("status"))
    decided = reg.log.decision(vid)
    if as_json or not card.is_file():
        typer.echo(json.dumps({**meta, "status_now": status, "decision": decided}, indent=2))
        return EXIT_OK
    typer.echo(card.read_text(encoding="utf-8"))
    if status == PENDING:
        typer.echo(f"Status: pending (awaiting a manual approval): `rareflow models "
                   f"approve|reject {vid} --reason ...`")
    elif decided:
        typer.echo(f"Status: {status} ({decided['decision']} {decided.get('how')} by "
                   f"{decided['actor']} at {decided['at']}: {decided['reason']})")
    return EXIT_OK


@models_app.command("compare")
@reported
def models_compare(versions: list[str] = typer.Argument(..., help="Two or more versions "
                                                        "(ids, champion or latest)."),
                   registry: RegistryDir = None, name: ModelName = None,
                   as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> int:
    """Versions side by side: data, strategy, threshold, test metrics and gates."""
    from tasks.registry.compare import compare_versions

    reg = open_registry(registry, name)
    if len(versions) < 2:
        raise ConfigError("models compare needs two or more versions, e.g. "
                          "`rareflow models compare v0001 v0002`")
    metas = [reg.verify(v) for v in versions]  # edited metadata is refused, never shown
    table = compare_versions(metas, champion=(reg.champion() or {}).get("version"))
    typer.echo(table.to_json(indent=2) if as_json else table.to_string())
    return EXIT_OK


@models_app.command("promote")
@reported
def models_promote(version: str = typer.Argument(...), registry: RegistryDir = None,
                   name: ModelName = None,
                   force: bool = typer.Option(
                       False, "--force", help="Promote although its status is not 'passed' "
                       "(rejected, refused, stale); recorded in history."),
                   reason: str = typer.Option("manual promotion", "--reason",
                                              help="Why (recorded in history).")) -> int:
    """Promote a verified version by hand (recorded with actor and reason; event emitted)."""
    from tasks.registry.champion import announce_move

    reg = open_registry(registry, name)
    entry = reg.promote(version, reason=reason, forced=force)
    announce_move(reg.name, entry)
    typer.echo(f"{reg.name}: champion is now {entry['version']} (was {entry['previous']})"
               + (" [forced]" if force else ""))
    return EXIT_OK


def decision_line(decision) -> str:
    """One line saying what deciding a pending version did."""
    entry = decision.entry
    what = {"passed": "approved and promoted", "rejected": "rejected",
            "stale": "approved but NOT promoted (stale: the champion changed since it was "
                     "compared)"}.get(decision.status, decision.status)
    by = f" {entry.get('how')} by {entry.get('actor')}: {entry.get('reason')}" if entry else ""
    return f"{decision.name} {decision.version}: {what}{by}; champion is {decision.champion}"


def decide(version: str, *, approved: bool, reason: str, actor: str | None, registry,
           name) -> int:
    """``models approve|reject``: exit 0 promoted, 3 rejected or stale, 6 not pending."""
    from tasks.registry.approval import HOW_CLI, decide_pending
    from tasks.registry.champion import announce_move

    reg = open_registry(registry, name)
    decision = decide_pending(reg, reg.name, version, approved=approved, reason=reason,
                              actor=actor, how=HOW_CLI)
    announce_move(reg.name, decision.entry)
    typer.echo(decision_line(decision))
    return EXIT_OK if decision.promoted else EXIT_REJECTED


ACTOR_HELP = "Who decides (recorded in history); default: the OS user@host."


@models_app.command("approve")
@reported
def models_approve(version: str = typer.Argument(..., help="A pending version, e.g. v0003."),
                   reason: str = typer.Option(..., "--reason", help="Why (recorded in "
                                              "history)."),
                   actor: str = typer.Option(None, "--actor", help=ACTOR_HELP),
                   registry: RegistryDir = None, name: ModelName = None) -> int:
    """Approve a version pending manual approval: it is promoted unless the champion changed
    since it was compared (then it is stale). Exit 0 promoted, 3 stale."""
    return decide(version, approved=True, reason=reason, actor=actor, registry=registry,
                  name=name)


@models_app.command("reject")
@reported
def models_reject(version: str = typer.Argument(..., help="A pending version, e.g. v0003."),
                  reason: str = typer.Option(..., "--reason", help="Why (recorded in "
                                             "history)."),
                  actor: str = typer.Option(None, "--actor", help=ACTOR_HELP),
                  registry: RegistryDir = None, name: ModelName = None) -> int:
    """Reject a version pending manual approval (the champion stays). Exit 3."""
    return decide(version, approved=False, reason=reason, actor=actor, registry=registry,
                  name=name)


@models_app.command("rollback")
@reported
def models_rollback(registry: RegistryDir = None, name: ModelName = None,
                    reason: str = typer.Option("manual rollback", "--reason",
                                               help="Why (recorded in history).")) -> int:
    """Make the previous champion serve again (recorded with actor and reason; event
    emitted)."""
    from tasks.registry.champion import announce_move

    reg = open_registry(registry, name)
    entry = reg.rollback(reason=reason)
    announce_move(reg.name, entry)
    typer.echo(f"{reg.name}: rolled back to {entry['version']} (was {entry['previous']})")
    return EXIT_OK


@models_app.command("history")
@reported
def models_history(registry: RegistryDir = None, name: ModelName = None,
                   at: str = typer.Option(None, "--at", help="Which version served at this "
                                          "time (ISO 8601, e.g. 2024-03-03T09:00; no zone = "
                                          "UTC; or 'now').")) -> int:
    """Every champion move, candidate not promoted and approval decision (time, action,
    version, previous champion, status, how, actor, reason), or with --at the version that
    served at a given time."""
    import pandas as pd

    from tasks.registry.champion import parse_time

    reg = open_registry(registry, name)
    if at is None:
        table = pd.DataFrame(reg.history(), columns=["at", "action", "version", "previous",
                                                     "status", "forced", "how", "actor",
                                                     "reason"])
        typer.echo(f"no history for {reg.name!r} in {str(reg.root)!r}" if table.empty
                   else table.fillna("").to_string(index=False))
        return EXIT_OK
    try:
        when = parse_time(at)
    except ValueError as exc:
        raise ConfigError(f"--at must be a time like 2024-03-03T09:00 (UTC) or "
                          f"2024-03-03T09:00+01:00; got {at!r}") from exc
    entry = reg.served_at(when)
    if entry is None:
        first = (reg.log.moves() or [{}])[0].get("at", "never")
        raise RegistryError(f"no version of {reg.name!r} served at {when.isoformat()}; the "
                            f"first promotion was at {first}")
    typer.echo(f"{reg.name} at {when.isoformat()}: {entry['version']} (since {entry['at']}, "
               f"{entry['action']} by {entry.get('actor', '?')}: {entry.get('reason', '')})")
    return EXIT_OK


@models_app.command("sign")
@reported
def models_sign(registry: RegistryDir = None, name: ModelName = None,
                force: bool = typer.Option(False, "--force", help="Also sign versions whose "
                                           "signature was removed (needs --reason)."),
                reason: str = typer.Option("", "--reason", help="Why, for history.")) -> int:
    """Sign the versions written by releases that did not sign (rareflow 0.1) with the
    configured key, after checking the sha256s their metadata records (a version whose
    signature was removed is refused unless --force --reason), and upgrade a registry written
    before 0.4 in place: its identity, and every model's signatures, champion pointer, history
    and monitoring state signed under it. Says what it signed. Sign only a registry you trust."""
    if force and not reason.strip():
        raise ConfigError("--force needs --reason: say why the versions are trusted (it is "
                          "recorded in history)")
    from tasks.registry.sign_existing import sign_unsigned, upgrade_registry

    reg = open_registry(registry, name)
    for version, outcome in sign_unsigned(reg, force_reason=reason if force else None):
        typer.echo(f"{reg.name} {version}: {outcome}")
    for line in upgrade_registry(reg.root, reg.key):
        typer.echo(line)
    return EXIT_OK


@reported
def keygen(out: Path = typer.Option(None, "--out", help="Write the key to this new file "
                                    "(mode 0600) instead of printing it.")) -> int:
    """Make a new random signing key (256 bits, hex) for RAREFLOW_SIGNING_KEY."""
    from tasks.registry.signing import KEY_ENV, KEY_FILE_ENV, generate_key, write_key_file

    key = generate_key()
    if out is None:
        typer.echo(key)
        return EXIT_OK
    write_key_file(out, key)
    typer.echo(f"wrote a new signing key to {out}; use it with {KEY_FILE_ENV}={out} (or "
               f"{KEY_ENV}=<its content>)")
    return EXIT_OK


@schema_app.command("infer")
@reported
def schema_infer(path: str = typer.Argument(..., help="A CSV or Parquet file."),
                 label: str = typer.Option(..., "--label"),
                 positive: str = typer.Option(None, "--positive"),
                 class_name: str = typer.Option("TrainingData", "--class-name")) -> int:
    """Print a pandera DataFrameModel module for this data (commit it and edit the checks)."""
    from schemas.inference import infer_input_schema
    from tasks.data.tables import load_table
    from tasks.data.validation import resolve_label

    df = load_table(path)
    if label not in df.columns:
        raise ConfigError(f"label column {label!r} is missing; columns are "
                          f"{list(map(str, df.columns))[:20]}")
    _, pos, neg, failures = resolve_label(df[label], label=label, positive=positive, needed=1)
    if failures:
        raise ConfigError(failures[0]["problem"])
    schema = infer_input_schema(df, label=label, positive=pos, negative=neg)
    typer.echo(schema.to_module_source(class_name=class_name, origin=Path(path).name))
    return EXIT_OK

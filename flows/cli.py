"""The `rareflow` command line: train, ingest, score, monitor, models, schema, demo.

Every option is a field of the config models in ``schemas/config.py`` (the same ones the
Prefect UI draws its forms from); ``--config FILE`` gives them from a YAML file and flags
override it. Errors are one line with the exit status documented in the README.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
from pathlib import Path

import typer

import flows.cli_challenger  # noqa: F401 (adds `models challenge`)
from flows.cli_config import build_config
from flows.cli_deploy import deploy_app
from flows.cli_errors import CliState, reported
from flows.cli_flow_server import FlowServer
from flows.cli_models import decision_line, keygen, models_app, schema_app
from flows.cli_options import ConfigFile, FlagNames, config_flags, parse_class_weight
from flows.cli_prefect_env import setup
from flows.cli_preflight import before_training
from flows.cli_reports import reports_app
from flows.cli_score import audit, check_score_config, print_score_result
from schemas.config import DEMO_FULL, DEMO_QUICK, LOOP_ROWS, StrategyConfig
from schemas.config import IngestConfig as I
from schemas.config import MonitoringConfig as M
from schemas.config import TrainingConfig as T
from schemas.errors import EXIT_OK, EXIT_REJECTED
from schemas.scoring import ScoringConfig as S
from schemas.statuses import PENDING, SHADOW_FIRST_GATE

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rareflow: training, gating and scoring for rare-event classifiers.")
app.add_typer(models_app, name="models")
app.add_typer(schema_app, name="schema")
app.command("keygen")(keygen)
app.add_typer(reports_app, name="reports")
app.add_typer(deploy_app, name="deploy")
app.command("audit")(audit)


def show_version(value: bool) -> None:
    """``--version``: the installed rareflow's version, then exit."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"rareflow {version('rareflow')}")
        except PackageNotFoundError:  # pragma: no cover - a checkout that was never installed
            typer.echo("rareflow (not installed: run `uv sync`)")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                 help="Print rareflow's version and exit."),
) -> None:
    state = ctx.ensure_object(CliState)
    state.debug = debug
    setup(state)


def print_training_summary(result: dict) -> None:
    from tasks.judge.gate_verdict import Verdict
    from tasks.judge.metrics import metric_table

    table = metric_table(result["metrics"])
    typer.echo("")
    typer.echo(f"Strategy: {result['strategy']}   threshold: {result['threshold']:.4f}")
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo("")
    typer.echo("Gates:                        point    bound")
    verdict = Verdict.from_dict(result["verdict"])
    for g in verdict.gates:
        value = "" if g.point is None else f"{g.point:.4f}"
        bound = "" if g.value is None or g.value == g.point else f"{g.value:.4f}"
        limit = "" if g.limit is None else f"{g.limit:.4f}"
        mark = "pass" if g.passed else "FAIL"
        typer.echo(f"  {mark}  {g.gate:<20} {value:>8} {bound:>8} (limit {limit:>7})  "
                   f"{g.detail}")
    verb = "promoted" if result["promoted"] else f"NOT promoted ({result['status']})"
    if SHADOW_FIRST_GATE in verdict.failed:
        verb += ": the shadow challenger, promoted only on live matured rows"
    typer.echo(f"\n{result['name']} {result['version']}: {verb}; champion is "
               f"{result['champion']}  [{result['registry']}]")


def run_training(config: T, server: FlowServer | None = None, trigger=None) -> int:
    """Run the training flow, print its summary; exit 0 promoted, 3 not promoted.

    With manual approval, a candidate registered as pending is decided by the approval flow
    run here, in this process (it pauses until someone answers, or the timeout).
    ``trigger`` is the event a deployment trigger would pass (its source and as_of win)."""
    from flows.training import training_flow
    from tasks.runtime.run_outcome import run_summary

    if server is not None:
        server.activate()
    result = run_summary(training_flow(config, trigger=trigger, return_state=True))
    print_training_summary(result)
    if result["status"] == PENDING:
        from flows.approval import approval_flow

        typer.echo(f"Waiting for a manual approval of {result['version']}: resume the paused "
                   f"rareflow-approve run in the Prefect UI, or run `rareflow models "
                   f"approve|reject {result['version']} --reason ...`")
        decision = approval_flow(registry=config.registry, name=config.name,
                                 version=result["version"])
        typer.echo(decision_line(decision))
        return EXIT_OK if decision.promoted else EXIT_REJECTED
    return EXIT_OK if result["promoted"] else EXIT_REJECTED


TRAIN_FLAGS = FlagNames(T, suffixes={"gates": "gate"},  # --min-recall-gate, ...
                        renames={"split.n_folds": "--folds",
                                 "strategy.time_budget_s": "--time-budget"},
                        parsers={"strategy.class_weight": parse_class_weight})
INGEST_FLAGS = FlagNames(I)
SCORE_FLAGS = FlagNames(S)
MONITOR_FLAGS = FlagNames(M, renames={"recall_tolerance": "--tolerance",
                                      "since_last_check": "--since-last-check/--all-matured"})


def address_means_dask(flags: dict, prefix: str = "") -> None:
    """``--dask-address`` without ``--executor`` means the Dask executor."""
    if flags[f"{prefix}dask_address"] and not flags[f"{prefix}executor"]:
        flags[f"{prefix}executor"] = "dask"


@app.command()
@reported
@config_flags(TRAIN_FLAGS)
def train(config: ConfigFile = None, *, flags: dict) -> int:
    """Train, gate and (if it passes) promote a model. Exit 0 promoted, 3 rejected."""
    server = FlowServer()  # boots while the training modules import
    address_means_dask(flags, "strategy.")
    cfg = build_config(T, config, flags)
    before_training(cfg, config_file=config, flags=flags, say=typer.echo)
    return run_training(cfg, server)


@app.command()
@reported
@config_flags(INGEST_FLAGS)
def ingest(config: ConfigFile = None, *, flags: dict) -> int:
    """Land a batch in a data source as new partitions and emit rareflow.data.arrived."""
    from flows.ingest import ingest_flow

    cfg = build_config(I, config, flags)
    result = ingest_flow(cfg)
    for part in result["partitions"]:
        state = "written" if part["new"] else "already present"
        typer.echo(f"  {part['partition']}  {part['rows']} rows  ({state})")
    event = (f"rareflow.data.arrived emitted for model {result['name']}" if result["event_id"]
             else "no new rows: nothing announced")
    typer.echo(f"Ingested {result['new_rows']} new rows into {result['source']}; {event}")
    return EXIT_OK


@app.command()
@reported
@config_flags(SCORE_FLAGS)
def score(config: ConfigFile = None, *, flags: dict) -> int:
    """Score a batch (`score` and `decision` on every row, in order), or the partitions of a
    source not yet scored into a scored source mirroring it."""
    server = FlowServer()  # boots while the scoring modules import
    from flows.scoring import scoring_flow

    address_means_dask(flags)
    cfg = build_config(S, config, flags)
    check_score_config(cfg)
    server.activate()
    print_score_result(scoring_flow(cfg), cfg.name)
    return EXIT_OK


def preload_reporting() -> threading.Thread:
    """Import evidently and matplotlib in a background thread: while Prefect's server boots
    and the flow loads and scores the batch (mostly native code, which lets the thread run),
    not when the flow reaches its reports (together several seconds on the monitoring path).
    The flow's own imports then wait for this one (Python's import lock), as they would for
    any import in progress."""

    def load() -> None:
        with contextlib.suppress(Exception):  # the flow imports them again and reports errors
            import evidently.metrics  # noqa: F401
            import evidently.presets  # noqa: F401
            import matplotlib.figure  # noqa: F401

    thread = threading.Thread(target=load, name="rareflow-preload", daemon=True)
    thread.start()
    return thread


@app.command()
@reported
@config_flags(MONITOR_FLAGS)
def monitor(config: ConfigFile = None, *, flags: dict) -> int:
    """Judge minority-class recall on a labelled batch. Exit 0 no drift, 4 drift, 5 cannot judge."""
    server = FlowServer()  # boots while the monitoring modules and evidently import
    from flows.monitoring import monitoring_flow
    from tasks.monitor.outcome import MonitoringOutcome
    from tasks.runtime.run_outcome import run_summary

    cfg = build_config(M, config, flags)
    preload_reporting()
    server.activate()
    outcome = MonitoringOutcome.from_dict(run_summary(monitoring_flow(cfg, return_state=True)))
    typer.echo(f"Reports: {outcome.reports}")
    typer.echo(outcome.verdict)
    return outcome.exit_code


@app.command()
@reported
def demo(
    out_dir: str = typer.Option("rareflow-demo", "--dir", help="Where demo files go."),
    tables: bool = typer.Option(False, "--tables", help="The table demo instead: train on a "
                                "table, retrain and gate on a newer one, score and monitor a "
                                "drifted batch."),
    full: bool = typer.Option(False, "--full", help=f"The table demo at {DEMO_FULL.rows:,} "
                              f"rows: {DEMO_FULL.n_folds} folds, up to "
                              f"{DEMO_FULL.max_candidates} candidates (minutes)."),
    rows: int = typer.Option(None, "--rows", min=2_000, help=f"Rows of the stream (default "
                             f"{LOOP_ROWS:,}), or of each table with --tables "
                             f"({DEMO_QUICK.rows:,}) or --full ({DEMO_FULL.rows:,})."),
    registry: str = typer.Option(None, "--registry", help="Default: <dir>/registry."),
    time_budget: float = typer.Option(
        StrategyConfig.model_fields["time_budget_s"].default, "--time-budget",
        help="Wall-clock safety stop of each strategy search, s."),
) -> int:
    """The loop on a living data source: ingest, train on a window and promote, score new
    rows, monitor, recall drift, retrain on fresh data, gate (--tables / --full: on tables)."""
    server = FlowServer()
    if not (tables or full):
        from flows.demo_loop import run_demo as run_loop

        server.activate()
        return run_loop(Path(out_dir), rows=rows or LOOP_ROWS, registry=registry,
                        time_budget_s=time_budget, train=run_training, say=typer.echo)
    from flows.demo import run_demo

    size = DEMO_FULL if full else DEMO_QUICK
    if rows is not None:
        size = size.model_copy(update={"rows": rows})
    server.activate()
    return run_demo(Path(out_dir), size=size, registry=registry, time_budget_s=time_budget,
                    train=run_training, say=typer.echo)


def main() -> None:
    """Console-script entry point.

    The one-line error is printed at exit, after Prefect has stopped its temporary server
    (atexit runs handlers in reverse order of registration), so it is the last line a user
    or a script sees.
    """
    state = CliState(defer_errors=True)
    atexit.register(state.flush)
    try:
        app(obj=state)
    except SystemExit as exc:
        sys.exit(exc.code)


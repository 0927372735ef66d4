"""The `rareflow` command line: train, ingest, score, monitor, models, schema, demo.

Every option is a field of the config models in ``schemas/config.py`` (the same ones the
Prefect UI draws its forms from); ``--config FILE`` gives them from a YAML file and flags
override it. Errors are one line with the exit status documented in the README.
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

import typer

from flows.cli_models import models_app, schema_app
from flows.cli_support import (
    CliState,
    ConfigFile,
    ModelName,
    RegistryDir,
    Version,
    build_config,
    option,
    parse_class_weight,
    reported,
    setup,
)
from schemas.config import IngestConfig as I
from schemas.config import MonitoringConfig as M
from schemas.config import ScoringConfig as S
from schemas.config import TrainingConfig as T
from schemas.errors import EXIT_CANNOT_JUDGE, EXIT_DRIFT, EXIT_OK, EXIT_REJECTED

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rareflow: training, gating and scoring for rare-event classifiers.")
app.add_typer(models_app, name="models")
app.add_typer(schema_app, name="schema")


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    state = ctx.ensure_object(CliState)
    state.debug = debug
    setup(state)


def print_training_summary(result: dict) -> None:
    from tasks.evaluate import metric_table

    table = metric_table(result["metrics"])
    typer.echo("")
    typer.echo(f"Strategy: {result['strategy']}   threshold: {result['threshold']:.4f}")
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo("")
    typer.echo("Gates:")
    for g in result["verdict"]["gates"]:
        value = "" if g["value"] is None else f"{g['value']:.4f}"
        limit = "" if g["limit"] is None else f"{g['limit']:.4f}"
        mark = "pass" if g["passed"] else "FAIL"
        typer.echo(f"  {mark}  {g['gate']:<20} {value:>8} (limit {limit:>7})  {g['detail']}")
    verb = "promoted" if result["promoted"] else f"NOT promoted ({result['status']})"
    typer.echo(f"\n{result['name']} {result['version']}: {verb}; champion is "
               f"{result['champion']}  [{result['registry']}]")


def run_training(config: T, trigger=None) -> int:
    """Run the training flow, print its summary; exit 0 promoted, 3 not promoted."""
    from flows.training import training_flow

    result = training_flow(config, trigger=trigger)
    print_training_summary(result)
    return EXIT_OK if result["promoted"] else EXIT_REJECTED


@app.command()
@reported
def train(
    ctx: typer.Context,
    config: ConfigFile = None,
    data: str = option(T, "data", "--data"),
    label: str = option(T, "label", "--label"),
    positive: str = option(T, "positive", "--positive"),
    time_column: str = option(T, "time_column", "--time-column"),
    window: str = option(T, "window", "--window"),
    as_of: str = option(T, "as_of", "--as-of"),
    label_time_column: str = option(T, "label_time_column", "--label-time-column"),
    label_available_column: str = option(T, "label_available_column",
                                         "--label-available-column"),
    label_delay_days: float = option(T, "label_delay_days", "--label-delay-days"),
    fn_cost: float = option(T, "fn_cost", "--fn-cost"),
    fp_cost: float = option(T, "fp_cost", "--fp-cost"),
    registry: RegistryDir = None,
    name: ModelName = None,
    model: str = option(T, "model", "--model"),
    sampler: str = option(T, "sampler", "--sampler"),
    class_weight: str = option(T, "class_weight", "--class-weight"),
    test_size: float = option(T, "test_size", "--test-size"),
    n_folds: int = option(T, "n_folds", "--folds"),
    seed: int = option(T, "seed", "--seed"),
    time_budget_s: float = option(T, "time_budget_s", "--time-budget"),
    n_jobs: int = option(T, "n_jobs", "--n-jobs"),
    executor: str = option(T, "executor", "--executor"),
    dask_address: str = option(T, "dask_address", "--dask-address"),
    dask_workers: int = option(T, "dask_workers", "--dask-workers"),
) -> int:
    """Train, gate and (if it passes) promote a model. Exit 0 promoted, 3 rejected."""
    flags = {k: v for k, v in ctx.params.items() if k != "config"}
    flags["class_weight"] = parse_class_weight(class_weight)
    if dask_address and not executor:
        flags["executor"] = "dask"
    return run_training(build_config(T, config, flags))


@app.command()
@reported
def ingest(
    ctx: typer.Context,
    config: ConfigFile = None,
    data: str = option(I, "data", "--data"),
    source: str = option(I, "source", "--source"),
    name: str = option(I, "name", "--name"),
    time_column: str = option(I, "time_column", "--time-column"),
    as_of: str = option(I, "as_of", "--as-of"),
) -> int:
    """Land a batch in a data source as new partitions and emit rareflow.data.arrived."""
    from flows.ingest import ingest_flow

    cfg = build_config(I, config, {k: v for k, v in ctx.params.items() if k != "config"})
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
def score(
    ctx: typer.Context,
    config: ConfigFile = None,
    data: str = option(S, "data", "--data"),
    out: str = option(S, "out", "--out"),
    registry: RegistryDir = None,
    name: ModelName = None,
    version: Version = None,
) -> int:
    """Append `score` and `decision` to every row of a batch, in input order."""
    from flows.scoring import scoring_flow

    cfg = build_config(S, config, {k: v for k, v in ctx.params.items() if k != "config"})
    result = scoring_flow(cfg)
    typer.echo(f"Scored {result['rows']} rows with {cfg.name} {result['version']} (threshold "
               f"{result['threshold']:.4f}): {result['flagged']} flagged -> {result['out']}")
    return EXIT_OK


@app.command()
@reported
def monitor(
    ctx: typer.Context,
    config: ConfigFile = None,
    data: str = option(M, "data", "--data"),
    registry: RegistryDir = None,
    name: ModelName = None,
    version: Version = None,
    time_column: str = option(M, "time_column", "--time-column"),
    window: str = option(M, "window", "--window"),
    since_last_check: bool = option(M, "since_last_check",
                                    "--since-last-check/--all-matured"),
    estimate_alarm: bool = option(M, "estimate_alarm", "--estimate-alarm/--no-estimate-alarm"),
    recall_tolerance: float = option(M, "recall_tolerance", "--tolerance"),
    confidence: float = option(M, "confidence", "--confidence"),
    min_positives: int = option(M, "min_positives", "--min-positives"),
    label_time_column: str = option(M, "label_time_column", "--label-time-column"),
    label_available_column: str = option(M, "label_available_column",
                                         "--label-available-column"),
    label_delay_days: float = option(M, "label_delay_days", "--label-delay-days"),
    as_of: str = option(M, "as_of", "--as-of"),
    rescore: bool = option(M, "rescore", "--rescore/--no-rescore"),
) -> int:
    """Judge minority-class recall on a labelled batch. Exit 0 no drift, 4 drift, 5 cannot judge."""
    from flows.monitoring import monitoring_flow

    cfg = build_config(M, config, {k: v for k, v in ctx.params.items() if k != "config"})
    result = monitoring_flow(cfg)
    typer.echo(f"Reports: {result['reports']['folder']}")
    typer.echo(result["verdict"])
    return {"drift": EXIT_DRIFT, "cannot-judge": EXIT_CANNOT_JUDGE}.get(result["status"], EXIT_OK)


@app.command()
@reported
def demo(
    out_dir: str = typer.Option("rareflow-demo", "--dir", help="Where demo files go."),
    rows: int = typer.Option(50_400, "--rows", help="Rows of the demo stream (12 weeks)."),
    registry: str = typer.Option(None, "--registry", help="Default: <dir>/registry."),
    time_budget: float = typer.Option(300, "--time-budget", help="Candidate search budget, s."),
) -> int:
    """The loop on a data source: ingest, train on a window, monitor, drift, retrain, gate."""
    from flows.demo import run_demo

    return run_demo(Path(out_dir), rows=rows, registry=registry, time_budget_s=time_budget,
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


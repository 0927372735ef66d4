"""The `rareflow` command line: train, score, models, schema, demo (see DESIGN.md)."""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError

from schemas.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_REJECTED,
    ConfigError,
    RareflowError,
    ValidationFailed,
)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rareflow: training, gating and scoring for rare-event classifiers.")
models_app = typer.Typer(no_args_is_help=True, help="List, inspect, promote and roll back.")
schema_app = typer.Typer(no_args_is_help=True, help="Schemas for your data.")
app.add_typer(models_app, name="models")
app.add_typer(schema_app, name="schema")

STATE: dict[str, Any] = {"debug": False, "defer_errors": False, "deferred": []}
PREFECT_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks,flows,schemas",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


class _QuietExpectedErrors(logging.Filter):
    """Drop the traceback Prefect logs for errors rareflow reports itself in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RareflowError):
            record.exc_info = None
            record.exc_text = None
        return True


def _setup() -> None:
    for key, value in PREFECT_ENV.items():
        os.environ.setdefault(key, value)
    if not STATE["debug"]:
        for name in ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine",
                     "prefect.flow_engine"):
            logging.getLogger(name).addFilter(_QuietExpectedErrors())


def _fail(exc: Exception, code: int) -> None:
    if STATE["debug"]:
        raise exc
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    _say_error(f"error: {text}")
    raise typer.Exit(code)


def _say_error(text: str) -> None:
    """Print the one-line error, or keep it for the very end (see ``main``)."""
    if STATE["defer_errors"]:
        STATE["deferred"].append(text)
    else:
        typer.secho(text, fg=typer.colors.RED, err=True)


def _print_deferred_errors() -> None:
    for text in STATE["deferred"]:
        typer.secho(text, fg=typer.colors.RED, err=True)
    STATE["deferred"].clear()


def _run(fn, *args, **kwargs):
    """Run a flow or command; expected errors become one line and their exit status."""
    try:
        return fn(*args, **kwargs)
    except ValidationFailed as exc:
        typer.echo(exc.failures.to_string(index=False), err=True)
        _fail(exc, exc.exit_code)
    except RareflowError as exc:
        _fail(exc, exc.exit_code)
    except ValidationError as exc:
        _fail(ConfigError(_pydantic_message(exc)), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # an unexpected failure: say so, keep the traceback for --debug
        if STATE["debug"]:
            raise
        text = " ".join(str(exc).split())
        _say_error(f"internal error: {type(exc).__name__}: {text} (rerun with --debug for "
                   "the traceback)")
        raise typer.Exit(EXIT_INTERNAL) from None


def _pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration: " + "; ".join(parts)


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    STATE["debug"] = debug
    _setup()


def _deep_set(target: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def load_config_file(path: Path | None) -> dict:
    """Read a YAML (or JSON) file mapping onto TrainingConfig."""
    if path is None:
        return {}
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where} ({problem}); "
                          "fix its syntax") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings")
    return data


def build_training_config(config_file: Path | None, overrides: dict):
    """Merge a config file with command-line flags (flags win) into a TrainingConfig."""
    from schemas.config import TrainingConfig

    data = load_config_file(config_file)
    for dotted, value in overrides.items():
        if value is not None:
            _deep_set(data, dotted, value)
    return TrainingConfig.model_validate(data)


def _class_weight(text: str | None):
    if text is None:
        return None
    text = text.strip()
    if text in ("auto", "none", "balanced"):
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--class-weight must be none, balanced, auto or a mapping like "
                          f"'{{0: 1, 1: 50}}'; got {text!r}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"--class-weight must be none, balanced, auto or a mapping like "
                          f"'{{0: 1, 1: 50}}'; got {text!r}")
    return value


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


def _train(config) -> int:
    from flows.training import training_flow

    result = training_flow(config)
    print_training_summary(result)
    return EXIT_OK if result["promoted"] else EXIT_REJECTED


@app.command()
def train(
    data: str = typer.Option(None, "--data", help="Training table: CSV, CSV.gz or Parquet."),
    label: str = typer.Option(None, "--label", help="Label column."),
    positive: str = typer.Option(None, "--positive", help="Label value of the rare class."),
    fn_cost: float = typer.Option(None, "--fn-cost", help="Cost of a missed positive."),
    fp_cost: float = typer.Option(None, "--fp-cost", help="Cost of a false alarm."),
    registry: str = typer.Option(None, "--registry", help="Registry folder."),
    name: str = typer.Option(None, "--name", help="Model name in the registry."),
    config: Path = typer.Option(None, "--config", help="YAML file mapping onto TrainingConfig."),
    model: str = typer.Option(None, "--model", help="auto, logreg, hgb, rf, brf, gboost, iforest"),
    sampler: str = typer.Option(None, "--sampler", help="auto, none, random_over, smote, ..."),
    class_weight: str = typer.Option(None, "--class-weight",
                                     help="auto, none, balanced or '{0: 1, 1: 50}'."),
    test_size: float = typer.Option(None, "--test-size", help="Share of rows held out."),
    folds: int = typer.Option(None, "--folds", help="CV folds inside the training part."),
    seed: int = typer.Option(None, "--seed", help="Random seed."),
    time_budget: float = typer.Option(None, "--time-budget", help="Candidate search budget, s."),
    n_jobs: int = typer.Option(None, "--n-jobs", help="Candidates evaluated in parallel."),
    executor: str = typer.Option(None, "--executor",
                                 help="local, or dask: every candidate x fold fit as a "
                                      "Prefect task on a Dask cluster."),
    dask_address: str = typer.Option(None, "--dask-address",
                                     help="Existing Dask scheduler (tcp://host:8786); "
                                          "default: a local cluster."),
    dask_workers: int = typer.Option(None, "--dask-workers",
                                     help="Workers of the local Dask cluster."),
) -> None:
    """Train, gate and (if it passes) promote a model. Exit 0 promoted, 3 rejected."""

    def go():
        cfg = build_training_config(config, {
            "data": data, "label": label, "positive": positive, "costs.fn_cost": fn_cost,
            "costs.fp_cost": fp_cost, "registry": registry, "name": name,
            "strategy.model": model, "strategy.sampler": sampler,
            "strategy.class_weight": _class_weight(class_weight),
            "split.test_size": test_size, "split.n_folds": folds, "seed": seed,
            "strategy.time_budget_s": time_budget, "strategy.n_jobs": n_jobs,
            "strategy.executor": "dask" if dask_address and not executor else executor,
            "strategy.dask_address": dask_address, "strategy.dask_workers": dask_workers,
        })
        return _train(cfg)

    raise typer.Exit(_run(go))


@app.command()
def score(
    data: str = typer.Option(..., "--data", help="Batch to score."),
    out: str = typer.Option(..., "--out", help="Output path (.csv, .csv.gz or .parquet)."),
    registry: str = typer.Option("registry", "--registry"),
    name: str = typer.Option("model", "--name"),
    version: str = typer.Option("champion", "--version", help="champion, latest or an id."),
) -> None:
    """Append `score` and `decision` to every row of a batch, in input order."""

    def go():
        from flows.scoring import scoring_flow
        from schemas.config import ScoringConfig

        cfg = ScoringConfig(data=data, out=out, registry=registry, name=name, version=version)
        result = scoring_flow(cfg)
        typer.echo(f"Scored {result['rows']} rows with {name} {result['version']} (threshold "
                   f"{result['threshold']:.4f}): {result['flagged']} flagged -> {result['out']}")
        return EXIT_OK

    raise typer.Exit(_run(go))


@app.command()
def monitor(
    data: str = typer.Option(None, "--data", help="Labelled batch (scored or not)."),
    registry: str = typer.Option(None, "--registry", help="Registry folder (default: registry)."),
    name: str = typer.Option(None, "--name", help="Model name (default: model)."),
    version: str = typer.Option(None, "--version", help="champion (default), latest or an id."),
    config: Path = typer.Option(None, "--config", help="YAML file mapping onto MonitoringConfig."),
    tolerance: float = typer.Option(None, "--tolerance", help="Recall drop tolerated."),
    confidence: float = typer.Option(None, "--confidence", help="Confidence of the test."),
    min_positives: int = typer.Option(None, "--min-positives",
                                      help="Fewer matured positives: refuse to judge."),
    label_time_column: str = typer.Option(None, "--label-time-column",
                                          help="Column: when each label became known."),
    label_available_column: str = typer.Option(None, "--label-available-column",
                                               help="Column: is the label known (true/false)."),
    label_delay_days: float = typer.Option(None, "--label-delay-days",
                                           help="Labels younger than this are not matured."),
    as_of: str = typer.Option(None, "--as-of", help="Time maturity is judged at (default now)."),
    rescore: bool = typer.Option(None, "--rescore/--no-rescore",
                                 help="Score afresh even if the batch has a score column."),
) -> None:
    """Judge minority-class recall on a labelled batch. Exit 0 no drift, 4 drift, 5 cannot judge."""

    def go():
        from flows.monitoring import monitoring_flow
        from schemas.config import MonitoringConfig
        from schemas.errors import EXIT_CANNOT_JUDGE, EXIT_DRIFT

        cfg = load_config_file(config)
        flags = {"data": data, "registry": registry, "name": name, "version": version,
                 "recall_tolerance": tolerance, "confidence": confidence,
                 "min_positives": min_positives, "label_time_column": label_time_column,
                 "label_available_column": label_available_column,
                 "label_delay_days": label_delay_days, "as_of": as_of, "rescore": rescore}
        for key, value in flags.items():
            if value is not None:
                cfg[key] = value
        result = monitoring_flow(MonitoringConfig.model_validate(cfg))
        typer.echo(f"Reports: {result['reports']['folder']}")
        typer.echo(result["verdict"])
        return {"drift": EXIT_DRIFT, "cannot-judge": EXIT_CANNOT_JUDGE}.get(result["status"],
                                                                           EXIT_OK)

    raise typer.Exit(_run(go))


@models_app.command("list")
def models_list(registry: str = typer.Option("registry", "--registry"),
                name: str = typer.Option("model", "--name")) -> None:
    """Versions with their verdicts and key metrics (* marks the champion)."""

    def go():
        from tasks.registry import Registry

        table = Registry(registry, name).summaries()
        if table.empty:
            typer.echo(f"no versions of {name!r} in {registry!r}")
        else:
            typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        return EXIT_OK

    raise typer.Exit(_run(go))


@models_app.command("show")
def models_show(version: str = typer.Argument("champion"),
                registry: str = typer.Option("registry", "--registry"),
                name: str = typer.Option("model", "--name"),
                as_json: bool = typer.Option(False, "--json", help="Print all metadata.")) -> None:
    """Show one version: its model card (or all metadata with --json)."""

    def go():
        from tasks.registry import CARD_FILE, Registry

        reg = Registry(registry, name)
        vid = reg.resolve(version)
        if as_json:
            typer.echo(json.dumps(reg.metadata(vid), indent=2))
        else:
            card = reg.version_dir(vid) / CARD_FILE
            typer.echo(card.read_text(encoding="utf-8") if card.is_file()
                       else json.dumps(reg.metadata(vid), indent=2))
        return EXIT_OK

    raise typer.Exit(_run(go))


@models_app.command("promote")
def models_promote(version: str = typer.Argument(...),
                   registry: str = typer.Option("registry", "--registry"),
                   name: str = typer.Option("model", "--name"),
                   force: bool = typer.Option(False, "--force",
                                              help="Promote although gates failed (recorded)."),
                   reason: str = typer.Option("manual promotion", "--reason")) -> None:
    """Promote a version by hand."""

    def go():
        from tasks.registry import Registry

        entry = Registry(registry, name).promote(version, reason=reason, forced=force)
        typer.echo(f"{name}: champion is now {entry['version']} (was {entry['previous']})"
                   + (" [forced]" if force else ""))
        return EXIT_OK

    raise typer.Exit(_run(go))


@models_app.command("rollback")
def models_rollback(registry: str = typer.Option("registry", "--registry"),
                    name: str = typer.Option("model", "--name"),
                    reason: str = typer.Option("manual rollback", "--reason")) -> None:
    """Make the previous champion serve again."""

    def go():
        from tasks.registry import Registry

        entry = Registry(registry, name).rollback(reason=reason)
        typer.echo(f"{name}: rolled back to {entry['version']} (was {entry['previous']})")
        return EXIT_OK

    raise typer.Exit(_run(go))


@schema_app.command("infer")
def schema_infer(path: str = typer.Argument(..., help="A CSV or Parquet file."),
                 label: str = typer.Option(..., "--label"),
                 positive: str = typer.Option(None, "--positive"),
                 class_name: str = typer.Option("TrainingData", "--class-name")) -> None:
    """Print a pandera DataFrameModel module for this data (commit it and edit the checks)."""

    def go():
        from schemas.inference import infer_input_schema
        from tasks.load import load_table
        from tasks.validate import resolve_label

        df = load_table(path)
        if label not in df.columns:
            raise ConfigError(f"label column {label!r} is missing; columns are "
                              f"{list(map(str, df.columns))[:20]}")
        _, pos, neg, failures = resolve_label(df[label], label=label, positive=positive,
                                              needed=1)
        if failures:
            raise ConfigError(failures[0]["problem"])
        schema = infer_input_schema(df, label=label, positive=pos, negative=neg)
        typer.echo(schema.to_module_source(class_name=class_name, origin=Path(path).name))
        return EXIT_OK

    raise typer.Exit(_run(go))


@app.command()
def demo(
    out_dir: str = typer.Option("rareflow-demo", "--dir", help="Where demo files go."),
    rows: int = typer.Option(100_000, "--rows", help="Rows of demo training data."),
    registry: str = typer.Option(None, "--registry", help="Default: <dir>/registry."),
    time_budget: float = typer.Option(300, "--time-budget", help="Candidate search budget, s."),
) -> None:
    """Make demo data, train and promote, retrain and gate, score a drifted batch, monitor it."""

    def go():
        from flows.monitoring import monitoring_flow
        from flows.scoring import scoring_flow
        from schemas.config import MonitoringConfig, ScoringConfig, StrategyConfig, TrainingConfig
        from schemas.demo import LABEL, POSITIVE
        from tasks.demo import make_demo_data
        from tasks.load import write_table

        base = Path(out_dir)
        reg = registry or str(base / "registry")
        paths = {}
        for key, seed, drift in (("train", 0, False), ("retrain", 1, False),
                                 ("drifted", 2, True)):
            paths[key] = write_table(make_demo_data(rows, seed=seed, drift=drift),
                                     base / f"{key}.parquet")
        typer.echo(f"Demo data: {', '.join(str(p) for p in paths.values())}")
        strategy = StrategyConfig(time_budget_s=time_budget)
        outcome = EXIT_OK
        for step, key in (("1/4 first model", "train"), ("2/4 retrain and gate", "retrain")):
            typer.echo(f"\n=== {step}: rareflow train --data {paths[key]} ===")
            cfg = TrainingConfig(data=str(paths[key]), label=LABEL, positive=POSITIVE,
                                 registry=reg, name="demo", strategy=strategy)
            outcome = _train(cfg)
        scored_path = base / "drifted_scored.parquet"
        typer.echo(f"\n=== 3/4 score a later, drifted batch: rareflow score --data "
                   f"{paths['drifted']} --out {scored_path} ===")
        scored = scoring_flow(ScoringConfig(data=str(paths["drifted"]), out=str(scored_path),
                                            registry=reg, name="demo"))
        typer.echo(f"Scored {scored['rows']} rows with demo {scored['version']}: "
                   f"{scored['flagged']} flagged -> {scored['out']}")
        typer.echo(f"\n=== 4/4 its labels arrive: rareflow monitor --data {scored_path} ===")
        monitored = monitoring_flow(MonitoringConfig(data=str(scored_path), registry=reg,
                                                     name="demo"))
        typer.echo(f"Reports: {monitored['reports']['folder']}")
        typer.echo(monitored["verdict"])
        typer.echo(f"\nRegistry: {reg}/demo (rareflow models list --registry {reg} --name demo)")
        return EXIT_OK if outcome in (EXIT_OK, EXIT_REJECTED) else outcome

    raise typer.Exit(_run(go))


def main() -> None:
    """Console-script entry point.

    The one-line error is printed at exit, after Prefect has stopped its temporary server
    (atexit runs handlers in reverse order of registration), so it is the last line a user
    or a script sees.
    """
    STATE["defer_errors"] = True
    atexit.register(_print_deferred_errors)
    try:
        app()
    except SystemExit as exc:
        sys.exit(exc.code)

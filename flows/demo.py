"""`rareflow demo --tables` (and `--full`): demo tables → train → promote → retrain → gate →
score → monitor. The default `rareflow demo` is the loop on a data source (flows/demo_loop.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flows.cli_config import remember_project
from schemas.config import (
    DemoSize,
    MonitoringConfig,
    SplitConfig,
    StrategyConfig,
    TrainingConfig,
)
from schemas.demo import LABEL, POSITIVE
from schemas.errors import EXIT_OK, EXIT_REJECTED
from schemas.scoring import ScoringConfig

DEMO_NAME = "demo"


def make_files(base: Path, rows: int) -> dict[str, Path]:
    """The demo's training, retraining and drifted tables, as Parquet under ``base``."""
    from tasks.data.demo_tables import make_demo_data
    from tasks.data.tables import write_table

    return {key: write_table(make_demo_data(rows, seed=seed, drift=drift),
                             base / f"{key}.parquet")
            for key, seed, drift in (("train", 0, False), ("retrain", 1, False),
                                     ("drifted", 2, True))}


def demo_signing_key(registry: str, say: Callable[[str], None]) -> None:
    """The demo signs its models like any other run: with the configured key, else the
    user's key file (made now if missing), which every later command and ``load_model`` find
    by themselves; never a key inside the demo's folder."""
    from flows.cli_preflight import ensure_signing_key

    ensure_signing_key(say, registry=registry, name=DEMO_NAME)


def training_config(data: Path, *, size: DemoSize, registry: str,
                    time_budget_s: float) -> TrainingConfig:
    """The demo's training config: the demo label, ``size``'s folds and candidates."""
    return TrainingConfig(
        data=str(data), label=LABEL, positive=POSITIVE, registry=registry, name=DEMO_NAME,
        split=SplitConfig(n_folds=size.n_folds),
        strategy=StrategyConfig(time_budget_s=time_budget_s,
                                max_candidates=size.max_candidates))


def run_demo(base: Path, *, size: DemoSize, registry: str | None, time_budget_s: float,
             train: Callable[[TrainingConfig], int], say: Callable[[str], None]) -> int:
    """Run every step of the demo, saying what each one is; returns the exit status."""
    from flows.monitoring import monitoring_flow
    from flows.scoring import scoring_flow
    from tasks.runtime.run_outcome import run_summary

    reg = registry or str(base / "registry")
    demo_signing_key(reg, say)
    paths = make_files(base, size.rows)
    say(f"Demo data ({size.rows} rows each; {size.n_folds} folds, up to "
        f"{size.max_candidates} candidates): {', '.join(str(p) for p in paths.values())}")
    outcome = EXIT_OK
    for step, key in (("1/4 first model", "train"), ("2/4 retrain and gate", "retrain")):
        say(f"\n=== {step}: rareflow train --data {paths[key]} ===")
        outcome = train(training_config(paths[key], size=size, registry=reg,
                                        time_budget_s=time_budget_s))
    scored_path = base / "drifted_scored.parquet"
    say(f"\n=== 3/4 score a later, drifted batch: rareflow score --data {paths['drifted']} "
        f"--out {scored_path} ===")
    scored = scoring_flow(ScoringConfig(data=str(paths["drifted"]), out=str(scored_path),
                                        registry=reg, name=DEMO_NAME))
    say(f"Scored {scored['rows']} rows with demo {scored['version']}: {scored['flagged']} "
        f"flagged -> {scored['out']}")
    say(f"\n=== 4/4 its labels arrive: rareflow monitor --data {scored_path} ===")
    monitored = run_summary(monitoring_flow(MonitoringConfig(
        data=str(scored_path), registry=reg, name=DEMO_NAME), return_state=True))
    say(f"Reports: {monitored['reports']['folder']}")
    say(monitored["verdict"])
    say(f"\nRegistry: {reg}/{DEMO_NAME} (rareflow models list --registry {reg} --name "
        f"{DEMO_NAME})")
    closing_lines(base, reg, say)
    return EXIT_OK if outcome in (EXIT_OK, EXIT_REJECTED) else outcome


def closing_lines(base: Path, reg: str, say: Callable[[str], None]) -> None:
    """How to use the demo's models yourself: the key they are signed with, and
    ./rareflow.yaml (so the README's `rareflow models show v0001` works)."""
    from tasks.registry.signing import signing_key

    key = signing_key()
    if key is not None:
        say(f"Its versions are signed with the key from {key.source} (id {key.key_id})")
    say(remember_project(reg, DEMO_NAME))

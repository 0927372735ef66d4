"""The scoring flow: score a batch with a registered version, in input order."""

from __future__ import annotations

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from schemas.config import ScoringConfig
from schemas.scored import DECISION, SCORE
from tasks.load import IO_RETRIES, load_task, write_table
from tasks.registry import Registry
from tasks.validate import validate_batch


def score_frame(model, df: pd.DataFrame) -> pd.DataFrame:
    """Every input row, in order, with ``score`` and ``decision`` appended (replaced if there)."""
    validate_batch(df, model.schema)
    scores = model.score(df)
    base = df.drop(columns=[c for c in (SCORE, DECISION) if c in df.columns])
    return base.assign(**{SCORE: scores, DECISION: model.decide(df, scores)})


@task(name="load-model", cache_policy=NO_CACHE, **IO_RETRIES)
def load_model_task(registry: Registry, version: str):
    return registry.load(version)


@task(name="score", cache_policy=NO_CACHE)
def score_task(model, df: pd.DataFrame) -> pd.DataFrame:
    return score_frame(model, df)


@task(name="write", cache_policy=NO_CACHE, **IO_RETRIES)
def write_task(df: pd.DataFrame, path: str) -> str:
    return str(write_table(df, path))


@flow(name="rareflow-score", validate_parameters=True)
def scoring_flow(config: ScoringConfig) -> dict:
    """Score a batch with the champion (or a named version) and write it out."""
    log = get_run_logger()
    registry = Registry(config.registry, config.name)
    model, meta = load_model_task(registry, config.version)
    df = load_task(config.data)
    scored = score_task(model, df)
    out = write_task(scored, config.out)
    flagged = int(scored[DECISION].sum())
    log.info("Scored %d rows with %s %s (threshold %.4f): %d flagged; wrote %s",
             len(scored), config.name, meta["version"], model.threshold, flagged, out)
    return {"version": meta["version"], "rows": len(scored), "flagged": flagged, "out": out,
            "threshold": model.threshold}

"""Scoring a batch with a registered version: every input row, in order, with ``score`` and
``decision`` appended. Shared by the scoring and the monitoring flows."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.errors import DataError
from schemas.scored import DECISION, SCORE
from tasks.data.tables import write_table
from tasks.data.validation import validate_batch
from tasks.decision.served_classifier import decide
from tasks.registry.store import Registry
from tasks.runtime.io_retries import IO_RETRIES

logger = logging.getLogger(__name__)


def score_frame(model, df: pd.DataFrame) -> pd.DataFrame:
    """Every input row, in order, with ``score`` and ``decision`` appended (replaced if there).

    Raises:
        ValidationFailed: the batch does not match the version's input schema.
    """
    validate_batch(df, model.schema)
    scores = model.positive_proba(df)
    base = df.drop(columns=[c for c in (SCORE, DECISION) if c in df.columns])
    return base.assign(**{SCORE: scores, DECISION: model.decide(df, scores)})


def given_scores(df: pd.DataFrame) -> pd.Series:
    """A batch's own ``score`` column as floats.

    Raises:
        DataError: it does not hold probabilities in [0, 1].
    """
    scores = pd.to_numeric(df[SCORE], errors="coerce")
    bad = scores.isna() | (scores < 0) | (scores > 1)
    if bad.any():
        raise DataError(
            f"column {SCORE!r} must hold probabilities in [0, 1]; {int(bad.sum())} rows do not "
            f"(e.g. {df.loc[bad, SCORE].head(3).tolist()}): fix it or rescore the batch "
            "(--rescore)"
        )
    return scores.astype(float)


def scored_batch(model, df: pd.DataFrame, *, rescore: bool = False) -> pd.DataFrame:
    """The batch with this version's ``score`` and ``decision``, validated against its schema.

    A batch that already has a ``score`` column keeps it (scored earlier by ``rareflow score``);
    its ``decision`` is recomputed as ``score >= threshold`` of this version, with a warning
    when that disagrees with a ``decision`` column present. ``rescore`` scores it afresh.

    Raises:
        ValidationFailed: the batch does not match the version's input schema.
        DataError: an existing ``score`` column does not hold probabilities.
    """
    if rescore or SCORE not in df.columns:
        return score_frame(model, df)
    validate_batch(df, model.schema)
    scores = given_scores(df)
    decisions = decide(scores.to_numpy(), model.threshold).astype(np.int8)
    if DECISION in df.columns:
        given = pd.to_numeric(df[DECISION], errors="coerce").to_numpy()
        differ = int((given != decisions).sum())
        if differ:
            logger.warning("%d rows have a %r that differs from score >= %.4f (this version's "
                           "threshold); was the batch scored by another version? Using this "
                           "version's threshold; pass --rescore to score afresh", differ,
                           DECISION, model.threshold)
    return df.assign(**{SCORE: scores, DECISION: decisions})


@task(name="load-model", cache_policy=NO_CACHE, **IO_RETRIES)
def load_model_task(registry: Registry, version: str):
    """The version's model and metadata (checksum verified; I/O: retried)."""
    return registry.load(version)


@task(name="load-reference", cache_policy=NO_CACHE, **IO_RETRIES)
def reference_task(registry: Registry, version: str) -> pd.DataFrame:
    """The version's reference predictions on its test rows."""
    return registry.reference(version)


@task(name="write", cache_policy=NO_CACHE, **IO_RETRIES)
def write_task(df: pd.DataFrame, path: str) -> str:
    return str(write_table(df, path))


score_task = task(score_frame, name="score", cache_policy=NO_CACHE)
scored_batch_task = task(scored_batch, name="score-or-check", cache_policy=NO_CACHE)

"""The shadow challenger's columns in every scored row: its score, decision and version
beside the champion's (never served: ``decision`` stays the champion's).

Its live verdict is :mod:`tasks.serving.shadow`'s; the record
:mod:`tasks.registry.challenger`'s.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from schemas.scored import CHALLENGER_DECISION, CHALLENGER_SCORE, CHALLENGER_VERSION
from tasks.registry.challenger import read_challenger
from tasks.registry.store import Registry


def challenger_columns(registry: Registry, batch: pd.DataFrame) -> dict[str, np.ndarray]:
    """The challenger's ``challenger_score``, ``challenger_decision`` and
    ``challenger_version`` for a batch the champion scores (empty without a challenger): the
    scorer's extra-columns hook. The version is verified before it is unpickled."""
    return challenger_scorer(registry)(batch)


def challenger_scorer(registry: Registry):
    """The scorer's extra-columns hook for a run: the challenger (if any) loaded and verified
    once, then :func:`challenger_columns`' columns for each batch."""
    record = read_challenger(registry)
    if record is None:
        return lambda batch: {}
    return scorer_of(*registry.load(record["version"]))


def challenger_version(registry: Registry) -> str | None:
    """The version shadowing the champion, or None."""
    record = read_challenger(registry)
    return None if record is None else record["version"]


def scorer_of(model, meta: dict):
    """The extra-columns hook of a loaded challenger: its score, decision and version."""

    def columns(batch: pd.DataFrame) -> dict[str, np.ndarray]:
        scores = model.positive_proba(batch)
        return {CHALLENGER_SCORE: scores, CHALLENGER_DECISION: model.decide(batch, scores),
                CHALLENGER_VERSION: np.full(len(batch), meta["version"], dtype=object)}

    return columns

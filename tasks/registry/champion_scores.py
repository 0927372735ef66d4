"""The serving version a candidate is compared with, and its scores on the candidate's test rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.errors import RegistryError
from tasks.registry.store import Registry


@dataclass
class Champion:
    """The serving version a candidate is compared with, and its decisions on the test rows.

    ``version`` is None when there is no champion yet; ``error`` says why it could not score;
    ``train_rows`` holds the content hashes of its training rows (None if it kept none).
    """

    version: str | None = None
    decisions: np.ndarray | None = None
    error: str | None = None
    train_rows: np.ndarray | None = None
    scores: np.ndarray | None = None  # the champion's scores of the test rows


@task(name="score-champion", cache_policy=NO_CACHE)
def champion_task(registry: Registry, X: pd.DataFrame) -> Champion:
    """Read the champion pointer once and score the candidate's test rows with that version.

    A champion that fails its signature or checksums stops the run (exit 6): it is never
    unpickled, and nothing is compared with it.
    """
    pointer = registry.champion()
    if not pointer:
        return Champion()
    try:
        model, _ = registry.load(pointer["version"])
        train_rows = registry.train_rows(pointer["version"])
        scores = model.positive_proba(X)
        return Champion(pointer["version"], model.decide(X, scores), train_rows=train_rows,
                        scores=scores)
    except RegistryError:  # tampered, unsigned or unverifiable: stop, do not compare
        raise
    except Exception as exc:  # the comparison gate reports it; it does not crash training
        return Champion(pointer["version"], error=f"{type(exc).__name__}: {exc}")

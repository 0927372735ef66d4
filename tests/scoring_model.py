"""A small real model in a real signed registry, and a partitioned source for it: what the
scoring tests score (tests/unit/test_scored_source.py, tests/e2e/test_score_source_cli.py).
Importable as ``scoring_model`` (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from schemas.inference import FeatureSpec, InputSchema
from tasks.decision.served_classifier import served_classifier
from tasks.registry.store import Registry

NAME = "fraud"
SCHEMA = InputSchema(label="y", positive="1", negative="0", features=[
    FeatureSpec(name="amount", kind="numeric", dtype="float64"),
    FeatureSpec(name="kind", kind="categorical", dtype="object", categories=["a", "b", "c"])])


def rows(n: int, *, seed: int = 0, day: str = "2026-11-01", first_id: int = 0) -> pd.DataFrame:
    """``n`` rows of one day: id, event_time, amount, kind and the label y (rare)."""
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 50.0, n)
    kind = rng.choice(["a", "b", "c"], n)
    y = (rng.random(n) < 0.02 + 0.3 * (amount > 250)).astype(int)
    times = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(rng.integers(0, 86_400, n), "s")
    return pd.DataFrame({"id": np.arange(first_id, first_id + n), "event_time": times,
                         "amount": amount, "kind": kind, "y": y})


def fitted(seed: int = 0, threshold: float = 0.2):
    data = rows(2_000, seed=seed)
    pre = ColumnTransformer([("num", SimpleImputer(), ["amount"]),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["kind"])])
    model = make_pipeline(pre, LogisticRegression(C=1.0 + seed)).fit(data, data["y"])
    return served_classifier(model, threshold=threshold, schema=SCHEMA, spec=None, negative=0,
                             positive=1)


def publish(root: Path, *, seed: int = 0, threshold: float = 0.2, promote: bool = True,
            name: str = NAME) -> str:
    """Register (and promote) a version; returns its id."""
    reg = Registry(root, name)
    version = reg.register(fitted(seed, threshold), {"verdict": {"status": "passed"},
                                                     "schema": SCHEMA.model_dump()})
    if promote:
        reg.promote(version, reason=f"test champion {seed}")
    return version


def write_source(root: Path, days: dict[str, pd.DataFrame]) -> Path:
    """A hive-style source: ``date=DAY/part.parquet`` per day."""
    for day, frame in days.items():
        folder = root / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(folder / "part.parquet", index=False)
    return root

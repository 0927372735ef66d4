"""A version trained on a negative sample keeps every positive but a fraction of the negatives
in its reference: evidently's reports read it as the population it stands for
(tasks/monitor/reports.py: as_population), so inputs that mark the positives do not look
drifted against a batch of the population."""

from __future__ import annotations

import numpy as np
import pandas as pd

from schemas.inference import infer_input_schema
from schemas.scored import POPULATION_WEIGHT
from tasks.monitor.reports import as_population, data_drift_report, data_drift_summary


def population(n: int, seed: int) -> pd.DataFrame:
    """2 % positives, whose input ``x`` is shifted by 3 (an input that marks them)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.02).astype(int)
    return pd.DataFrame({"x": rng.normal(size=n) + 3.0 * y, "z": rng.normal(size=n), "y": y})


def negative_sample(frame: pd.DataFrame, rate: float, seed: int) -> pd.DataFrame:
    keep = (frame["y"] == 1) | (np.random.default_rng(seed).random(len(frame)) < rate)
    kept = frame[keep].reset_index(drop=True)
    return kept.assign(**{POPULATION_WEIGHT: np.where(kept["y"] == 1, 1.0, 1.0 / rate)})


def test_a_negative_sample_reference_is_read_as_its_population():
    """Check that the resampled reference holds the population's share of positives, and
    that the drift report finds x drifted against the raw sample but not against it."""
    reference = negative_sample(population(60_000, seed=0), rate=0.1, seed=1)
    assert reference["y"].mean() > 0.1  # about 17 % positives in the sample
    assert abs(as_population(reference)["y"].mean() - 0.02) < 0.01
    unweighted = reference.drop(columns=POPULATION_WEIGHT)
    assert as_population(unweighted) is unweighted
    batch = population(5000, seed=2)
    schema = infer_input_schema(batch.astype({"y": str}), label="y", positive="1",
                                negative="0")

    def drifted(ref):
        report = data_drift_report(batch, ref, schema=schema, sample=5000)
        return data_drift_summary(report)["drifted_columns"]

    assert "x" in drifted(reference.drop(columns=POPULATION_WEIGHT))  # the old behaviour
    assert drifted(reference) == []

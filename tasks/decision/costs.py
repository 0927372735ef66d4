"""What decisions cost: one type for training, judging, serving and monitoring.

:class:`DecisionCosts` owns what a missed positive and a false alarm cost (a fixed
``fn_cost``, or each row's own cost of a miss read from ``fn_cost_column``, e.g. the amount),
the review capacity and recall floor the threshold respects, the expected cost of 0/1
decisions, the cost of never flagging, and the normalised cost (:func:`normalised`: cost /
cost of never flagging). It is built once from the run's configuration
(:meth:`DecisionCosts.from_config`) or from a version's ``meta["costs"]``
(:meth:`DecisionCosts.from_meta`), and bound to the rows it judges with
:meth:`DecisionCosts.for_rows`.

The missing-amount rule, the same everywhere (training, the served classifier's ``score``,
monitoring and its estimate for rows awaiting labels): with ``fn_cost_column`` every row needs
a finite amount >= 0 in that column. A row without one is an error (:class:`DataError`, exit
2) that names the column and how many rows lack it; it is never counted as 0, so a cost is
never silently understated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from schemas.config import Costs
from schemas.errors import DataError
from tasks.data.value_checks import unusable_amounts


def normalised(cost, never, *, empty=float("nan")):
    """The normalised cost: ``cost`` divided by the cost of never flagging (``never``).

    0 is perfect, 1 is as costly as never flagging. A single figure is ``empty`` when there
    is nothing to miss (``never`` is 0). Arrays (a cost curve, bootstrap resamples) divide
    element by element; where ``never`` is 0 the cost is kept as it is (divided by 1), so a
    curve or a quantile stays defined.
    """
    if np.ndim(cost) == 0 and np.ndim(never) == 0:
        return float(cost / never) if never else empty
    never = np.asarray(never, dtype=float)
    return cost / np.where(never > 0, never, 1.0)


def row_miss_costs(X: pd.DataFrame, column: str) -> np.ndarray:
    """Each row's cost of a miss, from ``column`` of ``X`` (the missing-amount rule).

    Raises:
        DataError: the column is absent, or some rows hold no finite amount >= 0 (missing,
            not a number, infinite or negative): never counted as 0.
    """
    if column not in getattr(X, "columns", ()):
        raise DataError(f"cost column {column!r} (costs.fn_cost_column: each row's cost of a "
                        "miss) is missing from the rows; costs are in that money, so add it")
    bad = unusable_amounts(X[column])
    if bad.any():
        raise DataError(f"cost column {column!r} (costs.fn_cost_column) holds no amount on "
                        f"{int(bad.sum())} of {len(bad)} rows (missing, not a number or "
                        "negative): fill in each row's amount; a missing amount is never "
                        "counted as 0, so the cost is never understated")
    return pd.to_numeric(X[column]).to_numpy(dtype=np.float64)


@dataclass(frozen=True, eq=False)
class DecisionCosts:
    """What decisions cost, and what the threshold must respect.

    Args:
        fn_cost: Cost of a missed positive (when rows carry no cost of their own).
        fp_cost: Cost of a false alarm.
        fn_costs: Per-row cost of missing that row, aligned with the labels it is used with
            (only the positives' values matter); None: ``fn_cost`` for every row.
        max_alert_rate: Most rows flagged, as a share of all rows (e.g. 0.005 = 5 per 1,000).
        min_recall: Least share of positives flagged.
        fn_cost_column: The column per-row costs come from (:meth:`for_rows` reads it).
        sample_rate: The share of the population's negatives these rows keep (``sample`` when
            training on a negative sample, :mod:`tasks.data.negative_sample`; 1 for served
            rows): each negative row stands for ``negative_weight = 1 / sample_rate`` of them,
            and false alarms, precision and PR AUC count that.
    """

    fn_cost: float = 10.0
    fp_cost: float = 1.0
    fn_costs: np.ndarray | None = None
    max_alert_rate: float | None = None
    min_recall: float | None = None
    fn_cost_column: str | None = None
    sample_rate: float = 1.0

    def __post_init__(self):
        if self.fn_cost <= 0 or self.fp_cost <= 0:
            raise ValueError(f"costs must be > 0; got fn_cost={self.fn_cost}, "
                             f"fp_cost={self.fp_cost}")
        if self.fn_costs is not None:
            w = np.asarray(self.fn_costs, dtype=np.float64)
            if w.ndim != 1 or not np.isfinite(w).all() or (w < 0).any():
                raise ValueError("per-row costs must be finite numbers >= 0")
            object.__setattr__(self, "fn_costs", w)

    @classmethod
    def from_config(cls, costs: Costs) -> DecisionCosts:
        """The run's costs (``TrainingConfig.costs``), not yet bound to rows."""
        return cls(fn_cost=costs.fn_cost, fp_cost=costs.fp_cost,
                   max_alert_rate=costs.max_alert_rate, min_recall=costs.min_recall,
                   fn_cost_column=costs.fn_cost_column)

    @classmethod
    def from_meta(cls, costs: dict | None) -> DecisionCosts:
        """The costs a version recorded (``meta["costs"]``; older versions hold fewer keys)."""
        costs = costs or {}
        return cls(fn_cost=costs.get("fn_cost", 10.0), fp_cost=costs.get("fp_cost", 1.0),
                   max_alert_rate=costs.get("max_alert_rate"),
                   min_recall=costs.get("min_recall"),
                   fn_cost_column=costs.get("fn_cost_column") or None)

    @classmethod
    def for_training(cls, config) -> DecisionCosts:
        """A training run's costs: its config's, each negative row weighing ``1 / sample``
        when the window is a negative sample (``sample`` frozen to the rate used, see
        :func:`tasks.data.negative_sample.frozen_sample`)."""
        sample = getattr(config, "sample", None)
        if sample == "auto":
            raise ValueError("sample is still 'auto': freeze it to the rate the window was "
                             "read with (tasks.data.negative_sample.frozen_sample)")
        return replace(cls.from_config(config.costs),
                       sample_rate=1.0 if sample is None else float(sample))

    @property
    def negative_weight(self) -> float:
        """How many of the population's negatives each negative row stands for."""
        return 1.0 / self.sample_rate

    @property
    def false_alarm_cost(self) -> float:
        """What a false alarm on one of these rows costs: ``fp_cost`` for each negative of the
        population the row stands for."""
        return self.fp_cost * self.negative_weight

    def in_population(self, rows, positives):
        """A count of rows (or flagged rows) of which ``positives`` are positive, in the
        population's rows: each negative row counts ``negative_weight``."""
        return positives + (rows - positives) * self.negative_weight

    def row_weights(self, y) -> np.ndarray | None:
        """How many population rows each row stands for (None: one each, no sample)."""
        if self.sample_rate == 1.0:
            return None
        return np.where(np.asarray(y).astype(bool), 1.0, self.negative_weight)

    def for_rows(self, X: pd.DataFrame) -> DecisionCosts:
        """The same costs for the rows of ``X``: each row's miss cost read from
        ``fn_cost_column`` (:func:`row_miss_costs`, the missing-amount rule), if there is one."""
        if self.fn_cost_column is None:
            return self
        return replace(self, fn_costs=row_miss_costs(X, self.fn_cost_column))

    @property
    def per_row(self) -> bool:
        return self.fn_costs is not None

    @property
    def constrained(self) -> bool:
        return self.max_alert_rate is not None or self.min_recall is not None

    def rows(self, idx) -> DecisionCosts:
        """The same costs for a subset of rows (positions or a boolean mask)."""
        return self if self.fn_costs is None else replace(self, fn_costs=self.fn_costs[idx])

    def miss_costs(self, y) -> np.ndarray:
        """What missing each row costs (zero for negatives)."""
        y = np.asarray(y).astype(bool)
        if self.fn_costs is None:
            return np.where(y, self.fn_cost, 0.0)
        if len(self.fn_costs) != len(y):
            raise ValueError(f"per-row costs cover {len(self.fn_costs)} rows; the labels "
                             f"{len(y)}")
        return np.where(y, self.fn_costs, 0.0)

    def positive_miss_costs(self, y) -> np.ndarray | None:
        """What missing each row costs when rows carry their own cost, else None."""
        return self.miss_costs(y) if self.per_row else None

    def expected(self, y, decisions, *, weights=None) -> float:
        """Total cost of 0/1 decisions (``weights``: each row counts that many times; not with
        a ``sample_rate``, which weighs the negatives already)."""
        y = np.asarray(y).astype(bool)
        d = np.asarray(decisions).astype(bool)
        if weights is not None:
            self._weights_or_sample()
            w = np.asarray(weights, dtype=float)
            return float((w * self.miss_costs(np.ones(len(y), bool)))[y & ~d].sum()
                         + self.false_alarm_cost * float(w[~y & d].sum()))
        if self.per_row:
            return float(self.miss_costs(y)[y & ~d].sum()
                         + self.false_alarm_cost * np.sum(~y & d))
        return float(self.fn_cost * np.sum(y & ~d) + self.false_alarm_cost * np.sum(~y & d))

    def never_flag(self, y, *, weights=None) -> float:
        """What flagging nothing costs: every positive missed (the normalised cost's
        denominator)."""
        if weights is None:
            return float(self.miss_costs(y).sum())
        y = np.asarray(y).astype(bool)
        w = np.asarray(weights, dtype=float)
        return float((w * self.miss_costs(np.ones(len(y), bool)))[y].sum())

    def expected_given(self, p, decisions, *, weights=None) -> tuple[float, float]:
        """Expected cost of 0/1 decisions and of never flagging, when labels are not known
        yet and each row is positive with probability ``p`` (per-row costs: of these rows;
        ``weights``: how many rows each row stands for)."""
        if weights is not None:
            self._weights_or_sample()
        p = np.asarray(p, dtype=float)
        d = np.asarray(decisions).astype(bool)
        n = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=float)
        tp, fn, fp = (n * p)[d].sum(), (n * p)[~d].sum(), (n * (1 - p))[d].sum()
        if not self.per_row:
            return float(self.fn_cost * fn + self.fp_cost * fp), float(self.fn_cost * (tp + fn))
        w = self.fn_costs * n
        return float((p[~d] * w[~d]).sum() + self.fp_cost * fp), float((p * w).sum())

    def _weights_or_sample(self) -> None:
        if self.sample_rate != 1.0:
            raise ValueError("row weights and a sample_rate would both weigh the negatives: "
                             "give one of them")

    def normalised(self, y, decisions, *, empty=float("nan")) -> float:
        """:meth:`expected` / :meth:`never_flag` (``empty`` when there is nothing to miss)."""
        return normalised(self.expected(y, decisions), self.never_flag(y), empty=empty)

    def describe(self) -> str:
        fn = "each row's own cost" if self.per_row else f"{self.fn_cost:g}"
        text = f"{fn}·FN + {self.fp_cost:g}·FP"
        if self.max_alert_rate is not None:
            text += f", at most {self.max_alert_rate * 1000:g} alerts per 1,000 rows"
        if self.min_recall is not None:
            text += f", recall at least {self.min_recall:g}"
        return text

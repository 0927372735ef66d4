"""Monitoring steps: late-label maturity, the minority-recall drift decision, expected cost, and
the evidently reports comparing a labelled batch with a version's reference.

The recall decision is a one-sided non-inferiority test of two binomial proportions
(detected positives / positives, batch against reference). It asks whether the batch recall
is *more than* ``tolerance`` below the reference recall, beyond what chance explains given how
many positives each side has. The statistic is the Miettinen-Nurminen score (restricted-MLE
variance times ``N / (N - 1)``); its p-value is summed exactly over every outcome under the
restricted MLE (an "E-test", Krishnamoorthy & Thomson 2004) rather than read off the normal
curve, which raises too many alarms with few positives and high recall (measured: size 0.11
at nominal 0.05 for 5 batch positives at recall 0.95; the exact sum stays near 0.05). The
confidence bound reported with it is that test inverted, so "p-value below
``1 - confidence``" and "upper bound of (batch - reference) recall below ``-tolerance``" agree.

evidently is imported inside the report functions only: importing it takes seconds, and
nothing else (the CLI, training, scoring) should pay for it.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from scipy.optimize import brentq
from scipy.stats import binom, norm

from schemas.errors import DataError
from schemas.inference import InputSchema
from schemas.scored import DECISION, SCORE
from tasks.load import IO_RETRIES
from tasks.threshold import expected_cost
from tasks.validate import label_text

logger = logging.getLogger(__name__)

NO_DRIFT = "no-drift"
DRIFT = "drift"
CANNOT_JUDGE = "cannot-judge"
TRUE_TEXT = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_TEXT = frozenset({"false", "f", "no", "n", "0", "0.0", ""})
# Distance-based stattests: cheap, and unlike KS / chi-square p-values they do not flag every
# column as drifted once samples reach tens of thousands of rows. Both use threshold 0.1.
NUM_STATTEST = "psi"
CAT_STATTEST = "jensenshannon"


# -- late labels ---------------------------------------------------------------------------
def _utc(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _truthy(values: pd.Series, *, column: str) -> np.ndarray:
    """A 'label available' flag as booleans (missing counts as not available)."""
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(False).to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(values):
        return (values.fillna(0).to_numpy(dtype=float) != 0)
    text = values.fillna("").astype(str).str.strip().str.lower()
    unknown = sorted(set(text) - TRUE_TEXT - FALSE_TEXT)
    if unknown:
        raise DataError(
            f"label-available column {column!r} must hold true/false, yes/no or 1/0; found "
            f"{unknown[:5]}: fix those values or drop the option"
        )
    return text.isin(TRUE_TEXT).to_numpy()


def _parse_times(raw: pd.Series) -> pd.Series:
    """Times as UTC timestamps: ISO 8601 fast, other layouts one by one; NaT where unreadable."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        return pd.to_datetime(raw, utc=True)
    times = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    retry = times.isna() & raw.notna()
    if retry.any():
        times[retry] = pd.to_datetime(raw[retry], utc=True, errors="coerce", format="mixed")
    return times


def matured_mask(
    df: pd.DataFrame,
    *,
    label_time_column: str | None = None,
    label_available_column: str | None = None,
    delay_days: float = 0.0,
    as_of: str | datetime | None = None,
) -> np.ndarray:
    """Which rows carry a matured label, i.e. one that may be used to judge recall.

    A row is matured when its label-available flag is true (if that column is given) and its
    label time is at least ``delay_days`` before ``as_of`` (if a label-time column is given).
    A missing time or flag means "not matured". With neither column every row is matured
    (rows whose label itself is missing are dropped later, by the caller).

    Args:
        df: The batch.
        label_time_column: Column with the time each label became known (ISO text or
            datetime; a time without zone is taken as UTC).
        label_available_column: Column saying whether the row's label is known.
        delay_days: Labels younger than this are not yet final (chargebacks still arriving).
        as_of: The time maturity is judged at; default now (UTC).

    Raises:
        DataError: a named column is missing or holds values that are not times or flags.

    Example:
        >>> df = pd.DataFrame({"t": ["2024-01-01", "2024-01-09", None]})
        >>> matured_mask(df, label_time_column="t", delay_days=7, as_of="2024-01-10").tolist()
        [True, False, False]
    """
    mask = np.ones(len(df), dtype=bool)
    for option, column in (("label_available_column", label_available_column),
                           ("label_time_column", label_time_column)):
        if column is not None and column not in df.columns:
            raise DataError(
                f"{option} {column!r} is not a column of the batch; its columns are "
                f"{list(map(str, df.columns))[:20]}: fix the name or drop the option"
            )
    if label_available_column is not None:
        mask &= _truthy(df[label_available_column], column=label_available_column)
    if label_time_column is not None:
        raw = df[label_time_column]
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            raise DataError(
                f"label_time_column {label_time_column!r} must hold dates or times (ISO text or "
                f"datetime); got numbers ({raw.dtype}): convert them to timestamps first"
            )
        times = _parse_times(raw)
        bad = times.isna() & raw.notna()
        if bad.any():
            examples = raw[bad].astype(str).unique()[:3].tolist()
            raise DataError(
                f"label_time_column {label_time_column!r} must hold dates or times; "
                f"{int(bad.sum())} values are not ({examples}): fix or blank them"
            )
        cutoff = _utc(as_of if as_of is not None else datetime.now(UTC))
        cutoff -= pd.Timedelta(days=delay_days)
        mask &= (times.notna() & (times <= cutoff)).to_numpy()
    return mask


def binary_labels(labels: pd.Series, *, positive: str, negative: str) -> np.ndarray:
    """The label column as 1.0 (positive), 0.0 (negative) or NaN (not labelled yet).

    Values are compared as text the way training read them (1.0 matches '1').

    Raises:
        DataError: a value is neither the version's positive nor its negative label.
    """
    present = labels.notna()
    text = label_text(labels[present])
    unknown = text[~text.isin([positive, negative])]
    if len(unknown):
        raise DataError(
            f"label {labels.name!r} must hold the values the model was trained on "
            f"({positive!r} positive, {negative!r} negative, or empty when not yet known); "
            f"{len(unknown)} rows hold {sorted(unknown.unique())[:5]}: fix or drop those rows"
        )
    out = np.full(len(labels), np.nan)
    out[present.to_numpy()] = (text == positive).to_numpy(dtype=float)
    return out


def usable_labels(
    df: pd.DataFrame,
    *,
    schema: InputSchema,
    label_time_column: str | None = None,
    label_available_column: str | None = None,
    delay_days: float = 0.0,
    as_of: str | datetime | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The batch's labels as 1.0/0.0/NaN, and which rows may judge the model (matured, known).

    Raises:
        DataError: the label column is missing or holds unknown values, or a maturity
            column is missing or malformed.
    """
    if schema.label not in df.columns:
        raise DataError(
            f"monitoring needs the label column {schema.label!r} the model was trained on; the "
            f"batch has {list(map(str, df.columns))[:20]}: add the labels (empty where not yet "
            "known)"
        )
    y = binary_labels(df[schema.label], positive=schema.positive, negative=schema.negative)
    mask = matured_mask(df, label_time_column=label_time_column,
                        label_available_column=label_available_column, delay_days=delay_days,
                        as_of=as_of)
    usable = mask & ~np.isnan(y)
    logger.info("%d of %d rows have matured labels (%d unlabelled, %d not matured)",
                int(usable.sum()), len(df), int(np.isnan(y).sum()), int((~mask).sum()))
    return y, usable


# -- figures ---------------------------------------------------------------------------------
def classification_figures(y, decisions) -> dict:
    """Counts and rates of 0/1 decisions against 0/1 labels: minority recall first."""
    y = np.asarray(y).astype(bool)
    d = np.asarray(decisions).astype(bool)
    positives, flagged = int(y.sum()), int(d.sum())
    detected = int((y & d).sum())
    return {
        "rows": int(len(y)),
        "positives": positives,
        "detected": detected,
        "flagged": flagged,
        "recall": detected / positives if positives else None,
        "precision": detected / flagged if flagged else None,
        "prevalence": positives / len(y) if len(y) else None,
        "flag_rate": flagged / len(y) if len(y) else None,
    }


def cost_figures(y, decisions, *, fn_cost: float, fp_cost: float) -> dict:
    """Expected cost of the decisions at the model's threshold, absolute, per row, normalised.

    ``normalised_cost`` divides by the cost of never flagging anything (fn_cost x positives),
    as the training gates do, so a batch and the reference compare despite their sizes.
    """
    y = np.asarray(y).astype(bool)
    d = np.asarray(decisions).astype(bool)
    cost = expected_cost(y, d, fn_cost=fn_cost, fp_cost=fp_cost)
    never = fn_cost * float(y.sum())
    return {
        "expected_cost": cost,
        "cost_per_row": cost / len(y) if len(y) else None,
        "normalised_cost": cost / never if never else None,
        "fn": int((y & ~d).sum()),
        "fp": int((~y & d).sum()),
        "fn_cost": float(fn_cost),
        "fp_cost": float(fp_cost),
    }


# -- the recall drift test ---------------------------------------------------------------------
EXACT_MAX_CELLS = 250_000  # outcome grid above which the normal approximation is used


def _restricted_mle(x1, n1: int, x2, n2: int, delta: float):
    """Maximum-likelihood (p1, p2) under p1 - p2 = delta (Farrington & Manning 1990, eq. 4).

    ``x1`` and ``x2`` may be arrays (broadcast together).
    """
    p1h, p2h = np.asarray(x1, dtype=float) / n1, np.asarray(x2, dtype=float) / n2
    theta = n2 / n1
    a = 1.0 + theta
    b = -(1.0 + theta + p1h + theta * p2h + delta * (theta + 2.0))
    c = delta * delta + delta * (2.0 * p1h + theta + 1.0) + p1h + theta * p2h
    d = -p1h * delta * (1.0 + delta)
    v = b**3 / (27.0 * a**3) - b * c / (6.0 * a * a) + d / (2.0 * a)
    u = np.copysign(np.sqrt(np.maximum(b * b / (9.0 * a * a) - c / (3.0 * a), 0.0)), v)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(u != 0, (np.pi + np.arccos(np.clip(v / u**3, -1.0, 1.0))) / 3.0,
                     np.pi / 2)
    p1 = np.clip(2.0 * u * np.cos(w) - b / (3.0 * a), 0.0, 1.0)
    return p1, np.clip(p1 - delta, 0.0, 1.0)


def score_statistic(x1, n1: int, x2, n2: int, *, delta: float):
    """Miettinen-Nurminen score statistic for H0: p1 - p2 = delta (arrays broadcast).

    ``(p1_hat - p2_hat - delta) / se``, with the variance taken at the restricted MLE and
    multiplied by ``N / (N - 1)``. Negative values point to ``p1 - p2 < delta``.
    """
    p1, p2 = _restricted_mle(x1, n1, x2, n2, delta)
    n = n1 + n2
    var = (p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) * n / max(n - 1, 1)
    diff = np.asarray(x1, dtype=float) / n1 - np.asarray(x2, dtype=float) / n2 - delta
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, diff / np.sqrt(np.where(var > 0, var, 1.0)), np.sign(diff) * np.inf)
    return np.where((var <= 0) & (diff == 0), 0.0, z)


def _binomial_support(n: int, p: float, eps: float = 1e-10):
    """Outcomes 0..n of Binomial(n, p) outside the extreme ``eps`` tails, and their masses."""
    lo, hi = int(binom.ppf(eps, n, p)), int(binom.isf(eps, n, p))
    x = np.arange(max(lo - 1, 0), min(hi + 1, n) + 1)
    return x, binom.pmf(x, n, p)


def recall_drop_pvalue(x1: int, n1: int, x2: int, n2: int, *, delta: float,
                       max_cells: int = EXACT_MAX_CELLS) -> float:
    """One-sided p-value of H0: p1 - p2 >= delta against H1: p1 - p2 < delta.

    Group 1 is the batch, group 2 the reference, ``delta = -tolerance``. The statistic is the
    Miettinen-Nurminen score; its p-value is computed exactly under the restricted MLE of the
    proportions (the "E-test", a parametric bootstrap summed over every outcome), because the
    normal approximation is anti-conservative with few positives and high recall. Beyond
    ``max_cells`` outcome pairs the counts are large enough for the normal approximation.
    """
    z_obs = float(score_statistic(x1, n1, x2, n2, delta=delta))
    p1, p2 = _restricted_mle(x1, n1, x2, n2, delta)
    xs1, w1 = _binomial_support(n1, float(p1))
    xs2, w2 = _binomial_support(n2, float(p2))
    if len(xs1) * len(xs2) > max_cells:
        return float(norm.cdf(z_obs))
    z = score_statistic(xs1[:, None], n1, xs2[None, :], n2, delta=delta)
    return float(min(np.sum(np.outer(w1, w2) * (z <= z_obs + 1e-9)), 1.0))


def difference_upper_bound(x1: int, n1: int, x2: int, n2: int, *, confidence: float,
                           max_cells: int = EXACT_MAX_CELLS) -> float:
    """One-sided upper confidence bound of p1 - p2, by inverting :func:`recall_drop_pvalue`."""
    alpha = 1.0 - confidence
    observed = x1 / n1 - x2 / n2
    top, bottom = 1.0 - 1e-9, -1.0 + 1e-9

    def excess(delta: float) -> float:
        return recall_drop_pvalue(x1, n1, x2, n2, delta=delta, max_cells=max_cells) - alpha

    if observed >= top or excess(top) >= 0:
        return 1.0
    start = observed if excess(observed) >= 0 else bottom
    if excess(start) < 0:
        return -1.0
    return float(brentq(excess, start, top, xtol=1e-6))


@dataclass(frozen=True)
class RecallDrift:
    """The recall drift verdict and the figures it rests on.

    ``status`` is ``"drift"`` (batch recall is more than ``tolerance`` below the reference at
    the given confidence), ``"no-drift"``, or ``"cannot-judge"`` (too few matured positives).
    ``diff_upper_bound`` is the one-sided upper confidence bound of batch minus reference
    recall; drift means it lies below ``-tolerance`` (equivalently ``p_value < 1 - confidence``).
    """

    status: str
    reason: str
    batch_recall: float | None
    reference_recall: float | None
    batch_positives: int
    batch_detected: int
    reference_positives: int
    reference_detected: int
    tolerance: float
    confidence: float
    min_positives: int
    p_value: float | None = None
    diff_upper_bound: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def decide_recall_drift(
    *,
    batch_detected: int,
    batch_positives: int,
    reference_detected: int,
    reference_positives: int,
    tolerance: float = 0.05,
    confidence: float = 0.95,
    min_positives: int = 20,
) -> RecallDrift:
    """Decide whether minority-class recall dropped by more than ``tolerance`` beyond chance.

    The test is one-sided (only a drop is drift) and uses both sides' positive counts, so a
    batch with five positives does not raise an alarm on noise; below ``min_positives``
    matured positives it refuses to judge.

    Args:
        batch_detected: Matured batch positives the model flagged.
        batch_positives: Matured batch positives.
        reference_detected: Reference (test-set) positives the model flagged.
        reference_positives: Reference positives.
        tolerance: Recall drop tolerated as no drift.
        confidence: Confidence of the one-sided test (alarm when p < 1 - confidence).
        min_positives: Fewest matured batch positives to judge on.

    Example:
        >>> decide_recall_drift(batch_detected=40, batch_positives=100, reference_detected=80,
        ...                     reference_positives=100).status
        'drift'
    """
    for name, detected, positives in (("batch", batch_detected, batch_positives),
                                      ("reference", reference_detected, reference_positives)):
        if not 0 <= detected <= positives:
            raise ValueError(f"{name} detected positives must be between 0 and its positives "
                             f"({positives}); got {detected}")
    base = {
        "batch_recall": batch_detected / batch_positives if batch_positives else None,
        "reference_recall": (reference_detected / reference_positives
                             if reference_positives else None),
        "batch_positives": int(batch_positives), "batch_detected": int(batch_detected),
        "reference_positives": int(reference_positives),
        "reference_detected": int(reference_detected),
        "tolerance": float(tolerance), "confidence": float(confidence),
        "min_positives": int(min_positives),
    }
    if batch_positives < min_positives:
        return RecallDrift(
            status=CANNOT_JUDGE, **base,
            reason=(f"only {batch_positives} matured positives in the batch; at least "
                    f"{min_positives} are needed to judge recall"),
        )
    if reference_positives == 0:
        return RecallDrift(status=CANNOT_JUDGE, **base,
                           reason="the reference has no positives to compare with")
    p = recall_drop_pvalue(batch_detected, batch_positives, reference_detected,
                           reference_positives, delta=-tolerance)
    bound = difference_upper_bound(batch_detected, batch_positives, reference_detected,
                                   reference_positives, confidence=confidence)
    drift = p < 1.0 - confidence
    verb = "dropped" if drift else "did not drop"
    reason = (f"recall {verb} by more than {tolerance:.3g} (batch {base['batch_recall']:.3f} "
              f"on {batch_positives} positives vs reference {base['reference_recall']:.3f} on "
              f"{reference_positives}; one-sided p={p:.3g}, {confidence:.0%} upper bound of the "
              f"difference {bound:+.3f})")
    return RecallDrift(status=DRIFT if drift else NO_DRIFT, reason=reason, p_value=p,
                       diff_upper_bound=bound, **base)


# -- evidently reports ---------------------------------------------------------------------
def classification_frame(y, scores, decisions, *, schema: InputSchema) -> pd.DataFrame:
    """The label as 0/1 (under its own name), ``score`` and ``decision``: what evidently reads."""
    return pd.DataFrame({schema.label: np.asarray(y).astype(int),
                         SCORE: np.asarray(scores, dtype=float),
                         DECISION: np.asarray(decisions).astype(int)})


def quality_report(batch: pd.DataFrame, reference: pd.DataFrame, *, schema: InputSchema,
                   threshold: float):
    """evidently classification report (recall, precision, F1, ROC AUC, ...) at the threshold.

    Both frames come from :func:`classification_frame` (matured batch rows only). evidently decides
    from ``score`` with ``probas_threshold`` when probabilities are given (it ignores the
    decision column then), so the version's threshold is passed to keep both in step.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    columns = [schema.label, SCORE, DECISION]
    definition = DataDefinition(
        numerical_columns=[SCORE],
        classification=[BinaryClassification(
            target=schema.label, prediction_labels=DECISION, prediction_probas=SCORE,
            pos_label=1)],
    )
    report = Report([ClassificationPreset(probas_threshold=threshold)])
    return report.run(Dataset.from_pandas(batch[columns], data_definition=definition),
                      Dataset.from_pandas(reference[columns], data_definition=definition))


def sample_rows(df: pd.DataFrame, n: int, *, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, drawn without replacement (all rows when there are fewer)."""
    return df if len(df) <= n else df.sample(n=n, random_state=seed)


def data_drift_report(batch: pd.DataFrame, reference: pd.DataFrame, *, schema: InputSchema,
                      sample: int, seed: int = 0, num_method: str = NUM_STATTEST,
                      cat_method: str = CAT_STATTEST):
    """evidently data-drift report on the input columns, on at most ``sample`` rows per side.

    One ``ValueDrift`` per column plus ``DriftedColumnsCount``, rather than DataDriftPreset,
    whose rendering recomputes the drift of every column through the legacy metrics.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    features = schema.feature_names
    definition = DataDefinition(numerical_columns=schema.numeric,
                                categorical_columns=schema.categorical)
    metrics = [DriftedColumnsCount(columns=features, num_method=num_method,
                                   cat_method=cat_method)]
    metrics += [ValueDrift(column=f.name,
                           method=num_method if f.kind == "numeric" else cat_method)
                for f in schema.features]
    current = sample_rows(batch[features], sample, seed=seed)
    ref = sample_rows(reference[features], sample, seed=seed)
    logger.info("Data drift on %d batch rows and %d reference rows (%s / %s)", len(current),
                len(ref), num_method, cat_method)
    report = Report(metrics, include_tests=True)
    return report.run(Dataset.from_pandas(current, data_definition=definition),
                      Dataset.from_pandas(ref, data_definition=definition))


def data_drift_summary(snapshot_dict: dict) -> dict:
    """Drifted columns and their scores from a data-drift snapshot's ``dict()``."""
    columns, drifted, share = {}, [], None
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        kind = config.get("type", "")
        if kind.endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
        elif kind.endswith("ValueDrift"):
            columns[metric["id"]] = {"column": config["column"], "method": config.get("method"),
                                     "threshold": config.get("threshold"),
                                     "score": metric["value"]}
    for test in snapshot_dict.get("tests", []):
        metric_id = test.get("metric_config", {}).get("metric_id")
        if metric_id in columns:
            columns[metric_id]["drifted"] = test.get("status") == "FAIL"
            if columns[metric_id]["drifted"]:
                drifted.append(columns[metric_id]["column"])
    return {"drifted_columns": drifted, "drift_share": share,
            "columns": sorted(columns.values(), key=lambda c: c["column"])}


# -- persisting --------------------------------------------------------------------------------
def report_folder(reports_dir: Path, *, now: datetime | None = None) -> Path:
    """A new, unique folder for one monitoring run under a version's ``reports/``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(reports_dir) / f"monitor-{stamp}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def save_snapshot(snapshot, folder: Path, stem: str) -> dict:
    """Write an evidently snapshot as ``<stem>.html`` and ``<stem>.json``; return the paths.

    evidently's ``save_html``/``save_json`` write nothing when given a ``Path``: pass ``str``
    and check the files exist.
    """
    paths = {"html": folder / f"{stem}.html", "json": folder / f"{stem}.json"}
    snapshot.save_html(str(paths["html"]))
    snapshot.save_json(str(paths["json"]))
    for path in paths.values():
        if not path.is_file() or path.stat().st_size == 0:
            raise OSError(f"evidently did not write {path}")
    return {key: str(path) for key, path in paths.items()}


def write_summary(summary: dict, folder: Path) -> str:
    """Write the run's verdict and figures as ``summary.json``; return its path."""
    path = Path(folder) / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=_json_default), encoding="utf-8")
    return str(path)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def verdict_line(result: dict) -> str:
    """One line: the verdict, the recall figures behind it, the cost, data drift, the report."""
    d, b, r = result["decision"], result["batch"], result["reference"]
    head = f"{d['status'].upper().replace('-', ' ')} {result['name']} {result['version']}"
    if d["status"] == CANNOT_JUDGE:
        body = d["reason"]
    else:
        alpha = 1 - d["confidence"]
        body = (f"minority recall {_fmt(b['recall'])} on {b['positives']} matured positives vs "
                f"{_fmt(r['recall'])} reference on {r['positives']} (tolerance "
                f"{d['tolerance']:.3g}, one-sided p={d['p_value']:.2g} "
                f"{'<' if d['p_value'] < alpha else '>='} {alpha:.2g})")
    cost = result["cost"]["batch"]
    dd = result["data_drift"]
    report = result["reports"].get("quality_html") or result["reports"].get("data_drift_html")
    return (f"{head}: {body}; expected cost {_fmt(cost['expected_cost'], '.1f')} on "
            f"{b['rows']} matured rows; {len(dd['drifted_columns'])}/{len(dd['columns'])} input "
            f"columns drifted; report {report}")


def _fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def headline_markdown(result: dict) -> str:
    """The figures a person reads first: the verdict, recall both sides, cost, data drift."""
    d, b, r = result["decision"], result["batch"], result["reference"]
    cb, cr = result["cost"]["batch"], result["cost"]["reference"]
    dd = result["data_drift"]
    links = " | ".join(f"[{name}]({Path(p).resolve().as_uri()})"
                       for name, p in result["reports"].items() if p.endswith(".html"))
    return "\n".join([
        f"# Monitoring {result['name']} {result['version']}: **{d['status']}**", "",
        d["reason"], "",
        "| | batch (matured) | reference |", "|---|---:|---:|",
        f"| rows | {b['rows']} | {r['rows']} |",
        f"| positives | {b['positives']} | {r['positives']} |",
        f"| minority recall | {_fmt(b['recall'])} | {_fmt(r['recall'])} |",
        f"| precision | {_fmt(b['precision'])} | {_fmt(r['precision'])} |",
        f"| expected cost | {_fmt(cb['expected_cost'], '.1f')} | "
        f"{_fmt(cr['expected_cost'], '.1f')} |",
        f"| cost per row | {_fmt(cb['cost_per_row'], '.4f')} | "
        f"{_fmt(cr['cost_per_row'], '.4f')} |",
        f"| normalised cost | {_fmt(cb['normalised_cost'])} | {_fmt(cr['normalised_cost'])} |",
        "",
        f"Batch: {result['rows']} rows, {result['matured_rows']} with matured labels. "
        f"Threshold {result['threshold']:.4f}. One-sided p = {_fmt(d['p_value'], '.3g')}; "
        f"{d['confidence']:.0%} upper bound of the recall difference "
        f"{_fmt(d['diff_upper_bound'], '+.3f')} (tolerance {d['tolerance']:.3g}).",
        "",
        f"Data drift ({dd['batch_rows']} batch and {dd['reference_rows']} reference rows, "
        f"{dd['num_method']} / {dd['cat_method']}): "
        f"{len(dd['drifted_columns'])}/{len(dd['columns'])} input columns drifted"
        + (f" ({', '.join(dd['drifted_columns'])})" if dd["drifted_columns"] else "") + ".",
        "", f"Reports: {links}",
    ])


# -- Prefect tasks (thin wrappers) ---------------------------------------------------------------
usable_labels_task = task(usable_labels, name="matured-labels", cache_policy=NO_CACHE)
decide_task = task(decide_recall_drift, name="recall-drift", cache_policy=NO_CACHE)
quality_report_task = task(quality_report, name="quality-report", cache_policy=NO_CACHE)
data_drift_report_task = task(data_drift_report, name="data-drift-report", cache_policy=NO_CACHE)


@task(name="save-reports", cache_policy=NO_CACHE, **IO_RETRIES)
def save_reports_task(snapshots: dict, reports_dir: Path) -> tuple[str, dict]:
    """Write every snapshot as HTML + JSON in a new folder (I/O: retried)."""
    folder = report_folder(reports_dir)
    paths = {}
    for stem, snapshot in snapshots.items():
        if snapshot is not None:
            for kind, path in save_snapshot(snapshot, folder, stem).items():
                paths[f"{stem}_{kind}"] = path
    return str(folder), paths


write_summary_task = task(write_summary, name="write-summary", cache_policy=NO_CACHE,
                          **IO_RETRIES)

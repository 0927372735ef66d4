"""evidently reports comparing a labelled batch with a version's reference, and their files.

evidently is imported inside the report functions only: importing it takes seconds, and
nothing else (the CLI, training, scoring) should pay for it.
"""

from __future__ import annotations

import html
import logging
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import DEFAULT_CAT_STATTEST, DEFAULT_NUM_STATTEST
from schemas.errors import storage_error
from schemas.inference import InputSchema
from schemas.scored import DECISION, POPULATION_WEIGHT, SCORE
from tasks.monitor._evidently_snapshot import check_report_html, drift_summary
from tasks.runtime.io_retries import IO_RETRIES

logger = logging.getLogger(__name__)


def classification_frame(y, scores, decisions, *, schema: InputSchema) -> pd.DataFrame:
    """The label as 0/1 (under its own name), ``score`` and ``decision``: what evidently reads."""
    return pd.DataFrame({schema.label: np.asarray(y).astype(int),
                         SCORE: np.asarray(scores, dtype=float),
                         DECISION: np.asarray(decisions).astype(int)})


def html_safe(value) -> str:
    """A name or text value as evidently may embed it in HTML: ``&``, ``<`` and ``>`` escaped
    (one to one: :func:`html.unescape` gives the value back)."""
    return html.escape(str(value), quote=False)


def html_safe_frame(df: pd.DataFrame, *, text_columns=()) -> pd.DataFrame:
    """A copy of ``df`` whose column names, and text values of ``text_columns``, are
    :func:`html_safe`: what evidently embeds in a report's script can never close it."""
    out = df.rename(columns=html_safe)
    for column in text_columns:
        values = out[html_safe(column)]
        if isinstance(values.dtype, pd.CategoricalDtype):
            out[html_safe(column)] = values.cat.rename_categories(
                [html_safe(c) if isinstance(c, str) else c for c in values.cat.categories])
        elif values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            out[html_safe(column)] = values.map(
                lambda v: html_safe(v) if isinstance(v, str) else v, na_action="ignore")
    return out


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
            target=html_safe(schema.label), prediction_labels=DECISION,
            prediction_probas=SCORE, pos_label=1)],
    )
    report = Report([ClassificationPreset(probas_threshold=threshold)])
    return report.run(
        Dataset.from_pandas(html_safe_frame(batch[columns]), data_definition=definition),
        Dataset.from_pandas(html_safe_frame(reference[columns]), data_definition=definition))


def sample_rows(df: pd.DataFrame, n: int, *, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, drawn without replacement (all rows when there are fewer)."""
    return df if len(df) <= n else df.sample(n=n, random_state=seed)


def as_population(reference: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """The reference as the population it stands for: a version trained on a negative sample
    keeps every positive but a fraction of the negatives, each negative standing for
    ``POPULATION_WEIGHT`` rows; evidently weighs every row alike, so its reports get as many
    rows drawn with replacement in proportion to those weights (without weights: unchanged).
    Otherwise the reference would hold ten times too many positives at a rate of 0.1, and
    every input that marks fraud would look drifted."""
    if POPULATION_WEIGHT not in reference.columns:
        return reference
    weights = reference[POPULATION_WEIGHT].to_numpy(dtype=float)
    return reference.sample(n=len(reference), replace=True, weights=weights / weights.sum(),
                            random_state=seed).reset_index(drop=True)


def data_drift_report(batch: pd.DataFrame, reference: pd.DataFrame, *, schema: InputSchema,
                      sample: int, seed: int = 0, num_method: str = DEFAULT_NUM_STATTEST,
                      cat_method: str = DEFAULT_CAT_STATTEST):
    """evidently data-drift report on the input columns, on at most ``sample`` rows per side.

    One ``ValueDrift`` per column plus ``DriftedColumnsCount``, rather than DataDriftPreset,
    whose rendering recomputes the drift of every column through the legacy metrics.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    features = schema.feature_names
    definition = DataDefinition(numerical_columns=[html_safe(c) for c in schema.numeric],
                                categorical_columns=[html_safe(c) for c in schema.categorical])
    metrics = [DriftedColumnsCount(columns=[html_safe(c) for c in features],
                                   num_method=num_method, cat_method=cat_method)]
    metrics += [ValueDrift(column=html_safe(f.name),
                           method=num_method if f.kind == "numeric" else cat_method)
                for f in schema.features]
    current = html_safe_frame(sample_rows(batch[features], sample, seed=seed),
                              text_columns=schema.categorical)
    ref = html_safe_frame(sample_rows(as_population(reference, seed=seed)[features], sample,
                                      seed=seed),
                          text_columns=schema.categorical)
    logger.info("Data drift on %d batch rows and %d reference rows (%s / %s)", len(current),
                len(ref), num_method, cat_method)
    report = Report(metrics, include_tests=True)
    return report.run(Dataset.from_pandas(current, data_definition=definition),
                      Dataset.from_pandas(ref, data_definition=definition))


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
    try:
        check_report_html(paths["html"].read_text(encoding="utf-8"))
    except RuntimeError:
        paths["html"].unlink()
        raise
    return {key: str(path) for key, path in paths.items()}


def data_drift_summary(snapshot) -> dict:
    """Drifted columns and their scores from an evidently data-drift snapshot (the columns
    under their own names: the report's :func:`html_safe` names turned back)."""
    summary = drift_summary(snapshot.dict())
    for column in summary["columns"]:
        column["column"] = html.unescape(column["column"])
    summary["columns"].sort(key=lambda c: c["column"])
    summary["drifted_columns"] = [html.unescape(c) for c in summary["drifted_columns"]]
    return summary


quality_report_task = task(quality_report, name="quality-report", cache_policy=NO_CACHE)
data_drift_report_task = task(data_drift_report, name="data-drift-report", cache_policy=NO_CACHE)


@task(name="save-reports", cache_policy=NO_CACHE, **IO_RETRIES)
def save_reports_task(snapshots: dict, reports_dir: Path) -> tuple[str, dict]:
    """Write every snapshot as HTML + JSON in a new folder (I/O: retried)."""
    folder = report_folder(reports_dir)
    paths = {}
    try:
        for stem, snapshot in snapshots.items():
            if snapshot is not None:
                for kind, path in save_snapshot(snapshot, folder, stem).items():
                    paths[f"{stem}_{kind}"] = path
    except BaseException as exc:  # no half-written report folder is left behind
        shutil.rmtree(folder, ignore_errors=True)
        if (full := storage_error(exc, folder)) is not None:
            raise full from exc
        raise
    return str(folder), paths

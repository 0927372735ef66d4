"""The monitoring flow: judge a labelled batch against a version's reference.

load model + reference → load batch → score it (unless already scored) → validate against the
version's schema → keep rows whose labels have matured → recall drift decision → expected cost →
evidently reports (classification on matured rows, data drift on sampled rows) → HTML + JSON
under the version's ``reports/`` → Prefect artifacts → ``rareflow.monitor.recall-drift`` event.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.scoring import load_model_task, score_frame
from schemas.config import MonitoringConfig
from schemas.errors import DataError
from schemas.inference import InputSchema
from schemas.scored import DECISION, SCORE
from tasks import events
from tasks.drift import (
    DRIFT,
    binary_labels,
    classification_figures,
    classification_frame,
    cost_figures,
    data_drift_report_task,
    data_drift_summary,
    decide_task,
    headline_markdown,
    quality_report_task,
    save_reports_task,
    usable_labels_task,
    verdict_line,
    write_summary_task,
)
from tasks.load import IO_RETRIES, load_task
from tasks.registry import Registry
from tasks.validate import validate_batch

logger = logging.getLogger(__name__)


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
    scores = pd.to_numeric(df[SCORE], errors="coerce")
    bad = scores.isna() | (scores < 0) | (scores > 1)
    if bad.any():
        raise DataError(
            f"column {SCORE!r} must hold probabilities in [0, 1]; {int(bad.sum())} rows do not "
            f"(e.g. {df.loc[bad, SCORE].head(3).tolist()}): fix it or rescore the batch "
            "(--rescore)"
        )
    decisions = (scores.to_numpy(dtype=float) >= model.threshold).astype(np.int8)
    if DECISION in df.columns:
        given = pd.to_numeric(df[DECISION], errors="coerce").to_numpy()
        differ = int((given != decisions).sum())
        if differ:
            logger.warning("%d rows have a %r that differs from score >= %.4f (this version's "
                           "threshold); was the batch scored by another version? Using this "
                           "version's threshold; pass --rescore to score afresh", differ,
                           DECISION, model.threshold)
    return df.assign(**{SCORE: scores.astype(float), DECISION: decisions})


def artifact_key(prefix: str, name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) for a model name."""
    return f"{prefix}-{re.sub(r'[^a-z0-9-]+', '-', name.lower()).strip('-')}"


scored_batch_task = task(scored_batch, name="score-or-check", cache_policy=NO_CACHE)


@task(name="load-reference", cache_policy=NO_CACHE, **IO_RETRIES)
def reference_task(registry: Registry, version: str) -> pd.DataFrame:
    return registry.reference(version)


@flow(name="rareflow-monitor", validate_parameters=True)
def monitoring_flow(config: MonitoringConfig) -> dict:
    """Compare a labelled batch with a version's reference: recall drift, cost, data drift."""
    log = get_run_logger()
    registry = Registry(config.registry, config.name)
    model, meta = load_model_task(registry, config.version)
    version = meta["version"]
    schema = InputSchema.model_validate(meta["schema"])
    costs = meta["costs"]
    reference = reference_task(registry, version)
    batch = scored_batch_task(model, load_task(config.data), rescore=config.rescore)
    y, usable = usable_labels_task(
        batch, schema=schema, label_time_column=config.label_time_column,
        label_available_column=config.label_available_column,
        delay_days=config.label_delay_days, as_of=config.as_of)

    matured = batch.loc[usable]
    y_batch = y[usable].astype(int)
    y_ref = binary_labels(reference[schema.label], positive=schema.positive,
                          negative=schema.negative).astype(int)
    d_ref = (reference[SCORE].to_numpy() >= model.threshold).astype(np.int8)
    figures = {"batch": classification_figures(y_batch, matured[DECISION]),
               "reference": classification_figures(y_ref, d_ref)}
    cost = {side: cost_figures(yy, dd, fn_cost=costs["fn_cost"], fp_cost=costs["fp_cost"])
            for side, yy, dd in (("batch", y_batch, matured[DECISION]),
                                 ("reference", y_ref, d_ref))}
    decision = decide_task(
        batch_detected=figures["batch"]["detected"],
        batch_positives=figures["batch"]["positives"],
        reference_detected=figures["reference"]["detected"],
        reference_positives=figures["reference"]["positives"],
        tolerance=config.recall_tolerance, confidence=config.confidence,
        min_positives=config.min_positives)
    log.info("Recall drift: %s (%s)", decision.status, decision.reason)

    both_classes = 0 < figures["batch"]["positives"] < figures["batch"]["rows"]
    quality = None
    if both_classes:
        quality = quality_report_task(
            classification_frame(y_batch, matured[SCORE], matured[DECISION], schema=schema),
            classification_frame(y_ref, reference[SCORE], d_ref, schema=schema),
            schema=schema, threshold=model.threshold)
    else:
        log.warning("No classification report: the matured rows do not hold both classes")
    drift = data_drift_report_task(batch, reference, schema=schema,
                                   sample=config.drift_sample_rows,
                                   num_method=config.num_stattest,
                                   cat_method=config.cat_stattest)
    folder, paths = save_reports_task({"quality": quality, "data_drift": drift},
                                      registry.version_dir(version) / "reports")
    data_drift = {**data_drift_summary(drift.dict()),
                  "batch_rows": min(len(batch), config.drift_sample_rows),
                  "reference_rows": min(len(reference), config.drift_sample_rows),
                  "num_method": config.num_stattest, "cat_method": config.cat_stattest}
    result = {
        "status": decision.status,
        "name": config.name,
        "version": version,
        "data": config.data,
        "threshold": model.threshold,
        "rows": len(batch),
        "labelled_rows": int((~np.isnan(y)).sum()),
        "matured_rows": int(usable.sum()),
        "decision": decision.as_dict(),
        "batch": figures["batch"],
        "reference": figures["reference"],
        "cost": cost,
        "data_drift": data_drift,
        "reports": {"folder": folder, **paths},
        "config": config.model_dump(mode="json"),
        "event_id": None,
    }
    result["reports"]["summary"] = str(Path(folder) / "summary.json")
    result["verdict"] = verdict_line(result)

    if decision.status == DRIFT and config.emit_events:
        result["event_id"] = events.emit(events.RECALL_DRIFT, name=config.name, payload={
            "model": config.name, "version": version, "data": config.data,
            "reference_recall": decision.reference_recall, "batch_recall": decision.batch_recall,
            "p_value": decision.p_value, "diff_upper_bound": decision.diff_upper_bound,
            "tolerance": decision.tolerance, "confidence": decision.confidence,
            "batch_rows": figures["batch"]["rows"], "batch_positives": decision.batch_positives,
            "reference_positives": decision.reference_positives, "report": folder,
        })
    write_summary_task(result, folder)
    create_markdown_artifact(key=artifact_key("monitor", config.name),
                             markdown=headline_markdown(result),
                             description=f"Monitoring verdict for {config.name} {version}")
    main_report = paths.get("quality_html") or paths["data_drift_html"]
    create_link_artifact(link=Path(main_report).resolve().as_uri(),
                         link_text=f"evidently report ({config.name} {version})",
                         key=artifact_key("monitor-report", config.name),
                         description="Classification metrics on matured rows vs the reference")
    log.info(result["verdict"])
    return result

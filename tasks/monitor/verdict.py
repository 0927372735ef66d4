"""A monitoring run's verdict: the figures on matured rows against the reference, the recall
drift decision, the early-warning estimate for rows whose labels have not matured, the result a
person and a script read, its event and its artifacts.

The statistics live in :mod:`tasks.monitor.recall_drop`, the estimate in
:mod:`tasks.monitor.label_free_estimate`, label
maturity in :mod:`tasks.data.labels`, the evidently reports in :mod:`tasks.monitor.reports`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from schemas.config import MonitoringConfig
from schemas.inference import InputSchema
from schemas.scored import DECISION, POPULATION_WEIGHT, SCORE
from schemas.statuses import CANNOT_JUDGE, DRIFT
from tasks.data.labels import binary_labels, label_roles
from tasks.data.source_files import source_path
from tasks.decision.costs import DecisionCosts, normalised
from tasks.decision.served_classifier import decide
from tasks.monitor.label_free_estimate import (
    ESTIMATED_DROP,
    Estimate,
    estimate_recall,
    reference_calibration,
)
from tasks.monitor.recall_drop import RecallDrift, decide_recall_drift
from tasks.monitor.report_links import report_link_markdown, report_url, reports_base_url
from tasks.monitor.reports import as_population, classification_frame, quality_report
from tasks.runtime import events
from tasks.runtime.durable_files import dumps
from tasks.runtime.events import artifact_key
from tasks.runtime.io_retries import IO_RETRIES

logger = logging.getLogger(__name__)


def classification_figures(y, decisions, weights=None) -> dict:
    """Counts and rates of 0/1 decisions against 0/1 labels: minority recall first.

    ``weights``: how many rows of the population each row stands for (the reference of a
    version trained on a negative sample, ``POPULATION_WEIGHT``); flags, precision, prevalence
    and flag rate then count them, in rows of the population (positives weigh 1: recall is
    unchanged)."""
    y = np.asarray(y).astype(bool)
    d = np.asarray(decisions).astype(bool)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    rows, flagged = float(w.sum()), float(w[d].sum())
    positives, detected = int(y.sum()), int((y & d).sum())
    return {
        "rows": round(rows),
        "positives": positives,
        "detected": detected,
        "flagged": round(flagged),
        "recall": detected / positives if positives else None,
        "precision": detected / flagged if flagged else None,
        "prevalence": positives / rows if len(y) else None,
        "flag_rate": flagged / rows if len(y) else None,
    }


def reference_weights(reference: pd.DataFrame) -> np.ndarray | None:
    """How many rows of the population each reference row stands for (None: one each)."""
    return (reference[POPULATION_WEIGHT].to_numpy(dtype=float)
            if POPULATION_WEIGHT in reference.columns else None)


def cost_figures(y, decisions, *, costs: DecisionCosts, weights=None) -> dict:
    """Expected cost of the decisions at the model's threshold, absolute, per row, normalised.

    ``normalised_cost`` divides by the cost of never flagging anything, as the training gates
    do, so a batch and the reference compare despite their sizes. With per-row ``costs``
    (each row's cost of a miss, e.g. its amount, bound to these rows) both are in that money.
    """
    y = np.asarray(y).astype(bool)
    d = np.asarray(decisions).astype(bool)
    cost = costs.expected(y, d, weights=weights)
    rows = len(y) if weights is None else float(np.sum(weights))
    return {
        "expected_cost": cost,
        "cost_per_row": cost / rows if len(y) else None,
        "normalised_cost": normalised(cost, costs.never_flag(y, weights=weights), empty=None),
        "fn": int((y & ~d).sum()),
        "fp": round(float(np.sum(weights, where=~y & d)) if weights is not None
                    else int((~y & d).sum())),
        "fn_cost": float(costs.fn_cost),
        "fp_cost": float(costs.fp_cost),
        "per_row_fn_cost": costs.per_row,
    }


@dataclass
class Judgement:
    """The matured batch rows and the reference, their figures, and the recall decision."""

    matured: pd.DataFrame
    y_batch: np.ndarray
    y_ref: np.ndarray
    d_ref: np.ndarray
    figures: dict
    cost: dict
    decision: RecallDrift
    rows: int
    labelled_rows: int


def judge(batch: pd.DataFrame, y: np.ndarray, usable: np.ndarray, reference: pd.DataFrame, *,
          threshold: float, schema: InputSchema, costs: DecisionCosts,
          config: MonitoringConfig) -> Judgement:
    """Figures and the recall decision of the matured rows, against the reference.

    ``costs`` are the version's (``DecisionCosts.from_meta``); with per-row costs every
    judged row and every reference row needs its amount (the missing-amount rule of
    :mod:`tasks.decision.costs`)."""
    matured = batch.loc[usable]
    y_batch = y[usable].astype(int)
    y_ref = binary_labels(reference[schema.label], positive=schema.positive,
                          negative=schema.negative).astype(int)
    # the reference's own decisions: with nested-CV evidence each row was decided by the
    # model of its outer fold, at that model's threshold
    d_ref = (reference[DECISION].to_numpy().astype(np.int8) if DECISION in reference
             else decide(reference[SCORE].to_numpy(), threshold).astype(np.int8))
    w_ref = reference_weights(reference)
    figures = {"batch": classification_figures(y_batch, matured[DECISION]),
               "reference": classification_figures(y_ref, d_ref, w_ref)}
    cost = {side: cost_figures(yy, dd, costs=costs.for_rows(rows), weights=w)
            for side, yy, dd, rows, w in (("batch", y_batch, matured[DECISION], matured, None),
                                          ("reference", y_ref, d_ref, reference, w_ref))}
    decision = decide_recall_drift(
        batch_detected=figures["batch"]["detected"],
        batch_positives=figures["batch"]["positives"],
        reference_detected=figures["reference"]["detected"],
        reference_positives=figures["reference"]["positives"],
        tolerance=config.recall_tolerance, confidence=config.confidence,
        min_positives=config.min_positives)
    logger.info("Recall drift: %s (%s)", decision.status, decision.reason)
    return Judgement(matured, y_batch, y_ref, d_ref, figures, cost, decision, len(batch),
                     int((~np.isnan(y)).sum()))


def quality_snapshot(j: Judgement, reference: pd.DataFrame, *, schema: InputSchema,
                     threshold: float):
    """evidently's classification report on the matured rows, or None without both classes."""
    if not 0 < j.figures["batch"]["positives"] < j.figures["batch"]["rows"]:
        logger.warning("No classification report: the matured rows do not hold both classes")
        return None
    frame = classification_frame(j.y_ref, reference[SCORE], j.d_ref, schema=schema)
    if POPULATION_WEIGHT in reference.columns:  # a negative sample's: in population units
        frame = as_population(frame.assign(**{POPULATION_WEIGHT: reference_weights(reference)}))
    return quality_report(
        classification_frame(j.y_batch, j.matured[SCORE], j.matured[DECISION], schema=schema),
        frame.drop(columns=POPULATION_WEIGHT, errors="ignore"), schema=schema,
        threshold=threshold)


def estimate_pending(batch: pd.DataFrame, pending: np.ndarray, reference: pd.DataFrame, *,
                     j: Judgement, costs: DecisionCosts, config: MonitoringConfig) -> Estimate:
    """The early warning: recall and cost estimated on the rows whose labels have not matured,
    with the version's scores calibrated on its reference."""
    rows = batch.loc[pending]
    return estimate_recall(
        rows[SCORE].to_numpy(), rows[DECISION].to_numpy(),
        calibration=reference_calibration(reference[SCORE].to_numpy(), j.y_ref,
                                          reference_weights(reference)),
        reference_scores=reference[SCORE].to_numpy(), reference_decisions=j.d_ref,
        reference_weights=reference_weights(reference),
        costs=costs.for_rows(rows), reference_costs=costs.for_rows(reference),
        tolerance=config.recall_tolerance, confidence=config.confidence,
        min_positives=config.min_positives / 2)


def retrain_source(lineage: dict | None, meta: dict) -> str:
    """The data a retraining should read: the monitored source, or (when a single batch file
    was monitored) the version's own training data."""
    if lineage and lineage.get("kind") != "file":
        return source_path(lineage["source"])
    return source_path(meta["config"]["data"])


def overall_status(decision_status: str, estimate: Estimate | None, *, alarm: bool) -> str:
    """Recall drift decides; the estimate only when ``estimate_alarm`` says so."""
    if alarm and estimate is not None and estimate.status == ESTIMATED_DROP:
        return DRIFT
    return decision_status


def monitoring_result(j: Judgement, *, meta: dict, config: MonitoringConfig, drift: dict,
                      folder: str, paths: dict, estimate: Estimate | None = None,
                      lineage: dict | None = None, since=None) -> dict:
    """What a monitoring run returns, writes as summary.json and shows: one dict."""
    reference_rows = int(len(j.y_ref))
    result = {
        "status": overall_status(j.decision.status, estimate, alarm=config.estimate_alarm),
        "name": config.name,
        "version": meta["version"],
        "data": config.data,
        "source": retrain_source(lineage, meta),
        "as_of": (lineage or {}).get("as_of") or config.as_of,
        "since": None if since is None else since.isoformat(),
        "threshold": meta["threshold"],
        "rows": j.rows,
        "labelled_rows": j.labelled_rows,
        "matured_rows": int(len(j.y_batch)),
        "decision": j.decision.as_dict(),
        "batch": j.figures["batch"],
        "reference": j.figures["reference"],
        "cost": j.cost,
        "data_drift": {**drift, "batch_rows": min(j.rows, config.drift_sample_rows),
                       "reference_rows": min(reference_rows, config.drift_sample_rows),
                       "num_method": config.num_stattest, "cat_method": config.cat_stattest},
        "reports": {"folder": folder, **paths, "summary": str(Path(folder) / "summary.json")},
        "estimate": None if estimate is None else estimate.as_dict(),
        "lineage": lineage,
        "config": config.model_dump(mode="json"),
        "event_id": None,
    }
    result["verdict"] = verdict_line(result)
    return result


def drift_payload(result: dict) -> dict:
    """The payload of ``rareflow.monitor.recall-drift``: what drifted, and the source and time
    a retraining should train on (``tasks.data.arrivals.config_for_event`` reads them)."""
    d = result["decision"]
    return {
        "model": result["name"], "version": result["version"], "data": result["data"],
        "source": result["source"], "as_of": result["as_of"],
        "raised_by": "matured labels" if d["status"] == DRIFT else "estimate",
        "reference_recall": d["reference_recall"], "batch_recall": d["batch_recall"],
        "p_value": d["p_value"], "diff_upper_bound": d["diff_upper_bound"],
        "tolerance": d["tolerance"], "confidence": d["confidence"],
        "batch_rows": result["batch"]["rows"], "batch_positives": d["batch_positives"],
        "reference_positives": d["reference_positives"], "report": result["reports"]["folder"],
        "estimate": result.get("estimate"),
        # the drifted rows began here: a retraining learns from them (tasks.data.arrivals)
        "since": result.get("judged_from") if d["status"] == DRIFT else None,
        "judged": result.get("judged"),  # the rows and versions judged (a scored source)
    }


def emit_if_drift(result: dict, *, enabled: bool) -> str | None:
    """Emit ``rareflow.monitor.recall-drift`` for a drifted batch; returns the event id."""
    if result["status"] != DRIFT or not enabled:
        return None
    return events.emit(events.RECALL_DRIFT, name=result["name"], payload=drift_payload(result))


def write_summary(summary: dict, folder: str | Path) -> str:
    """Write the run's verdict and figures as ``summary.json``; return its path."""
    path = Path(folder) / "summary.json"
    path.write_text(dumps(summary, sort_keys=False), encoding="utf-8")
    return str(path)


def verdict_line(result: dict) -> str:
    """One line: the verdict, the recall figures behind it, the cost, data drift, the report."""
    d, b, r = result["decision"], result["batch"], result["reference"]
    status = result.get("status", d["status"])
    head = f"{status.upper().replace('-', ' ')} {result['name']} {result['version']}"
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
    money = " (each miss at its row's cost)" if cost.get("per_row_fn_cost") else ""
    return (f"{head}: {body}; expected cost {_fmt(cost['expected_cost'], '.1f')}{money} on "
            f"{b['rows']} matured rows;{estimate_text(result.get('estimate'))} "
            f"{len(dd['drifted_columns'])}/{len(dd['columns'])} input columns drifted; "
            f"report {report}")


def estimate_text(e: dict | None) -> str:
    """The early warning in the verdict line (empty when no row awaits its label)."""
    if not e or not e["rows"]:
        return ""
    if e["estimated_recall"] is None or e["status"] == "cannot-estimate":
        return f" ESTIMATE: cannot estimate ({e['reason']});"
    flag = " (DROP)" if e["status"] == ESTIMATED_DROP else ""
    return (f" ESTIMATED recall {e['estimated_recall']:.3f}{flag} on {e['rows']} rows awaiting "
            f"labels vs {_fmt(e['reference_recall'])} (an estimate from calibrated scores);")


def _fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def headline_markdown(result: dict, *, base: str | None = None) -> str:
    """The figures a person reads first: the verdict, recall both sides, cost, data drift.

    ``base``: the reports server's URL (``RAREFLOW_REPORTS_URL``) the report links use.
    """
    d, b, r = result["decision"], result["batch"], result["reference"]
    cb, cr = result["cost"]["batch"], result["cost"]["reference"]
    dd = result["data_drift"]
    links = report_link_markdown(result["reports"], base=base)
    return "\n".join([
        f"# Monitoring {result['name']} {result['version']}: "
        f"**{result.get('status', d['status'])}**", "",
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
        "", *estimate_markdown(result.get("estimate")),
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

def estimate_markdown(e: dict | None) -> list[str]:
    """The early-warning rows of the headline artifact, marked as an estimate."""
    if not e or not e["rows"]:
        return []
    return [
        f"**Early warning (ESTIMATE, labels not matured yet): {e['status']}.** {e['reason']}.",
        "", "| | estimated on rows awaiting labels | reference (estimated) |", "|---|---:|---:|",
        f"| rows | {e['rows']} | |",
        f"| expected positives | {e['expected_positives']:.1f} | |",
        f"| estimated minority recall | {_fmt(e['estimated_recall'])} | "
        f"{_fmt(e['reference_recall'])} |",
        f"| estimated expected cost | {_fmt(e['estimated_expected_cost'], '.1f')} | |",
        f"| estimated normalised cost | {_fmt(e['estimated_normalised_cost'])} | |",
        "", f"Method: {e['method']}.", "",
    ]


def publish(result: dict) -> None:
    """The verdict's headline and a link to the main evidently report, as Prefect artifacts."""
    name, version = result["name"], result["version"]
    base = reports_base_url()
    create_markdown_artifact(key=artifact_key("monitor", name),
                             markdown=headline_markdown(result, base=base),
                             description=f"Monitoring verdict for {name} {version}")
    paths = result["reports"]
    main_report = paths.get("quality_html") or paths["data_drift_html"]
    link = report_url(main_report, base=base)
    if link is None:  # a file:// link would not open from the UI: say how to reach it
        create_markdown_artifact(key=artifact_key("monitor-report", name),
                                 markdown=report_link_markdown({"report": main_report},
                                                               base=None),
                                 description="Where the evidently report is")
    else:
        create_link_artifact(link=link, link_text=f"evidently report ({name} {version})",
                             key=artifact_key("monitor-report", name),
                             description="Classification metrics on matured rows vs the "
                                         "reference")
    logger.info(result["verdict"])


label_roles_task = task(label_roles, name="matured-labels", cache_policy=NO_CACHE)
estimate_task = task(estimate_pending, name="estimate-recall", cache_policy=NO_CACHE)
judge_task = task(judge, name="recall-drift", cache_policy=NO_CACHE)
quality_report_task = task(quality_snapshot, name="quality-report", cache_policy=NO_CACHE)
write_summary_task = task(write_summary, name="write-summary", cache_policy=NO_CACHE,
                          **IO_RETRIES)

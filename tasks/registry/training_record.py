"""What a training run records: the version's metadata, its reference table for monitoring,
its plots and model card (:mod:`tasks.registry.model_card`), the event it announces and the
summary it returns."""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from schemas.config import TrainingConfig
from schemas.scored import DECISION, POPULATION_WEIGHT, SCORE
from schemas.statuses import PENDING
from tasks.data.split import Parts
from tasks.decision.calibration import population_scores
from tasks.decision.costs import DecisionCosts
from tasks.decision.served_classifier import MODEL_FORMAT, native
from tasks.judge.gate_verdict import Verdict
from tasks.judge.gates import Champion
from tasks.judge.metrics import metric_table
from tasks.judge.plots import calibration_summary, image_markdown, version_plots
from tasks.registry.model_card import model_card
from tasks.runtime import events
from tasks.search.evidence import Evidence
from tasks.search.final_fit import FitResult
from tasks.search.selection import Selection

logger = logging.getLogger(__name__)

LIBRARIES = ("prefect", "scikit-learn", "imbalanced-learn", "pandas", "pandera", "numpy",
             "joblib", "evidently", "pyarrow", "matplotlib")


@dataclass
class Record:
    """A version's metadata, reference table, model card and plots, ready to register."""

    metadata: dict
    reference: pd.DataFrame
    card: str
    files: dict[str, bytes]


def rareflow_version() -> str:
    """The installed rareflow's version (what wrote a version; ``rareflow --version``)."""
    try:
        return pkg_version("rareflow")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout never installed
        return "unknown"


def class_pair(model) -> list:
    """[negative, positive] label values of a served classifier, as JSON keeps them."""
    negative = next(c for c in model.classes_ if c != model.pos_label)
    return [native(negative), native(model.pos_label)]


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = pkg_version(name)
        except PackageNotFoundError:  # pragma: no cover - a library missing from the env
            out[name] = None
    return out


def training_metadata(config: TrainingConfig, parts: Parts, selection: Selection,
                      fitted: FitResult, *, evidence: Evidence, verdict: Verdict,
                      champion: Champion, lineage: dict | None = None) -> dict:
    """Everything a version records about how it was made and judged (``metadata.json``);
    ``lineage`` is what it was trained on (``tasks.data.window.lineage``)."""
    best, model = selection.best, fitted.model
    return {
        "config": config.model_dump(mode="json"),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "threshold": model.threshold,
        "threshold_source": f"{config.split.n_folds}-fold out-of-fold scores on the training "
                            "part",
        "costs": config.costs.model_dump(),
        "strategy": {"name": best.spec.name, **best.spec.as_dict(), "cv_cost": best.cv_cost,
                     "cv_cost_std": best.cv_cost_std, "oof_cost": best.oof_cost,
                     "fit_seconds": fitted.fit_seconds, **fitted.info,
                     "oof_brier": best.brier, "oof_brier_calibrated": best.calibrated_brier,
                     **selection.executor},
        "leaderboard": selection.board.to_dict(orient="records"),
        "evidence": {"kind": evidence.kind, "description": evidence.describe(),
                     **evidence.detail},
        "metrics": evidence.metrics,
        "calibration": calibration_summary(evidence.y, evidence.scores,
                                           weights=evidence.costs.row_weights(evidence.y)),
        "calibrated": model.calibrated,
        "classes": class_pair(model),
        "model_format": MODEL_FORMAT,
        "rareflow_version": rareflow_version(),
        "verdict": verdict.as_dict(),
        "compared_with": champion.version,
        "fingerprints": parts.fingerprints,
        "lineage": lineage,
        "schema": parts.schema.model_dump(),
        "libraries": library_versions(),
    }


def reference_table(evidence: Evidence, schema) -> pd.DataFrame:
    """The judged rows' features, label, score and decision (the test part's, or every row's
    out-of-fold ones): monitoring compares batches to it. Rows of a negative sample also carry
    how many rows of the population each stands for (``POPULATION_WEIGHT``)."""
    table = evidence.X[schema.feature_names].reset_index(drop=True).assign(
        **{schema.label: np.where(evidence.y == 1, schema.positive, schema.negative),
           SCORE: evidence.scores, DECISION: evidence.decisions})
    weights = evidence.costs.row_weights(evidence.y)
    return table if weights is None else table.assign(**{POPULATION_WEIGHT: weights})


def training_plots(config: TrainingConfig, parts: Parts, selection: Selection,
                   fitted: FitResult, evidence: Evidence) -> dict[str, bytes]:
    """The version's plots (the judged rows, and the out-of-fold scores that chose the
    threshold)."""
    best = selection.best
    oof = None
    if len(best.oof_scores) == len(parts.y_train):
        costs = DecisionCosts.for_training(config).for_rows(parts.X_train)
        scores = best.oof_scores
        if costs.negative_weight != 1.0:  # a negative sample's: in the population's units
            scores = population_scores(scores, 1 / costs.negative_weight)
        oof = (parts.y_train, scores, costs)
    return version_plots(evidence.y, evidence.scores, threshold=fitted.model.threshold,
                         costs=evidence.costs, oof=oof)


@task(name="record", cache_policy=NO_CACHE)
def record_task(config: TrainingConfig, parts: Parts, selection: Selection, fitted: FitResult,
                *, evidence: Evidence, verdict: Verdict, champion: Champion,
                lineage: dict | None = None) -> Record:
    """The version's metadata, reference table, plots (also an artifact) and model card."""
    meta = training_metadata(config, parts, selection, fitted, evidence=evidence,
                             verdict=verdict, champion=champion, lineage=lineage)
    plots = training_plots(config, parts, selection, fitted, evidence)
    meta["plots"] = list(plots)
    create_markdown_artifact(key="model-plots", markdown=image_markdown(
        plots, title=f"{config.name}: plots of the candidate"),
        description="PR curve, cost vs threshold, reliability, score histograms (PNG)")
    return Record(meta, reference_table(evidence, parts.schema), model_card(meta), plots)


def announce(name: str, version: str, status: str, *, metrics: dict, verdict: Verdict,
             threshold: float, champion: Champion, registry: str | None = None) -> None:
    """Emit ``rareflow.model.promoted``, ``rareflow.model.approval-requested`` (a pending
    candidate; the payload's ``registry`` and ``version`` say which, for the approval flow)
    or ``rareflow.model.rejected``, with the figures."""
    payload = {"version": version, "status": status, "threshold": threshold,
               "recall": metrics["at_threshold"]["recall"], "pr_auc": metrics["pr_auc"],
               "normalised_cost": metrics["at_threshold"]["normalised_cost"],
               "champion": champion.version}
    if status == "passed":
        events.emit(events.PROMOTED, name=name, payload=payload)
        logger.info("Promoted %s %s", name, version)
    elif status == PENDING:
        where = str(registry) if "://" in str(registry) else os.path.abspath(registry)
        events.emit(events.APPROVAL_REQUESTED, name=name,
                    payload={**payload, "registry": where, "name": name})
        logger.info("%s %s awaits a manual approval: `rareflow models approve %s --reason ...` "
                    "(or the approval flow's Resume form)", name, version, version)
    else:
        events.emit(events.REJECTED, name=name, payload=payload)
        logger.warning("Not promoted (%s): failed %s", status, verdict.failed)


def training_summary(config: TrainingConfig, version: str, status: str, *, champion_now,
                     fitted: FitResult, selection: Selection, metrics: dict, verdict: Verdict,
                     registry_dir) -> dict:
    """What ``training_flow`` returns (and the CLI prints)."""
    board = selection.board.to_dict(orient="records")
    return {
        "name": config.name, "version": version, "status": status,
        "promoted": status == "passed", "champion": champion_now,
        "threshold": fitted.model.threshold, "strategy": selection.best.spec.name,
        "metrics": metrics, "metric_table": metric_table(metrics).to_dict(orient="records"),
        "verdict": verdict.as_dict(), "leaderboard": board, "registry": str(registry_dir),
    }

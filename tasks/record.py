"""What a training run records: the version's metadata, its reference table for monitoring,
its model card, the event it announces and the summary it returns."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import TrainingConfig
from schemas.scored import DECISION, SCORE
from tasks import events
from tasks.evaluate import metric_table
from tasks.fit import FitResult
from tasks.plots import calibration_summary
from tasks.score import Champion
from tasks.select import Selection
from tasks.split import Parts

logger = logging.getLogger(__name__)

LIBRARIES = ("prefect", "scikit-learn", "imbalanced-learn", "pandas", "pandera", "numpy",
             "joblib", "evidently")


@dataclass
class Record:
    """A version's metadata, reference table and model card, ready to register."""

    metadata: dict
    reference: pd.DataFrame
    card: str


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = pkg_version(name)
        except PackageNotFoundError:  # pragma: no cover - a library missing from the env
            out[name] = None
    return out


def training_metadata(config: TrainingConfig, parts: Parts, selection: Selection,
                      fitted: FitResult, *, metrics: dict, test_scores: np.ndarray,
                      verdict: dict, champion: Champion, lineage: dict | None = None) -> dict:
    """Everything a version records about how it was made and judged (``metadata.json``);
    ``lineage`` is what it was trained on (``tasks.source.lineage``)."""
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
                     **selection.executor},
        "leaderboard": selection.board.to_dict(orient="records"),
        "metrics": metrics,
        "calibration": calibration_summary(parts.y_test, test_scores),
        "calibrated": model.calibrated,
        "verdict": verdict,
        "compared_with": champion.version,
        "fingerprints": parts.fingerprints,
        "lineage": lineage,
        "schema": parts.schema.model_dump(),
        "libraries": library_versions(),
    }


def reference_table(parts: Parts, model, test_scores: np.ndarray) -> pd.DataFrame:
    """The test rows' features, label, score and decision: monitoring compares batches to it."""
    schema = parts.schema
    return parts.X_test[schema.feature_names].reset_index(drop=True).assign(
        **{schema.label: np.where(parts.y_test == 1, schema.positive, schema.negative),
           SCORE: test_scores, DECISION: model.decide(parts.X_test, test_scores)})


@task(name="record", cache_policy=NO_CACHE)
def record_task(config: TrainingConfig, parts: Parts, selection: Selection, fitted: FitResult,
                *, metrics: dict, test_scores: np.ndarray, verdict: dict,
                champion: Champion, lineage: dict | None = None) -> Record:
    """The version's metadata, reference table and model card."""
    meta = training_metadata(config, parts, selection, fitted, metrics=metrics,
                             test_scores=test_scores, verdict=verdict, champion=champion,
                             lineage=lineage)
    return Record(meta, reference_table(parts, fitted.model, test_scores), model_card(meta))


def announce(name: str, version: str, status: str, *, metrics: dict, verdict: dict,
             threshold: float, champion: Champion) -> None:
    """Emit ``rareflow.model.promoted`` or ``rareflow.model.rejected`` with the figures."""
    payload = {"version": version, "status": status, "threshold": threshold,
               "recall": metrics["at_threshold"]["recall"], "pr_auc": metrics["pr_auc"],
               "normalised_cost": metrics["at_threshold"]["normalised_cost"],
               "champion": champion.version}
    if status == "passed":
        events.emit(events.PROMOTED, name=name, payload=payload)
        logger.info("Promoted %s %s", name, version)
    else:
        events.emit(events.REJECTED, name=name, payload=payload)
        failed = [g["gate"] for g in verdict["gates"] if not g["passed"]]
        logger.warning("Not promoted (%s): failed %s", status, failed)


def training_summary(config: TrainingConfig, version: str, status: str, *, champion_now,
                     fitted: FitResult, selection: Selection, metrics: dict, verdict: dict,
                     registry_dir) -> dict:
    """What ``training_flow`` returns (and the CLI prints)."""
    board = selection.board.to_dict(orient="records")
    return {
        "name": config.name, "version": version, "status": status,
        "promoted": status == "passed", "champion": champion_now,
        "threshold": fitted.model.threshold, "strategy": selection.best.spec.name,
        "metrics": metrics, "metric_table": metric_table(metrics).to_dict(orient="records"),
        "verdict": verdict, "leaderboard": board, "registry": str(registry_dir),
    }


# -- the model card ------------------------------------------------------------------------------
def _fmt4(value) -> str:
    return "" if value is None else f"{value:.4g}"


def _card_how(meta: dict) -> list[str]:
    costs, cal, strategy = meta["config"]["costs"], meta.get("calibration", {}), meta["strategy"]
    calibrated_text = ("a calibrated probability (sigmoid calibration)" if meta.get("calibrated")
                       else "a model score in [0, 1], not calibrated")
    return [
        "## How it decides",
        f"- Strategy: `{strategy['name']}` chosen by {meta['config']['split']['n_folds']}-fold "
        f"stratified CV on the training part (CV normalised cost {strategy['cv_cost']:.4f} "
        f"± {strategy['cv_cost_std']:.4f}).",
        f"- Final model: {strategy.get('final_model', 'refitted on the training part')}.",
        f"- Decision threshold **{meta['threshold']:.4f}**, chosen to minimise "
        f"{costs['fn_cost']:g}·FN + {costs['fp_cost']:g}·FP on out-of-fold training scores; "
        "test rows never influenced it.",
        f"- `score` is {calibrated_text}"
        f" (test Brier {cal.get('brier', float('nan')):.4f}, Brier of always predicting the "
        f"prevalence {cal.get('brier_of_prevalence', float('nan')):.4f}).",
    ]


def _card_performance(meta: dict) -> list[str]:
    m = meta["metrics"]
    lines = ["## Test-set performance", "", "| metric | chosen threshold | threshold 0.5 |",
             "|---|---:|---:|"]
    for row in metric_table(m).itertuples():
        lines.append(f"| {row.metric} | {row.chosen:.4g} | {row.at_0_5:.4g} |")
    lines += ["", f"Confusion at the chosen threshold: {m['at_threshold']['confusion_matrix']}."]
    return lines


def _card_gates(verdict: dict) -> list[str]:
    lines = [f"## Gates: {verdict.get('status', '?')}", "",
             "| gate | passed | value | limit | detail |", "|---|---|---:|---:|---|"]
    for g in verdict.get("gates", []):
        lines.append(f"| {g['gate']} | {'yes' if g['passed'] else 'NO'} | {_fmt4(g['value'])} "
                     f"| {_fmt4(g['limit'])} | {g['detail']} |")
    return lines


def model_card(meta: dict) -> str:
    """A model card a person can read: what, how it decides, how good, what it passed."""
    intro = [
        f"# Model card: {meta['config']['name']} {{version}}",
        "",
        f"Trained {meta['trained_at']} on `{meta['config']['data']}` "
        f"({meta['fingerprints']['rows']} rows; label `{meta['schema']['label']}`, "
        f"positive `{meta['schema']['positive']}`).",
    ]
    limits = [
        "## Use and limits",
        "- Judge it by minority recall, PR AUC and expected cost, not accuracy.",
        "- Inputs are checked against the frozen schema in `metadata.json`; unseen categories "
        "are scored as 'unknown'.",
        "- If the positive rate or the costs change, retrain: the threshold depends on both.",
    ]
    sections = [intro, _card_how(meta), _card_performance(meta),
                _card_gates(meta.get("verdict", {})), limits]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"

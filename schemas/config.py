"""Pydantic models of every flow parameter: CLI flags, config files and Prefect UI forms."""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.executor import (
    Executor,
    check_dask_address,
    dask_address_field,
    dask_workers_field,
)
from schemas.sampling import check_sample, sample_field, sample_rows_field
from schemas.storage import StorageOptions, storage_options_field

ModelName = Literal["auto", "logreg", "hgb", "rf", "brf", "gboost", "iforest"]
SamplerName = Literal["auto", "none", "random_over", "random_under", "smote", "adasyn",
                      "borderline_smote", "smoteenn", "smotetomek"]
NumStattest = Literal[
    "psi", "wasserstein", "jensenshannon", "hellinger", "kl_div", "ks", "anderson",
    "cramer_von_mises", "mannw", "ed", "t_test",
]
CatStattest = Literal["jensenshannon", "psi", "hellinger", "kl_div", "TVD", "chisquare", "z",
                      "g_test"]
ClassWeightName = Literal["auto", "none", "balanced"]
CalibrationMode = Literal["auto", "never", "always"]
Approval = Literal["none", "manual"]
GateJudgement = Literal["bound", "point"]

# The one list of each name: other modules import these, never repeat them.
MODELS: tuple[str, ...] = tuple(m for m in get_args(ModelName) if m != "auto")
SAMPLERS: tuple[str, ...] = tuple(s for s in get_args(SamplerName) if s != "auto")
CALIBRATION_MODES: tuple[str, ...] = get_args(CalibrationMode)
# Samplers that interpolate new minority rows between neighbours (they need a few positives).
INTERPOLATING_SAMPLERS = ("smote", "adasyn", "borderline_smote", "smoteenn", "smotetomek")
# Samplers that interpolate every column as a number: they cannot take categorical columns
# (SMOTE and its combinations switch to SMOTENC instead).
NUMERIC_ONLY_SAMPLERS = ("adasyn", "borderline_smote")
# evidently drift methods: distances that, unlike KS / chi-square p-values, do not flag every
# column once samples reach tens of thousands of rows; both with threshold 0.1.
DEFAULT_NUM_STATTEST = "psi"
DEFAULT_CAT_STATTEST = "jensenshannon"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Environment variables and the project file that give the command line its defaults
# (flags and --config win over them), and the base URL report links use.
REGISTRY_ENV = "RAREFLOW_REGISTRY"
NAME_ENV = "RAREFLOW_NAME"
REPORTS_URL_ENV = "RAREFLOW_REPORTS_URL"
PROJECT_FILE = "rareflow.yaml"
REPORTS_PORT = 8765


def check_name(value: str, what: str = "model name") -> str:
    """Return ``value`` if it is a safe single path component, else raise ``ValueError``."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{what} must be 1-64 letters, digits, '_', '-' or '.', start with a letter or digit "
            f"and contain no '..'; got {value!r}"
        )
    return value


# A window of rows: the last `90d` / `12w` / `36h` of event time before `as_of`, or the last
# `50000rows` (tasks/data/window.py reads it).
WINDOW_PATTERN = re.compile(r"^\s*(\d+)\s*(d|days?|w|weeks?|h|hours?|r|rows?)\s*$", re.IGNORECASE)


def check_window(value: str | None) -> str | None:
    """A window as `<n>d`, `<n>w`, `<n>h` or `<n>rows` (empty means no window)."""
    if value is None or not str(value).strip():
        return None
    match = WINDOW_PATTERN.fullmatch(str(value))
    if not match or int(match.group(1)) < 1:
        raise ValueError("window must be a count with a unit: '90d' (days), '12w' (weeks), "
                         f"'36h' (hours) or '50000rows'; got {value!r}")
    unit = match.group(2).lower()[0]
    return f"{int(match.group(1))}{'rows' if unit == 'r' else unit}"


def check_as_of(value, what: str = "as_of") -> str | None:
    """A point in time (ISO 8601; no zone = UTC); empty means now (``what``: the field)."""
    if value is None or not str(value).strip():
        return None
    import pandas as pd

    try:
        stamp = pd.Timestamp(str(value).strip())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} must be a date or time such as 2026-11-28 or "
                         f"2026-11-28T06:00:00Z; got {value!r}") from exc
    if pd.isna(stamp):
        raise ValueError(f"{what} must be a date or time; got {value!r}")
    return str(value).strip()


def _time_column_field():
    return Field(None, description="Column with each row's event time (ISO text or datetime; "
                 "no zone = UTC), or a hive partition key such as `date`; with it, `window` and "
                 "`as_of` select the rows (without it, the date of `date=`/`dt=` partitions).")


def _window_field():
    return Field(None, description="Rows used: the last `90d`, `12w` or `36h` of event time up "
                 "to `as_of`, or the last `50000rows` (by event time); default: every row.")


def _maturity_field(name: str):
    """Label maturity: the same three fields in training and monitoring."""
    return {"label_time_column": Field(None, description="Column with the time each label "
                                       "became known (late labels)."),
            "label_available_column": Field(None, description="Boolean column saying whether "
                                            "the row's label is known."),
            "label_delay_days": Field(0.0, ge=0, description="Labels younger than this many "
                                      "days are not yet matured (from `label_time_column`, "
                                      "else from `time_column`).")}[name]


class _Model(BaseModel):
    # hide_input_in_errors: a rejected value (storage_options) is never echoed by pydantic
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class Costs(_Model):
    """What a wrong decision costs; the threshold minimises fn_cost·FN + fp_cost·FP, within
    the review capacity and the recall floor, if given."""

    fn_cost: float = Field(10.0, gt=0, description="Cost of a missed positive (false negative).")
    fp_cost: float = Field(1.0, gt=0, description="Cost of a false alarm (false positive).")
    fn_cost_column: str | None = Field(
        None, description="Column holding what missing each row costs (e.g. the transaction "
        "amount); replaces fn_cost, so costs and metrics are in money.")
    max_alert_rate: float | None = Field(
        None, gt=0, le=1, description="Most rows flagged, as a share of all rows (the review "
        "team's capacity; 0.005 = 5 alerts per 1,000 rows).")
    min_recall: float | None = Field(
        None, gt=0, le=1, description="Least share of positives the threshold must flag.")


class SplitConfig(_Model):
    """How the rows are split: a test part (stratified, or the newest rows), folds inside train."""

    test_size: float = Field(0.2, gt=0.05, lt=0.8,
                             description="Share of rows held out as the test part.")
    n_folds: int = Field(5, ge=2, le=20, description="Stratified folds inside the training "
                         "part (CV, threshold).")
    evidence: Literal["auto", "test_part", "nested_cv"] = Field(
        "auto",
        description="What a candidate is judged on: the held-out test part, or out-of-fold "
        "decisions of a nested cross-validation over every row (each outer fold decided by a "
        "search run without it); `auto`: nested when the table has fewer positives than "
        "nested_cv_below_positives.",
    )
    nested_cv_below_positives: int = Field(
        100, ge=0, description="With `evidence: auto`, judge on nested cross-validation below "
        "this many positives in the table (a 20 % test part would hold too few to judge).")
    test_order: Literal["auto", "random", "time"] = Field(
        "auto", description="`time`: the test part is the newest rows by `time_column` (judged "
        "out of time, as the model will be used); `random`: stratified at random; `auto`: "
        "`time` when the data has a `time_column`.")


class StrategyConfig(_Model):
    """How the model is trained: family, resampler and class weights, or `auto` to choose."""

    model: ModelName = Field(
        "auto", description="Model family, or `auto` to choose by cross-validated cost."
    )
    sampler: SamplerName = Field(
        "auto",
        description="imbalanced-learn resampler applied to training folds only "
        "(SMOTE becomes SMOTENC when there are categorical columns).",
    )
    class_weight: ClassWeightName | dict[int, float] = Field(
        "auto",
        description="`none`, `balanced`, a mapping such as {0: 1, 1: 50}, or `auto`.",
    )
    time_budget_s: float = Field(
        3600.0, gt=0,
        description="Safety stop for the candidate search, in seconds: fits not started by "
        "then are skipped and the run says so (the search's work is otherwise fixed in "
        "advance by screen_folds and finalists, never by the clock).",
    )
    screen_folds: int | None = Field(
        None, ge=1, le=20,
        description="Racing, opt-in: folds every candidate is fitted on before the clearly "
        "worse ones are dropped. None (default): every candidate on every fold (quality "
        "benchmark mean cost 0.323 that way, 0.325 racing with 2 folds and 4 finalists).",
    )
    finalists: int = Field(
        4, ge=1, le=64, description="With racing: most candidates fitted on every fold.")
    max_candidates: int = Field(
        12, ge=1, le=64, description="Most candidate strategies `auto` cross-validates."
    )
    n_jobs: int = Field(1, ge=1, le=64, description="Candidates cross-validated in parallel.")
    simpler_within_se: float = Field(
        0.0, ge=0, description="One-standard-error rule, opt-in: a simpler candidate (linear, "
        "then one model, then a blend) wins when its CV cost is within this many paired "
        "standard errors of the lowest (1 is the classic rule); 0: the lowest CV cost wins.")
    calibrate: CalibrationMode = Field(
        "auto",
        description="Calibrate scores (sigmoid, CV on train) when it lowers CV cost or Brier.",
    )
    executor: Executor = Field(
        "local",
        description="Where the candidate x fold fits run: `local` (this process, `n_jobs` "
        "candidates at a time) or `dask` (one Prefect task per fit on a Dask cluster; with "
        "`sample`, the source's partitions are read there too, one task each).",
    )
    dask_address: str | None = dask_address_field()
    dask_workers: int = dask_workers_field()

    @model_validator(mode="after")
    def _address_needs_dask(self):
        check_dask_address(self.dask_address, self.executor, "strategy.")
        return self

    @field_validator("class_weight")
    @classmethod
    def _weights_positive(cls, value):
        if isinstance(value, dict):
            if set(value) - {0, 1} or not value:
                raise ValueError(f"class_weight mapping needs keys 0 and/or 1; got {value}")
            if any(w <= 0 for w in value.values()):
                raise ValueError(f"class_weight values must be > 0; got {value}")
        return value

    @property
    def is_auto(self) -> bool:
        return "auto" in (self.model, self.sampler, self.class_weight)


class Gates(_Model):
    """What a candidate must reach before it may serve."""

    min_recall: float = Field(
        0.3, ge=0, le=1, description="Minimum minority-class recall on the test part."
    )
    min_pr_auc: float = Field(0.0, ge=0, le=1, description="Minimum PR AUC on the test part "
                              "(0 keeps only the beats-prevalence rule).")
    max_normalised_cost: float = Field(0.95, gt=0, description="Maximum test cost divided by "
                                       "the cost of never flagging anything.")
    min_test_positives: int = Field(
        10, ge=1, description="Fewer positives in the test part than this: refuse to judge."
    )
    cost_margin: float = Field(0.05, ge=0, description="Allowed normalised-cost increase over "
                               "the champion (upper confidence bound).")
    recall_margin: float = Field(
        0.05, ge=0, le=1, description="Allowed recall drop versus the champion (upper bound)."
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1, description="Confidence of the bootstrap bounds (one-sided)."
    )
    bootstrap_samples: int = Field(
        2000, ge=100, le=100_000,
        description="Bootstrap resamples of the test rows (absolute gates and champion).",
    )
    absolute_gates: GateJudgement = Field(
        "bound",
        description="Judge min_recall, min_pr_auc and max_normalised_cost on one-sided "
        "bootstrap bounds at `confidence` (`bound`), or on point estimates (`point`).",
    )
    approval: Approval = Field(
        "none",
        description="`manual`: a candidate that passes every gate is registered as `pending` "
        "and promoted only when a person approves it (`rareflow models approve`, or the "
        "approval flow's Resume form in the Prefect UI; needs a Prefect server).",
    )
    approval_timeout_s: int = Field(
        86_400, ge=1, le=30 * 86_400,
        description="Seconds the approval flow waits for a decision; no answer rejects it.",
    )
    shadow_refused: bool = Field(
        False, description="A candidate that passed the absolute gates but whose champion "
        "comparison was refused (too few fair test rows) becomes the shadow challenger: scored "
        "beside the champion and promoted on live matured rows (docs/shadow.md).")
    shadow_first: bool = Field(
        False, description="While a champion serves, a candidate that passed the absolute "
        "gates never replaces it on test-row evidence: it becomes the shadow challenger and is "
        "promoted only on live matured rows (its test-row comparison is kept for information; "
        "docs/shadow.md).")


class DemoSize(_Model):
    """How much `rareflow demo` does: rows of each demo table, folds and candidates."""

    rows: int = Field(20_000, ge=2_000, description="Rows of each demo table.")
    n_folds: int = Field(3, ge=2, le=20, description="Stratified folds of each training.")
    max_candidates: int = Field(4, ge=1, le=64, description="Candidates `auto` compares.")


DEMO_QUICK = DemoSize()  # `rareflow demo --tables`; folds and candidates of `rareflow demo`
DEMO_FULL = DemoSize(rows=100_000, n_folds=5, max_candidates=12)  # `rareflow demo --full`
LOOP_ROWS = 50_400  # `rareflow demo`: 12 weeks x 600 rows a day


class TrainingConfig(_Model):
    """Everything one training run needs."""

    data: str = Field(..., description="The training data: a file (CSV, CSV.gz or Parquet), a "
                      "folder of partitions (hive-style `date=.../` folders too) or a glob.")
    label: str = Field(..., description="Name of the label column.")
    positive: str | None = Field(None, description="Label value of the rare (positive) class; "
                                 "default: 1/True, else the minority.")
    time_column: str | None = _time_column_field()
    window: str | None = _window_field()
    as_of: str | None = Field(
        None, description="Train on the source as it was known at this time: rows up to it whose "
        "labels had matured by it (default: now; the version records the time used).")
    since: str | None = Field(None, description="Only rows from this time on, too (needs "
                              "`time_column`; a retraining after a recall drift sets it). If they "
                              "hold too few of a class, the whole window is used (logged).")
    after_drift: Literal["since-drift", "window"] = Field(
        "since-drift", description="What a retraining started by a recall-drift event trains on: "
        "the window's rows since the drifted batch began (the whole window when they hold too "
        "few of a class), or the whole window.")
    label_time_column: str | None = _maturity_field("label_time_column")
    label_available_column: str | None = _maturity_field("label_available_column")
    label_delay_days: float = _maturity_field("label_delay_days")
    sample: float | Literal["auto"] | None = sample_field()
    sample_rows: int = sample_rows_field()
    costs: Costs = Field(default_factory=Costs)
    split: SplitConfig = Field(default_factory=SplitConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    gates: Gates = Field(default_factory=Gates)
    registry: str = Field("registry", description="Folder of the model registry.")
    name: str = Field("model", description="Model name in the registry.")
    schema_model: str | None = Field(
        None,
        description="Hand-written pandera DataFrameModel as 'module:Class'; default: inferred.",
    )
    seed: int = Field(0, description="Random seed for split, folds, resampling and models.")
    storage_options: StorageOptions = storage_options_field()

    @field_validator("positive", mode="before")
    @classmethod
    def _positive_as_text(cls, value):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return value if value is None or isinstance(value, str) else str(value)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_name(value)

    _window = field_validator("window", mode="before")(lambda v: check_window(v))
    _sample = field_validator("sample", mode="before")(lambda v: check_sample(v))
    _as_of = field_validator("as_of", "since", mode="before")(
        lambda v, info: check_as_of(v, info.field_name))


class TriggerEvent(_Model):
    """The event that started a run (filled in by a deployment trigger): what to train on."""

    event: str = Field(..., description="Event name, e.g. rareflow.data.arrived.")
    payload: dict = Field(default_factory=dict,
                          description="The event's payload: `source`, `as_of`, `partitions`, ...")


class IngestConfig(_Model):
    """Land a batch of rows in a data source as a new partition."""

    data: str = Field(..., description="The batch to add (CSV, CSV.gz or Parquet).")
    source: str = Field(..., description="Folder or object-storage URL (s3://bucket/prefix) "
                        "of the data source (created by the first batch).")
    name: str = Field("model", description="Model the data is for: the resource of the "
                      "rareflow.data.arrived event (rareflow.model.<name>).")
    time_column: str | None = Field(
        None, description="Column with each row's event time: the batch is written as one "
        "partition per UTC day of it (`date=YYYY-MM-DD/`). The first batch sets it for the "
        "source; without one, partitions are dated by the arrival time.")
    as_of: str | None = Field(None, description="Arrival time recorded in the event (default: "
                              "now); partitions of a source without a time column are dated by it.")
    storage_options: StorageOptions = storage_options_field()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_name(value)

    _as_of = field_validator("as_of", mode="before")(lambda v: check_as_of(v))


class MonitoringConfig(_Model):
    """Compare a labelled batch with a version's reference and decide on recall drift."""

    data: str = Field(..., description="A labelled batch (scored or not), or a data source: a "
                      "folder of partitions or a glob.")
    registry: str = Field("registry", description="Folder of the model registry.")
    name: str = Field("model", description="Model name in the registry.")
    version: str = Field("champion", description="`champion`, `latest` or a version id.")
    time_column: str | None = _time_column_field()
    window: str | None = _window_field()
    since_last_check: bool = Field(
        True, description="Judge only labels that matured since this model's last check (and "
        "after its training data); needs label times (`label_time_column`, or `time_column` "
        "with `label_delay_days`).")
    estimate_alarm: bool = Field(
        False, description="Let the estimated recall of rows whose labels have not matured "
        "(an estimate from calibrated scores) raise drift on its own.")
    recall_tolerance: float = Field(
        0.05, ge=0, lt=1, description="Recall drop below the reference tolerated as no drift."
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence of the drift test.")
    min_positives: int = Field(
        20, ge=1, description="Fewer matured positives than this: refuse to judge."
    )
    label_time_column: str | None = _maturity_field("label_time_column")
    label_available_column: str | None = _maturity_field("label_available_column")
    label_delay_days: float = _maturity_field("label_delay_days")
    as_of: str | None = Field(None, description="Reference time for maturity (default: now).")

    _window = field_validator("window", mode="before")(lambda v: check_window(v))
    _as_of = field_validator("as_of", mode="before")(lambda v: check_as_of(v))
    drift_sample_rows: int = Field(
        20_000, ge=1000, description="Rows sampled per side for the evidently data-drift part."
    )
    emit_events: bool = Field(True, description="Emit rareflow.monitor.recall-drift on drift.")
    rescore: bool = Field(False, description="Score the batch with this version even if it "
                          "already has a `score` column.")
    scored: str | None = Field(None, description="A scored source (`rareflow score --out`): "
                               "judge each version on the rows it decided, joined with `data`'s "
                               "matured labels by row key, and the shadow challenger.")
    num_stattest: NumStattest = Field(
        DEFAULT_NUM_STATTEST,
        description="evidently drift method for numeric inputs (PSI: a distance, threshold 0.1).",
    )
    cat_stattest: CatStattest = Field(
        DEFAULT_CAT_STATTEST,
        description="evidently drift method for categorical inputs (Jensen-Shannon distance, 0.1).",
    )
    storage_options: StorageOptions = storage_options_field()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_name(value)

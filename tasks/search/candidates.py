"""Candidate strategies: what a strategy is, and which ones ``auto`` tries on a table."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.config import INTERPOLATING_SAMPLERS, NUMERIC_ONLY_SAMPLERS, StrategyConfig

BLEND = "blend"
MILD_RATE = 0.10  # positive rate above this: mild imbalance
SEVERE_RATE = 0.01  # positive rate at or below this: severe imbalance (99/1 or worse)
MIN_INTERPOLATION_POSITIVES = 12  # fewer positives: no SMOTE-like samplers
BIG_TABLE_ROWS = 20_000  # from here on, random undersampling is a (fast) candidate
EXOTIC_FAMILIES = ("resampled", "anomaly")
LINEAR_MODELS = ("logreg",)  # the simplest candidates of the one-standard-error rule


@dataclass(frozen=True)
class CandidateSpec:
    """One training strategy: model family, sampler, class weights, calibration.

    ``model="blend"`` averages the positive-class probabilities of its ``members`` (each a
    CandidateSpec fitted on the same rows). ``calibration`` holds the (slope, intercept) of a
    sigmoid map on the logit of the score, fitted on out-of-fold scores (see
    :func:`tasks.decision.calibration.fit_platt`); with ``calibrate=True`` and no coefficients the
    pipeline is wrapped in scikit-learn's ``CalibratedClassifierCV`` instead.
    """

    model: str
    sampler: str = "none"
    class_weight: str | tuple = "none"  # "none", "balanced" or ((0, w0), (1, w1))
    calibrate: bool = False
    members: tuple = ()  # CandidateSpecs of a blend
    calibration: tuple | None = None  # (slope, intercept) on logit(score)

    @property
    def name(self) -> str:
        if self.model == BLEND:
            text = "blend(" + " + ".join(m.name for m in self.members) + ")"
        else:
            cw = self.class_weight
            cw_text = (cw if isinstance(cw, str)
                       else "{" + ",".join(f"{k}:{v:g}" for k, v in cw) + "}")
            text = f"{self.model}|{self.sampler}|{cw_text}"
        return text + "|calibrated" if self.calibrate else text

    @property
    def family(self) -> str:
        """How the leaderboard groups it: 'blend', 'anomaly', 'resampled' or 'core'."""
        if self.model == BLEND:
            return "blend"
        if self.model == "iforest":
            return "anomaly"
        return "resampled" if self.sampler != "none" else "core"

    def weights(self):
        """The class_weight argument for scikit-learn (None, 'balanced' or a dict)."""
        if self.class_weight == "none":
            return None
        if isinstance(self.class_weight, str):
            return self.class_weight
        return dict(self.class_weight)

    def as_dict(self) -> dict:
        out = {
            "model": self.model,
            "sampler": self.sampler,
            "class_weight": self.weights() if not isinstance(self.class_weight, str)
            else self.class_weight,
            "calibrate": self.calibrate,
        }
        if self.members:
            out["members"] = [m.as_dict() for m in self.members]
        if self.calibration is not None:
            out["calibration"] = {"method": "sigmoid on logit(score), fitted on out-of-fold "
                                            "scores", "slope": self.calibration[0],
                                  "intercept": self.calibration[1]}
        return out

    def uncalibrated(self) -> CandidateSpec:
        """The same strategy without its calibration."""
        return CandidateSpec(self.model, self.sampler, self.class_weight, members=self.members)


def spec_from_config(model: str, sampler: str, class_weight, calibrate: bool = False):
    """Build a CandidateSpec from config values (mappings become hashable tuples)."""
    if isinstance(class_weight, dict):
        class_weight = tuple(sorted((int(k), float(v)) for k, v in class_weight.items()))
    return CandidateSpec(model=model, sampler=sampler, class_weight=class_weight,
                         calibrate=calibrate)


def supported(spec: CandidateSpec, *, positives: int, has_categorical: bool) -> bool:
    """Whether the data can support a candidate's sampler at all."""
    if spec.sampler in INTERPOLATING_SAMPLERS and positives < MIN_INTERPOLATION_POSITIVES:
        return False
    return not (has_categorical and spec.sampler in NUMERIC_ONLY_SAMPLERS)


def candidate_specs(
    strategy: StrategyConfig, *, positive_rate: float, positives: int, rows: int,
    has_categorical: bool,
) -> list[CandidateSpec]:
    """Candidate strategies for this data, cheapest and most promising first.

    With every choice fixed in the config there is exactly one candidate. With ``auto``
    the set follows the seed guidance (docs/architecture.md) and is then measured, not
    assumed:

    - every table: logistic regression and gradient boosting, unweighted and ``balanced``,
      and a random forest — the cost threshold does most of the work, and which family wins
      depends on the data;
    - severe imbalance (positive rate <= 1 %): a BalancedRandomForest (an undersampling
      ensemble). On the quality benchmark's other tables it was the dearest candidate and,
      left out, the choices cost no more (mean 0.319 against 0.323, replayed by
      benchmarks/ablation.py) for a search 25-35 % shorter (benchmarks/results/ablation.md);
    - moderate imbalance (positive rate <= 10 %): SMOTE (SMOTENC with categories) with
      logistic regression, when there are enough positives to interpolate;
    - big tables (>= 20,000 rows) with moderate imbalance: random undersampling with
      gradient boosting (fast, and often as good);

    The IsolationForest (``iforest``) stays available when the config names it, but is not an
    ``auto`` candidate: on the five shared datasets its outer-test cost was the worst of every
    candidate, including kddcup_rootkit (0.3 % positives, the case it was meant for: 0.301 vs
    0.062 for class-weighted gradient boosting); see docs/strategy-and-threshold.md.

    Calibration is not a candidate: the selection decides it for the winner.
    """
    if not strategy.is_auto:
        return [spec_from_config(strategy.model, strategy.sampler, strategy.class_weight)]
    moderate = positive_rate <= MILD_RATE
    specs = [
        CandidateSpec("logreg", "none", "none"),
        CandidateSpec("logreg", "none", "balanced"),
        CandidateSpec("hgb", "none", "none"),
        CandidateSpec("brf", "none", "none"),
        CandidateSpec("hgb", "none", "balanced"),
        CandidateSpec("rf", "none", "none"),
    ]
    if positive_rate > SEVERE_RATE:
        specs.remove(CandidateSpec("brf", "none", "none"))
    if moderate:
        specs.append(CandidateSpec("logreg", "smote", "none"))
    if moderate and rows >= BIG_TABLE_ROWS:
        specs.append(CandidateSpec("hgb", "random_under", "none"))
    # honour whatever the user fixed, and drop what the data cannot support
    out = []
    for s in specs:
        s = CandidateSpec(
            model=s.model if strategy.model == "auto" else strategy.model,
            sampler=s.sampler if strategy.sampler == "auto" else strategy.sampler,
            class_weight=s.class_weight if strategy.class_weight == "auto"
            else spec_from_config("x", "none", strategy.class_weight).class_weight,
        )
        if supported(s, positives=positives, has_categorical=has_categorical) and s not in out:
            out.append(s)
    return out[: strategy.max_candidates]

"""Pipelines, estimators and calibration (tasks/search/pipeline.py, estimators.py,
final_fit.py, tasks/decision/calibration.py): blends, Platt calibration, the anomaly
candidate, resampling inside the pipeline, cross-validated bags."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from schemas.errors import ConfigError
from schemas.inference import infer_input_schema
from tasks.decision.calibration import apply_platt, fit_platt, to_logit
from tasks.search.candidates import BLEND, CandidateSpec
from tasks.search.estimators import (
    BlendClassifier,
    CategoryCodes,
    CrossValBag,
    IsolationForestClassifier,
    PlattCalibrated,
    positive_scores,
)
from tasks.search.final_fit import fit_final
from tasks.search.hyperparams import RF_MAX_TREE_ROWS
from tasks.search.pipeline import make_estimator, make_pipeline


@pytest.fixture(scope="module")
def tiny():
    """A 300-row frame with two numeric and one categorical column, 10 % positives."""
    X, y = make_classification(n_samples=300, n_features=4, n_informative=3, n_redundant=0,
                               weights=[0.9], random_state=0)
    df = pd.DataFrame(X[:, :2], columns=["a", "b"])
    df["kind"] = np.where(X[:, 2] > 0, "x", "y")
    df.loc[::17, "a"] = np.nan
    schema = infer_input_schema(df.assign(label=y), label="label", positive="1", negative="0")
    return df, y, schema


def _pipe(spec, schema, y, **kw):
    return make_pipeline(spec, schema, min_class_rows=int(min(y.sum(), len(y) - y.sum())),
                         minority_share=float(y.mean()), seed=0, **kw)


def test_blend_averages_member_probabilities(tiny):
    """Check that a blend's probability is the mean of its members' probabilities."""
    df, y, schema = tiny
    a, b = CandidateSpec("logreg"), CandidateSpec("hgb")
    blend = _pipe(CandidateSpec(BLEND, members=(a, b)), schema, y).fit(df, y)
    pa = positive_scores(_pipe(a, schema, y).fit(df, y), df)
    pb = positive_scores(_pipe(b, schema, y).fit(df, y), df)
    assert isinstance(blend, BlendClassifier)
    np.testing.assert_allclose(positive_scores(blend, df), (pa + pb) / 2)


def test_blend_without_members_is_refused():
    """Check that fitting an empty blend raises a ConfigError naming the problem."""
    with pytest.raises(ConfigError, match="at least one member"):
        BlendClassifier([]).fit(np.zeros((4, 1)), np.array([0, 1, 0, 1]))


def test_platt_map_is_increasing_and_keeps_decisions():
    """Check that the calibration map keeps the ranking, so a mapped threshold decides alike."""
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 500)
    y = (rng.uniform(0, 1, 500) < scores**3).astype(int)
    slope, intercept = fit_platt(y, scores)
    calibrated = apply_platt(scores, slope, intercept)
    assert slope > 0
    order = np.argsort(scores)
    assert np.all(np.diff(calibrated[order]) >= 0)
    t = 0.4
    t_cal = apply_platt(np.array([t]), slope, intercept)[0]
    np.testing.assert_array_equal(scores >= t, calibrated >= t_cal)


def test_platt_fit_solves_logistic_regression_on_the_logit():
    """Check that the Newton fit reaches scikit-learn's LogisticRegression(C=1) optimum on
    logit(score) (at least as low an objective), and that a warm start lands on the same map."""
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 4000) ** 3
    y = (rng.uniform(0, 1, 4000) < scores * 0.3).astype(int)
    x = to_logit(scores)

    def objective(a, b):
        z = a * x + b
        return np.logaddexp(0, z).sum() - y @ z + a * a / 2

    slope, intercept = fit_platt(y, scores)
    ref = LogisticRegression(C=1.0, max_iter=1000, tol=1e-10).fit(x.reshape(-1, 1), y)
    assert slope == pytest.approx(ref.coef_[0, 0], rel=1e-3)
    assert intercept == pytest.approx(ref.intercept_[0], rel=1e-3)
    assert objective(slope, intercept) <= objective(ref.coef_[0, 0], ref.intercept_[0]) + 1e-6
    warm = fit_platt(y, scores, start=(slope * 1.3, intercept - 0.5))
    assert warm == pytest.approx((slope, intercept), rel=1e-6)
    with pytest.raises(ValueError, match="both classes"):
        fit_platt(np.zeros(10), scores[:10])


def test_platt_corrects_class_weight_bias():
    """Check that calibrating a balanced model's scores brings their mean to the prevalence."""
    X, y = make_classification(n_samples=3000, weights=[0.95], random_state=1)
    half = len(y) // 2
    model = LogisticRegression(class_weight="balanced").fit(X[:half], y[:half])
    raw = model.predict_proba(X[half:])[:, 1]
    slope, intercept = fit_platt(y[half:], raw)
    calibrated = apply_platt(raw, slope, intercept)
    prevalence = y[half:].mean()
    assert raw.mean() > 3 * prevalence  # class weights inflate the scores
    assert abs(calibrated.mean() - prevalence) < 0.01


def test_platt_calibrated_refuses_non_positive_slope():
    """Check that a calibration map that would reverse the ranking is refused."""
    with pytest.raises(ConfigError, match="slope must be > 0"):
        PlattCalibrated(LogisticRegression(), slope=-1.0).fit(np.zeros((4, 1)),
                                                             np.array([0, 1, 0, 1]))


def test_calibrated_spec_fits_platt_wrapper_and_pickles(tiny):
    """Check that a spec with coefficients becomes a PlattCalibrated model that round-trips."""
    df, y, schema = tiny
    spec = CandidateSpec("logreg", calibrate=True, calibration=(0.8, -0.5))
    fitted = fit_final(spec, df, y, schema, threshold=0.2, seed=0)
    assert fitted.model.calibrated
    assert isinstance(fitted.model.estimator.estimator.estimator_, PlattCalibrated)
    raw = positive_scores(fitted.model.estimator.estimator.estimator_.estimator_, df)
    np.testing.assert_allclose(fitted.model.positive_proba(df), apply_platt(raw, 0.8, -0.5))
    again = pickle.loads(pickle.dumps(fitted.model))
    np.testing.assert_allclose(again.positive_proba(df), fitted.model.positive_proba(df))


def test_spec_names_and_dicts_describe_blends_and_calibration():
    """Check that a calibrated blend's name and as_dict name its members and its map."""
    spec = CandidateSpec(BLEND, members=(CandidateSpec("logreg"), CandidateSpec("rf")),
                         calibrate=True, calibration=(1.0, -2.0))
    assert spec.name == "blend(logreg|none|none + rf|none|none)|calibrated"
    assert spec.family == "blend"
    d = spec.as_dict()
    assert [m["model"] for m in d["members"]] == ["logreg", "rf"]
    assert d["calibration"]["intercept"] == -2.0
    assert CandidateSpec("iforest").family == "anomaly"
    assert CandidateSpec("logreg", "smote").family == "resampled"


def test_iforest_scores_follow_the_anomaly_score(tiny):
    """Check that the anomaly candidate ranks rows exactly as the IsolationForest does."""
    df, y, schema = tiny
    X = np.random.default_rng(0).normal(size=(400, 3))
    y = np.zeros(400, dtype=int)
    X[:20] += 4  # the positives are outliers
    y[:20] = 1
    model = IsolationForestClassifier(random_state=0).fit(X, y)
    proba = model.predict_proba(X)[:, 1]
    anomaly = -model.forest_.score_samples(X)
    assert np.all(np.diff(proba[np.argsort(anomaly)]) >= 0)
    assert proba[:20].mean() > proba[20:].mean()


def test_iforest_pipeline_scores_every_row(tiny):
    """Check that the anomaly candidate runs as a pipeline on mixed columns with gaps."""
    df, y, schema = tiny
    pipe = _pipe(CandidateSpec("iforest"), schema, y).fit(df, y)
    scores = positive_scores(pipe, df)
    assert scores.shape == (len(df),) and np.isfinite(scores).all()


@pytest.mark.parametrize("sampler", ["random_over", "random_under", "smote", "smotetomek"])
def test_resampling_never_changes_the_rows_scored(tiny, sampler):
    """Check that a resampling pipeline scores exactly the rows it is given, no more."""
    df, y, schema = tiny
    pipe = _pipe(CandidateSpec("logreg", sampler), schema, y).fit(df.iloc[:200], y[:200])
    held = df.iloc[200:]
    assert positive_scores(pipe, held).shape == (len(held),)


def test_random_forest_subsamples_big_tables():
    """Check that a RandomForest draws at most RF_MAX_TREE_ROWS rows per tree on big data."""
    spec = CandidateSpec("rf")
    small = make_estimator(spec, n_categorical=0, seed=0, n_rows=5000)
    big = make_estimator(spec, n_categorical=0, seed=0, n_rows=4 * RF_MAX_TREE_ROWS)
    assert small.max_samples is None
    assert big.max_samples == pytest.approx(0.25)


def test_cross_val_bag_fits_one_model_per_fold_and_averages(tiny):
    """Check that a bag fits a model on each fold's training rows and averages them."""
    df, y, schema = tiny
    folds = [(np.arange(0, 200), np.arange(200, 300)), (np.arange(100, 300), np.arange(100))]
    bag = CrossValBag(_pipe(CandidateSpec("logreg"), schema, y), folds=folds).fit(df, y)
    singles = [_pipe(CandidateSpec("logreg"), schema, y).fit(df.iloc[tr], y[tr])
               for tr, _ in folds]
    expected = np.mean([positive_scores(m, df) for m in singles], axis=0)
    np.testing.assert_allclose(positive_scores(bag, df), expected)
    again = CrossValBag.from_fitted(singles)
    np.testing.assert_allclose(positive_scores(again, df), expected)


@pytest.mark.parametrize("make, match", [
    (lambda: CrossValBag(LogisticRegression()).fit(pd.DataFrame({"a": [0.0, 1.0]}),
                                                  np.array([0, 1])), "needs folds"),
    (lambda: CrossValBag.from_fitted([]), "at least one fitted model"),
])
def test_cross_val_bag_errors(make, match):
    """Check that a bag without folds or models is refused with a clear ConfigError."""
    with pytest.raises(ConfigError, match=match):
        make()


def test_fit_final_assembles_fold_models_without_refitting(tiny):
    """Check that given fold models, the final model is their (calibrated) average, unrefit."""
    df, y, schema = tiny
    halves = [np.arange(0, 150), np.arange(150, 300)]
    models = [_pipe(CandidateSpec("logreg"), schema, y).fit(df.iloc[h], y[h]) for h in halves]
    spec = CandidateSpec("logreg", calibrate=True, calibration=(1.2, -0.3))
    fitted = fit_final(spec, df, y, schema, threshold=0.3, seed=0, fold_models=models)
    raw = np.mean([positive_scores(m, df) for m in models], axis=0)
    np.testing.assert_allclose(fitted.model.positive_proba(df), apply_platt(raw, 1.2, -0.3))
    assert fitted.model.calibrated and "fold models" in fitted.info["final_model"]
    assert fitted.model.estimator.estimator.estimator_.estimator_.estimators_[0] is models[0]
    again = pickle.loads(pickle.dumps(fitted.model))
    np.testing.assert_array_equal(again.decide(df), fitted.model.decide(df))


@pytest.mark.parametrize("spec, native", [
    (CandidateSpec("hgb"), True),
    (CandidateSpec("hgb", "random_under"), True),
    (CandidateSpec("hgb", "smote"), False),
    (CandidateSpec("logreg"), False),
])
def test_boosted_trees_read_missing_numbers_natively(tiny, spec, native):
    """Check that HGB gets the numbers with their NaN (no imputation, no indicator columns).

    Samplers that interpolate and the other models still get imputed numbers plus
    missing-indicator columns; both kinds fit and score a frame with missing values.
    """
    df, y, schema = tiny
    pipe = _pipe(spec, schema, y).fit(df, y)
    features = pipe.named_steps["prepare"].transform(pipe.named_steps["cast"].transform(df))
    assert np.isnan(features).any() == native
    with_missing = int(df[schema.numeric].isna().any().sum())  # indicators only for these
    assert features.shape[1] == (3 if native else 3 + with_missing)
    scores = positive_scores(pipe, df)
    assert np.isfinite(scores).all() and len(scores) == len(df)


@pytest.mark.parametrize("model", ["logreg", "hgb"])
def test_missing_category_scores_the_same_from_csv_and_parquet(tmp_path, model):
    """Check that a row whose category is missing scores the same whether the table came from
    CSV (NaN), Parquet (None) or a pandas string column (pd.NA)."""
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"x": rng.normal(size=n),
                       "shop": rng.choice(["a", "b", "c"], n).astype(object)})
    df.loc[::7, "shop"] = np.nan
    y = (df["x"] + (df["shop"] == "a") + rng.normal(size=n) > 1).astype(int).to_numpy()
    schema = infer_input_schema(df.assign(y=y), label="y", positive="1", negative="0")
    pipe = make_pipeline(CandidateSpec(model), schema, min_class_rows=int(y.sum()),
                         minority_share=float(y.mean()), seed=0).fit(df, y)
    df.to_parquet(tmp_path / "t.parquet", index=False)
    from_parquet = pd.read_parquet(tmp_path / "t.parquet")
    assert from_parquet["shop"].isna().sum() and from_parquet["shop"].map(type).eq(
        type(None)).any()  # Parquet gives None, not NaN
    expected = positive_scores(pipe, df)
    np.testing.assert_array_equal(positive_scores(pipe, from_parquet), expected)
    np.testing.assert_array_equal(positive_scores(pipe, df.astype({"shop": "string"})),
                                  expected)


def test_forests_predict_in_tree_order_whatever_the_fit_threads(tiny):
    """Check that after fit_fold a forest fitted with 2 threads predicts with one (its trees'
    probabilities added in tree order, so scores do not depend on thread timing), and that
    its scores equal the threaded forest's to rounding."""
    from tasks.search.cross_validation import fit_fold

    df, y, schema = tiny
    rows = np.arange(len(y))
    scores, pipe, _ = fit_fold(CandidateSpec("rf"), df, y, schema, rows, rows, seed=0, n_jobs=2)
    forests = [s for s in pipe.named_steps.values() if hasattr(s, "estimators_")]
    assert forests and all(f.n_jobs == 1 for f in forests)
    threaded = _pipe(CandidateSpec("rf"), schema, y).fit(df, y)
    for step in threaded.named_steps.values():
        if hasattr(step, "estimators_"):
            step.n_jobs = 2
    np.testing.assert_allclose(threaded.predict_proba(df)[:, 1], scores, rtol=0, atol=1e-12)


def _category_columns(rng, n: int, sizes: tuple[int, ...]) -> np.ndarray:
    """Text columns with skewed frequencies (ties among the rare ones) of ``sizes`` levels."""
    columns = []
    for k in sizes:
        weights = 1 / np.arange(1, k + 1) ** 1.3
        levels = np.array([f"v{i:03d}" for i in rng.permutation(k)], dtype=object)
        columns.append(rng.choice(levels, size=n, p=weights / weights.sum()))
    return np.column_stack(columns).astype(object)


@pytest.mark.parametrize("max_categories", [None, 2, 5, 64])
def test_category_codes_match_scikit_learns_ordinal_encoder(max_categories):
    """Same codes as OrdinalEncoder(use_encoded_value, -1, max_categories), the infrequent
    group, count ties, exactly max_categories levels and unseen categories included."""
    from sklearn.preprocessing import OrdinalEncoder

    rng = np.random.default_rng(7)
    train = _category_columns(rng, 5000, (1, 3, 20, 63, 64, 200))
    train[:3, 2] = ["tie_a", "tie_b", "tie_c"]  # three categories seen once each
    new = train[:500].copy()
    new[::7, 3] = "never seen"
    reference = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                               max_categories=max_categories, dtype=np.float64).fit(train)
    ours = CategoryCodes(max_categories=max_categories).fit(train)
    for rows in (train, new, pd.DataFrame(new)):
        got = ours.transform(rows)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, reference.transform(np.asarray(rows)))
    for mine, theirs in zip(ours.categories_, reference.categories_, strict=True):
        assert list(mine) == list(theirs)
    with pytest.raises(ValueError, match="expecting 6 features"):
        ours.transform(train[:, :2])
    train[5, 1] = None
    with pytest.raises(ValueError, match="column 1 has missing values; impute them"):
        CategoryCodes().fit(train)


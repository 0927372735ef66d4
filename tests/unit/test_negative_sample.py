"""Training on a negative sample (`sample`): which rows are kept, and that every figure a run
judges with is in the population's units (a kept negative weighs 1 / rate)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from schemas.config import TrainingConfig
from schemas.errors import DataError
from tasks.data.negative_sample import auto_rate, uniform_from
from tasks.data.window import read_training_window
from tasks.decision.calibration import population_scores
from tasks.decision.costs import DecisionCosts
from tasks.decision.served_classifier import served_classifier
from tasks.decision.threshold import choose_threshold
from tasks.judge.gates import candidate_bootstrap
from tasks.judge.metrics import evaluate_scores
from tasks.search.estimators import PlattCalibrated
from tasks.search.final_fit import in_population_units

LABEL = "is_fraud"


def _table(n=6000, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(-3.5 + 1.5 * x[:, 0])))).astype(int)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["channel"] = rng.choice(["web", "pos", "atm"], n)
    frame[LABEL] = y
    return frame


def _source(tmp_path, frame, fmt="parquet"):
    root = tmp_path / f"source_{fmt}"
    for day, part in enumerate(np.array_split(np.arange(len(frame)), 3), start=1):
        folder = root / f"date=2026-11-0{day}"
        folder.mkdir(parents=True)
        rows = frame.iloc[part]
        if fmt == "parquet":
            rows.to_parquet(folder / "part.parquet", index=False)
        else:
            rows.to_csv(folder / "part.csv", index=False)
    return root


def _read(data, **options):
    config = TrainingConfig(data=str(data), label=LABEL, **options)
    return read_training_window(config, needed=5)


def test_every_positive_and_a_share_of_the_negatives_are_kept(tmp_path):
    frame = _table()
    window = _read(_source(tmp_path, frame), sample=0.2)
    kept = window.frame
    sample = window.lineage["sample"]
    positives, negatives = int(frame[LABEL].sum()), int((frame[LABEL] == 0).sum())
    assert int(kept[LABEL].sum()) == positives
    assert sample["rows_before"] == {"positive": positives, "negative": negatives}
    kept_neg = int((kept[LABEL] == 0).sum())
    assert sample["rows_after"] == {"positive": positives, "negative": kept_neg}
    sd = np.sqrt(negatives * 0.2 * 0.8)
    assert abs(kept_neg - 0.2 * negatives) < 4 * sd
    assert sample["rate"] == 0.2 and sample["negative_weight"] == 5.0
    assert sample["seed"] == 0 and sample["positive"] == "1"
    assert window.lineage["class_counts"] == {"0": kept_neg, "1": positives}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_same_rows_again_but_not_with_another_seed(tmp_path, fmt):
    source = _source(tmp_path, _table(), fmt)
    first = _read(source, sample=0.3).frame
    pd.testing.assert_frame_equal(first, _read(source, sample=0.3).frame)
    other_seed = _read(source, sample=0.3, seed=1).frame
    assert not np.array_equal(first["a"].to_numpy(), other_seed["a"].to_numpy())


def test_auto_keeps_about_the_row_budget(tmp_path):
    frame = _table(n=9000)
    window = _read(_source(tmp_path, frame), sample="auto", sample_rows=3000)
    sample = window.lineage["sample"]
    assert sample["setting"] == "auto"
    assert sample["rate"] == pytest.approx(3000 / 9000)
    positives = int(frame[LABEL].sum())  # kept whole: about 3000 rows beside them
    assert abs(len(window.frame) - (3000 + positives * (1 - sample["rate"]))) < 150
    assert auto_rate(100, 1000) == 1.0


@pytest.mark.parametrize("time_column", [None, "t"])
def test_a_window_of_rows_is_sampled_from_the_populations_last_rows(tmp_path, time_column):
    """Check that `sample` with `window: 2500rows` keeps, of the 2500 rows the same window
    uses without a sample (by the partitions' dates, or by a time column with ties, ties by
    position), every positive and a share of the negatives, in their order; that the rows
    before the sample are those 2500; and that `auto` counts the window's rows, not the
    source's."""
    frame = _table()
    options = {"window": "2500rows"}
    if time_column:  # unsorted times with many ties, across the partitions
        frame["t"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(
            np.random.default_rng(1).integers(0, 400, len(frame)), unit="min")
        options["time_column"] = time_column
    source = _source(tmp_path, frame)
    whole = _read(source, **options).frame
    sampled = _read(source, sample=0.4, **options)
    positives = int(whole[LABEL].sum())
    assert sampled.lineage["sample"]["rows_before"] == {"positive": positives,
                                                         "negative": 2500 - positives}
    kept = sampled.frame
    assert int(kept[LABEL].sum()) == positives
    assert 0.3 < (kept[LABEL] == 0).sum() / (2500 - positives) < 0.5
    positions = whole.reset_index().merge(kept, how="inner")["index"]
    assert len(positions) == len(kept) and positions.is_monotonic_increasing
    auto = _read(source, sample="auto", sample_rows=1000, **options).lineage["sample"]
    assert auto["rate"] == 1000 / 2500


def test_the_hash_is_uniform_and_seeded():
    hashes = np.arange(200_000, dtype=np.uint64) * np.uint64(2654435761)
    u = uniform_from(hashes, 0)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005
    assert abs((u < 0.1).mean() - 0.1) < 0.003
    assert not np.array_equal(u, uniform_from(hashes, 1))


def _population_and_sample(rate_inverse=4, seed=3):
    """Labels and scores of a population, and the same with each negative kept once in
    ``rate_inverse`` (every ``rate_inverse``-th one)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(8000) < 0.05).astype(int)
    scores = np.clip(rng.normal(0.3 + 0.3 * y, 0.15), 0, 1)
    neg = np.flatnonzero(y == 0)
    kept = np.sort(np.r_[np.flatnonzero(y == 1), neg[::rate_inverse]])
    # the population the sample stands for: each kept negative repeated rate_inverse times
    rows = np.repeat(kept, np.where(y[kept] == 1, 1, rate_inverse))
    return (y[kept], scores[kept]), (y[rows], scores[rows])


def test_costs_threshold_and_metrics_of_a_sample_are_the_populations():
    (ys, ss), (yp, sp) = _population_and_sample()
    weighted = DecisionCosts(fn_cost=20, fp_cost=1, sample_rate=0.25)
    plain = DecisionCosts(fn_cost=20, fp_cost=1)
    on_sample = choose_threshold(ys, ss, costs=weighted)
    on_population = choose_threshold(yp, sp, costs=plain)
    assert on_sample.threshold == on_population.threshold
    assert on_sample.normalised_cost == pytest.approx(on_population.normalised_cost)
    a = evaluate_scores(ys, ss, threshold=on_sample.threshold, costs=weighted)
    b = evaluate_scores(yp, sp, threshold=on_sample.threshold, costs=plain)
    for key in ("prevalence", "pr_auc", "roc_auc"):
        assert a[key] == pytest.approx(b[key]), key
    for key in ("recall", "precision", "f1", "expected_cost", "normalised_cost", "alert_rate",
                "cost_per_row"):
        assert a["at_threshold"][key] == pytest.approx(b["at_threshold"][key]), key
    assert a["at_threshold"]["confusion_matrix"] == b["at_threshold"]["confusion_matrix"]
    unweighted = evaluate_scores(ys, ss, threshold=on_sample.threshold, costs=plain)
    assert unweighted["pr_auc"] > a["pr_auc"]  # a sample judged as it is flatters precision
    d = ss >= on_sample.threshold
    boot = candidate_bootstrap(ys, ss, d, costs=weighted, samples=200, confidence=0.95)
    assert boot["pr_auc"] == pytest.approx(average_precision_score(yp, sp))
    assert boot["normalised_cost"] == pytest.approx(on_population.normalised_cost)


def test_scores_are_put_back_at_the_populations_prevalence():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 1))
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(-5 + 2 * X[:, 0])))).astype(int)
    keep = (y == 1) | (rng.random(len(y)) < 0.1)
    model = LogisticRegression().fit(X[keep], y[keep])
    costs = DecisionCosts(fn_cost=10, fp_cost=1, sample_rate=0.1)
    corrected, threshold = in_population_units(model, 0.3, costs)
    served = served_classifier(corrected, threshold=threshold, schema=None, spec=None,
                               negative=0, positive=1, costs=costs)
    p = model.predict_proba(X)[:, 1]
    q = served.positive_proba(X)
    assert np.allclose(q, population_scores(p, 0.1))
    assert served.threshold == pytest.approx(population_scores(0.3, 0.1))
    assert np.array_equal(served.decide(X).astype(bool), p >= 0.3)
    assert q.mean() == pytest.approx(y.mean(), rel=0.15)  # the population's prevalence
    assert p.mean() > 3 * y.mean()  # the sample's, without the correction
    # a fixed Platt map, a class every rareflow with calibration loads
    assert isinstance(served.estimator.estimator.estimator_, PlattCalibrated)
    assert served.fp_cost == 1  # what the version records: the cost, not the weight
    assert in_population_units(model, 0.3, DecisionCosts()) == (model, 0.3)
    assert in_population_units(model, 1.5, costs)[1] == 1.5  # above 1: still flags nothing


def test_training_costs_weigh_the_frozen_rate():
    config = TrainingConfig(data="x", label=LABEL, sample=0.25)
    assert DecisionCosts.for_training(config).sample_rate == 0.25
    assert DecisionCosts.for_training(config).negative_weight == 4.0
    assert DecisionCosts.for_training(config).false_alarm_cost == 4.0
    assert DecisionCosts.for_training(config.model_copy(update={"sample": None})) \
        .negative_weight == 1.0
    with pytest.raises(ValueError, match="still 'auto'"):
        DecisionCosts.for_training(config.model_copy(update={"sample": "auto"}))


def test_a_window_larger_than_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import tasks.data.negative_sample as negative_sample

    source = _source(tmp_path, _table())
    monkeypatch.setattr(negative_sample, "available_memory", lambda: 100_000)
    with pytest.raises(DataError, match=r"holds about .* GiB of rows uncompressed.*set sample"):
        _read(source)
    assert len(_read(source, sample=0.5).frame) > 0  # a sample is read partition by partition
    negative_sample.check_window_fits(10, source="s", available=20)
    assert negative_sample.available_memory() > 0


def test_monitoring_counts_a_sampled_reference_as_the_population():
    from tasks.monitor.label_free_estimate import estimate_recall, reference_calibration
    from tasks.monitor.verdict import classification_figures, cost_figures

    (ys, ss), (yp, sp) = _population_and_sample()
    ws = np.where(ys == 1, 1.0, 4.0)
    ds, dp = ss >= 0.45, sp >= 0.45
    a, b = classification_figures(ys, ds, ws), classification_figures(yp, dp)
    for key in ("positives", "detected", "flagged", "recall", "precision", "prevalence",
                "flag_rate"):
        assert a[key] == pytest.approx(b[key]), key
    costs = DecisionCosts(fn_cost=10, fp_cost=1)
    ca, cb = cost_figures(ys, ds, costs=costs, weights=ws), cost_figures(yp, dp, costs=costs)
    for key in ("expected_cost", "cost_per_row", "normalised_cost"):
        assert ca[key] == pytest.approx(cb[key]), key
    calibration = reference_calibration(sp, yp)
    common = dict(calibration=calibration, costs=costs, reference_costs=costs, tolerance=0.05,
                  confidence=0.95, min_positives=1)
    sampled = estimate_recall(sp[:500], dp[:500], reference_scores=ss, reference_decisions=ds,
                              reference_weights=ws, **common)
    whole = estimate_recall(sp[:500], dp[:500], reference_scores=sp, reference_decisions=dp,
                            **common)
    assert sampled.reference_recall == pytest.approx(whole.reference_recall)
    weighted = reference_calibration(ss, ys, ws).predict(sp)
    assert np.allclose(weighted, calibration.predict(sp), atol=1e-9)


def test_rows_outside_the_window_may_lack_labels_and_an_empty_partition_decides_nothing(
        tmp_path):
    frame = _table()
    frame["is_fraud"] = frame["is_fraud"].map({1: "yes", 0: "no"})
    frame["event_time"] = pd.Timestamp("2026-11-02", tz="UTC")
    late = frame.iloc[:50].assign(event_time=pd.Timestamp("2026-11-20", tz="UTC"),
                                  is_fraud=None)  # after as_of: no label yet
    source = tmp_path / "source"
    (source / "a").mkdir(parents=True)
    frame.iloc[:0].to_parquet(source / "a" / "0-empty.parquet", index=False)
    pd.concat([frame, late]).to_parquet(source / "a" / "1-rows.parquet", index=False)
    window = _read(source, sample=0.3, time_column="event_time", as_of="2026-11-10")
    assert window.lineage["sample"]["positive"] == "yes"
    assert int((window.frame["is_fraud"] == "yes").sum()) == int((frame["is_fraud"] == "yes")
                                                                  .sum())


def test_a_rate_of_one_reads_every_row_as_without_a_sample(tmp_path):
    frame = _table()
    source = _source(tmp_path, frame)
    window = _read(source, sample="auto", sample_rows=len(frame) * 2)
    assert window.lineage["sample"]["rate"] == 1.0
    assert window.lineage["sample"]["rows_after"] is None
    pd.testing.assert_frame_equal(window.frame, _read(source).frame)
    with pytest.raises(Exception, match="not true/false"):
        TrainingConfig(data="x", label=LABEL, sample=True)


def test_an_alert_cap_counts_the_populations_rows():
    """Check that with max_alert_rate a sample's threshold is the population's (flagged rows
    counted in population rows), that the champion comparison's equal capacity keeps the
    flagged population rows within the budget, and that the reachable recall is the
    population's."""
    from tasks.decision.capacity import alert_capped, reachable_recall
    from tasks.decision.threshold import alert_budget

    (ys, ss), (yp, sp) = _population_and_sample()
    for cap in (0.01, 0.03):
        weighted = DecisionCosts(fn_cost=20, fp_cost=1, sample_rate=0.25, max_alert_rate=cap)
        plain = DecisionCosts(fn_cost=20, fp_cost=1, max_alert_rate=cap)
        on_sample = choose_threshold(ys, ss, costs=weighted)
        on_population = choose_threshold(yp, sp, costs=plain)
        assert on_sample.threshold == on_population.threshold
        assert (sp >= on_sample.threshold).sum() <= alert_budget(len(yp), cap)
        assert on_sample.threshold > choose_threshold(
            ys, ss, costs=DecisionCosts(fn_cost=20, fp_cost=1, sample_rate=0.25)).threshold
        weights = weighted.row_weights(ys)
        flagged = ss >= 0.3
        capped, _, told = alert_capped(flagged, flagged, cand_scores=ss, champ_scores=None,
                                       max_alert_rate=cap, weights=weights)
        assert told["alerts"] == alert_budget(len(yp), cap)
        assert weights @ capped <= told["alerts"] < weights @ flagged
        assert ss[capped].min() >= ss[flagged & ~capped].max()  # the highest scores kept
        figures = {"rows": len(ys), "positives": int(ys.sum())}
        assert reachable_recall(figures, weighted) == reachable_recall(
            {"rows": len(yp), "positives": int(yp.sum())}, plain)


AS_OF = "2026-12-01T00:00:00Z"  # lineage records it: the same in every read compared


def test_a_sampled_scan_reads_record_batches_and_keeps_the_same_rows(tmp_path, monkeypatch):
    """Check that a sampled Parquet partition is read one record batch at a time (batches of
    500 rows here) and keeps the rows, order and lineage of a read in one piece, with and
    without a window of the last 5000 rows (marked across batches)."""
    from tasks.data import scan

    root = _source(tmp_path, _table(n=9000))
    whole = _read(root, sample=0.3, as_of=AS_OF)
    seen = []
    read_batches = scan.pq.ParquetFile.iter_batches

    def counted(self, *args, **kwargs):
        for batch in read_batches(self, *args, **kwargs):
            seen.append(batch.num_rows)
            yield batch

    last = _read(root, sample=0.3, window="5000rows", as_of=AS_OF)
    monkeypatch.setattr(scan, "SAMPLED_BATCH_ROWS", 500)
    monkeypatch.setattr(scan.pq.ParquetFile, "iter_batches", counted)
    batched = _read(root, sample=0.3, as_of=AS_OF)
    assert max(seen) == 500 and sum(seen) == 9000
    pd.testing.assert_frame_equal(batched.frame, whole.frame)
    assert batched.lineage == whole.lineage
    batched_last = _read(root, sample=0.3, window="5000rows", as_of=AS_OF)  # marks by batch
    pd.testing.assert_frame_equal(batched_last.frame, last.frame)
    assert batched_last.lineage == last.lineage

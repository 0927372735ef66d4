"""Tests of the stratified split, its fingerprints, and the demo data generator."""

import numpy as np
import pandas as pd
import pytest

from schemas.demo import LABEL, DemoTransactions
from tasks.data.demo_tables import make_demo_data
from tasks.data.split import cv_folds, stratified_split


def test_split_parts_are_disjoint_stratified_and_fingerprinted():
    """Check that train and test are disjoint, cover all rows and keep the positive rate."""
    df = make_demo_data(5000, positive_rate=0.04, seed=0)
    y = df[LABEL].to_numpy()
    X = df.drop(columns=LABEL)
    split = stratified_split(X, y, test_size=0.25, seed=0)
    assert np.intersect1d(split.train_idx, split.test_idx).size == 0
    assert np.union1d(split.train_idx, split.test_idx).size == len(y)
    assert y[split.test_idx].mean() == pytest.approx(y.mean(), abs=0.005)
    fp = split.fingerprints
    assert fp["train"] != fp["test"] and fp["test_rows"] == len(split.test_idx)
    again = stratified_split(X, y, test_size=0.25, seed=0).fingerprints
    assert again == fp
    assert stratified_split(X, y, test_size=0.25, seed=1).fingerprints["test"] != fp["test"]


def test_out_of_time_split_tests_on_the_newest_rows():
    """Check that with row times the test part is exactly the newest share of rows (shuffled
    row order, ties kept in order), whatever the seed, and that the fingerprints say so."""
    df = make_demo_data(2000, positive_rate=0.05, seed=0)
    y = df[LABEL].to_numpy()
    rng = np.random.default_rng(0)
    times = pd.Series(pd.Timestamp("2026-01-01", tz="UTC")
                      + pd.to_timedelta(rng.permutation(2000) // 2, unit="h"))
    split = stratified_split(df.drop(columns=LABEL), y, test_size=0.2, seed=0, times=times)
    assert len(split.test_idx) == 400
    assert times.iloc[split.test_idx].min() >= times.iloc[split.train_idx].max()
    again = stratified_split(df.drop(columns=LABEL), y, test_size=0.2, seed=7, times=times)
    np.testing.assert_array_equal(again.test_idx, split.test_idx)
    fp = split.fingerprints
    assert fp["test_order"] == "time"
    assert fp["test_from"] == times.iloc[split.test_idx].min().isoformat()
    assert stratified_split(df.drop(columns=LABEL), y, test_size=0.2,
                            seed=0).fingerprints["test_order"] == "random"


def test_out_of_time_split_with_one_class_in_a_part_is_refused():
    """Check that newest rows without a positive, or a training part with too few positives
    for its folds, are a clear error, not a silent gate or a scikit-learn traceback."""
    from schemas.errors import DataError

    y = np.r_[np.ones(20), np.zeros(80)].astype(int)  # every positive is old
    times = pd.Series(pd.date_range("2026-01-01", periods=100, freq="D", tz="UTC"))
    X = pd.DataFrame({"a": np.arange(100.0)})
    with pytest.raises(DataError, match="test part of an out-of-time split.*test_order"):
        stratified_split(X, y, test_size=0.2, seed=0, times=times)
    # every positive is new: the training part could not be cut into stratified folds
    with pytest.raises(DataError, match="training part .* holds 3 rows of one class, fewer "
                                        "than the 5 it needs"):
        stratified_split(X, np.r_[np.zeros(77), np.ones(23)].astype(int), test_size=0.2,
                         seed=0, times=times, n_folds=5)


def test_split_times_follow_the_config():
    """Check ``split.test_order``: auto is time with a time_column and random without; time
    without a time_column is a config error."""
    from types import SimpleNamespace

    from schemas.config import SplitConfig, TrainingConfig
    from schemas.errors import ConfigError
    from tasks.data.split import split_times

    times = pd.Series(pd.date_range("2026-01-01", periods=3, tz="UTC"))
    window = SimpleNamespace(event_time=times)

    def config(order, time_column):
        return TrainingConfig(data="x", label="y", time_column=time_column,
                              split=SplitConfig(test_order=order))

    assert split_times(config("auto", "event_time"), window) is times
    assert split_times(config("auto", None), SimpleNamespace(event_time=None)) is None
    assert split_times(config("random", "event_time"), window) is None
    with pytest.raises(ConfigError, match="test_order 'time' needs time_column"):
        split_times(config("time", None), SimpleNamespace(event_time=None))


def test_duplicate_rows_across_parts_are_counted():
    """Check that exact duplicate rows straddling the split are reported."""
    df = make_demo_data(400, positive_rate=0.1, seed=0)
    df = df.iloc[np.r_[np.arange(400), np.arange(400)]].reset_index(drop=True)
    y = df[LABEL].to_numpy()
    split = stratified_split(df.drop(columns=LABEL), y, test_size=0.5, seed=0)
    assert split.fingerprints["duplicate_rows_across_parts"] > 0


def test_cv_folds_are_stratified_partitions():
    """Check that CV folds partition the training rows and each holds positives."""
    y = np.r_[np.ones(20, dtype=int), np.zeros(180, dtype=int)]
    folds = cv_folds(y, n_folds=5, seed=0)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held) == list(range(200))
    assert all(y[h].sum() == 4 for _, h in folds)


def test_demo_data_matches_its_schema_and_rate():
    """Check that demo data passes its DataFrameModel, has missing values and ~1.5% positives."""
    df = make_demo_data(20000, seed=0)
    DemoTransactions.validate(df, lazy=True)
    assert 0.01 < df[LABEL].mean() < 0.02
    assert df.isna().any().sum() >= 3
    assert df.equals(make_demo_data(20000, seed=0))


def test_drifted_demo_shifts_inputs():
    """Check that the drifted batch has larger amounts and more online traffic."""
    base, drift = make_demo_data(20000, seed=0), make_demo_data(20000, seed=0, drift=True)
    assert drift.amount.median() > base.amount.median() * 1.2
    assert (drift.channel == "online").mean() > (base.channel == "online").mean() + 0.1


def test_shared_count_equals_the_size_of_the_intersection():
    """Check the sort-based count of values in both arrays against numpy's intersect1d."""
    from tasks.data.split import shared_count

    rng = np.random.default_rng(0)
    for _ in range(200):
        n, m, k = rng.integers(0, 40, 3)
        a = rng.integers(0, k + 1, n).astype(np.uint64)
        b = rng.integers(0, k + 1, m).astype(np.uint64)
        assert shared_count(a, b) == np.intersect1d(a, b).size


def test_demo_data_of_a_seed_never_changes():
    """Check that the demo generator gives the very rows it gave when the benchmarks and the
    README's figures were made (a refactoring must not move them)."""
    from tasks.data.demo_tables import make_demo_data

    df = make_demo_data(3000, seed=5)
    assert int(pd.util.hash_pandas_object(df, index=True).sum()) == 688620990551479803
    drifted = make_demo_data(3000, seed=5, drift=True)
    assert int(pd.util.hash_pandas_object(drifted, index=True).sum()) == 1701173345406129265


def _invoke_demo(monkeypatch, module, fake_run, args):
    """`rareflow demo --dir ARGS...` with ``module.run_demo`` replaced and no server."""
    from typer.testing import CliRunner

    from flows import cli

    monkeypatch.setattr(module, "run_demo", fake_run)
    monkeypatch.setattr(cli.FlowServer, "activate", lambda self: None)
    done = CliRunner().invoke(cli.app, ["demo", "--dir", *args], obj=cli.CliState())
    assert done.exit_code == 0, done.output


@pytest.mark.parametrize("args, rows, folds, candidates", [
    (["--tables"], 20_000, 3, 4),
    (["--full"], 100_000, 5, 12),
    (["--tables", "--rows", "5000"], 5_000, 3, 4),
    (["--full", "--rows", "50000"], 50_000, 5, 12),
])
def test_table_demo_is_quick_and_full_on_request(monkeypatch, tmp_path, args, rows, folds,
                                                 candidates):
    """Check that `rareflow demo --tables` trains with the quick size, --full with the
    100,000-row size, and --rows overrides either; every training gets those folds and
    candidates."""
    import flows.demo

    seen = {}

    def fake_run_demo(base, *, size, registry, time_budget_s, train, say):
        seen["size"] = size
        seen["config"] = flows.demo.training_config(base / "t.parquet", size=size,
                                                    registry="r", time_budget_s=time_budget_s)
        return 0

    _invoke_demo(monkeypatch, flows.demo, fake_run_demo, [str(tmp_path), *args])
    assert seen["size"].rows == rows
    config = seen["config"]
    assert (config.split.n_folds, config.strategy.max_candidates) == (folds, candidates)
    assert config.label == LABEL and config.name == "demo"


@pytest.mark.parametrize("args, rows", [([], 50_400), (["--rows", "30000"], 30_000)])
def test_demo_runs_the_loop_by_default(monkeypatch, tmp_path, args, rows):
    """Check that plain `rareflow demo` runs the loop on a data source, with the quick demo's
    folds and candidates for each training on the source's window."""
    import flows.demo_loop
    from schemas.config import DEMO_QUICK, LOOP_ROWS

    seen = {}

    def fake_run_loop(base, *, rows, registry, time_budget_s, train, say):
        seen["rows"] = rows
        seen["config"] = flows.demo_loop.training_config(base / "source", "r",
                                                         time_budget_s=time_budget_s)
        return 0

    _invoke_demo(monkeypatch, flows.demo_loop, fake_run_loop, [str(tmp_path), *args])
    assert seen["rows"] == rows and LOOP_ROWS == 50_400
    config = seen["config"]
    assert config.window and config.time_column == "event_time" and config.strategy.is_auto
    assert (config.split.n_folds, config.strategy.max_candidates) == (
        DEMO_QUICK.n_folds, DEMO_QUICK.max_candidates)


def test_demo_refuses_too_few_rows(tmp_path):
    """Check that `rareflow demo --rows 100` stops with a usage error naming the minimum."""
    from typer.testing import CliRunner

    from flows import cli

    done = CliRunner().invoke(cli.app, ["demo", "--dir", str(tmp_path), "--rows", "100"],
                              obj=cli.CliState())
    assert done.exit_code == 2 and "2000" in done.output


def test_nested_cv_rows_are_fair_for_the_champion_comparison():
    """Check that with nested-CV evidence (no test part) the judged rows are not all left out
    of the champion comparison as duplicates of the candidate's training rows (each was
    scored out of fold): before, every such comparison was refused for want of fair rows."""
    from tasks.data.split import split_parts
    from tasks.data.validation import validate_training_data
    from tasks.judge.gates import fair_rows

    df = make_demo_data(600, positive_rate=0.1, seed=0)
    data = validate_training_data(df, label=LABEL, positive="1", test_size=0.2, n_folds=3)
    nested = split_parts(data, test_size=0.2, seed=0, evidence="nested_cv", n_folds=3)
    held = split_parts(data, test_size=0.2, seed=0, n_folds=3)
    assert nested.judged_rows_must_not_repeat is None
    assert held.judged_rows_must_not_repeat is held.train_rows
    mask, overlap = fair_rows(nested.test_rows, champion_train=None,
                              candidate_train=nested.judged_rows_must_not_repeat)
    assert mask.all() and overlap["candidate_trained_on"] == 0

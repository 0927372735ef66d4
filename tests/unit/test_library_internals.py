"""Upgrade tests for the private modules of tasks/ (``tasks/<stage>/_*.py``): each shortcut through
a library's internals checks here
that the library still does what the shortcut relies on, and fails loudly when it does not.

After a dependency upgrade makes one fail: re-measure whether the shortcut is still needed,
fix or drop it, and update that module's ``CHECKED_AGAINST``. (The equivalence of the lean fitting
path
with scikit-learn's is tested in detail in test_fold_memory.py.)
"""

from __future__ import annotations

import copy
import io
import pickle
import subprocess
import sys
from importlib.metadata import version

import joblib
import numpy as np
import pytest
from imblearn.ensemble import BalancedRandomForestClassifier
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.tree import DecisionTreeClassifier

from tasks.monitor import _evidently_snapshot as evidently_snapshot
from tasks.registry import _tree_bytes as tree_bytes
from tasks.runtime import _heap as heap
from tasks.runtime import _prefect_console as prefect_console
from tasks.runtime import _prefect_templates as prefect_templates
from tasks.runtime import _temporary_server as temporary_server
from tasks.search import _fast_hgb as fast_hgb
from tasks.search import _fold_memory as fold_memory

SHORTCUTS = [evidently_snapshot, tree_bytes, prefect_console, prefect_templates, fast_hgb,
             fold_memory, temporary_server, heap]

DISTRIBUTIONS = {"scikit-learn": "scikit-learn", "imbalanced-learn": "imbalanced-learn",
                 "evidently": "evidently", "prefect": "prefect"}


@pytest.mark.parametrize(("module", "library"), [
    (module, library) for module in SHORTCUTS for library in sorted(module.CHECKED_AGAINST)],
    ids=lambda item: getattr(item, "__name__", item))
def test_checked_versions_are_the_installed_ones(module, library):
    """Check that each library is the major.minor release each shortcut was checked against
    (an upgrade must rerun this file and update CHECKED_AGAINST, not pass silently)."""
    installed = ".".join(version(DISTRIBUTIONS[library]).split(".")[:2])
    assert installed == module.CHECKED_AGAINST[library], (
        f"{library} {installed} is installed; {module.__name__} was checked against "
        f"{module.CHECKED_AGAINST[library]}: rerun tests/unit/test_library_internals.py and "
        "update it")


def test_hgb_preprocess_hook_still_exists():
    """Check that HistGradientBoosting still routes its input through ``_preprocess_X``
    with the signature and fitted attributes the coded subclass sets."""
    import inspect

    hook = HistGradientBoostingClassifier._preprocess_X
    assert list(inspect.signature(hook).parameters) == ["self", "X", "reset"]
    X, y = make_classification(n_samples=400, n_features=4, random_state=0)
    X[:, 0] = np.digitize(X[:, 0], [-1, 0, 1])  # codes 0..3
    stock = HistGradientBoostingClassifier(categorical_features=[0], max_iter=20,
                                           random_state=0).fit(X, y)
    for name in ("is_categorical_", "_preprocessor", "_is_categorical_remapped"):
        assert hasattr(stock, name), f"HistGradientBoosting no longer sets {name}"
    coded = fast_hgb.CodedHistGradientBoostingClassifier(categorical_features=[0], max_iter=20,
                                                     random_state=0).fit(X, y)
    assert coded._preprocessor is None  # the shortcut was taken, not the fallback
    np.testing.assert_array_equal(coded.predict_proba(X), stock.predict_proba(X))


def test_weighted_bin_thresholds_are_scikit_learns():
    """Check that the one-call weighted thresholds are exactly scikit-learn's, column by
    column (continuous, ties, missing values, zero weights, few values, constant)."""
    from sklearn.ensemble._hist_gradient_boosting.binning import _find_binning_thresholds

    rng = np.random.default_rng(0)
    n = 3000
    weights = np.where(rng.random(n) < 0.05, 19.0, 1.0)
    weights[:40] = 0.0
    columns = {"continuous": rng.normal(size=n), "ties": np.round(rng.normal(size=n), 1),
               "few values": rng.integers(0, 7, n).astype(float),
               "ties, many values": np.round(rng.normal(size=n) * 3, 2),
               "constant": np.ones(n), "exponential": rng.exponential(size=n)}
    columns["missing"] = np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n))
    for name, column in columns.items():
        stock = _find_binning_thresholds(column, 255, sample_weight=weights)
        np.testing.assert_array_equal(fast_hgb.weighted_thresholds(column, 255, weights), stock,
                                      err_msg=name)


def test_class_weighted_hgb_bins_and_predicts_as_scikit_learn():
    """Check that a balanced HistGradientBoosting fits through ``_bin_data`` with its weights
    (the hook the one-sort bin mapper replaces) and gives scikit-learn's bins and scores."""
    import inspect

    hook = HistGradientBoostingClassifier._bin_data
    assert list(inspect.signature(hook).parameters) == ["self", "X", "sample_weight",
                                                        "is_training_data"]
    X, y = make_classification(n_samples=2000, n_features=6, weights=[0.93], random_state=2)
    X[::17, 1] = np.nan
    params = {"class_weight": "balanced", "max_iter": 30, "early_stopping": True,
              "validation_fraction": 0.2, "n_iter_no_change": 5, "random_state": 0}
    stock = HistGradientBoostingClassifier(**params).fit(X, y)
    ours = fast_hgb.CodedHistGradientBoostingClassifier(**params).fit(X, y)
    assert isinstance(ours._bin_mapper, fast_hgb.OneSortBinMapper)  # the shortcut was taken
    for mine, theirs in zip(ours._bin_mapper.bin_thresholds_,
                            stock._bin_mapper.bin_thresholds_, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(ours._bin_mapper.n_bins_non_missing_,
                                  stock._bin_mapper.n_bins_non_missing_)
    np.testing.assert_array_equal(ours.predict_proba(X), stock.predict_proba(X))


def test_early_stopping_reads_the_validation_loss_alone():
    """Check that HistGradientBoosting still stops on ``validation_score_`` when it has a
    validation part (the hook the coded subclass trims): the same iterations, validation
    scores and predictions without the training loss; without a validation part the stop
    reads the training loss, and the subclass leaves it to scikit-learn."""
    import inspect

    hook = HistGradientBoostingClassifier._check_early_stopping_loss
    assert list(inspect.signature(hook).parameters) == [
        "self", "raw_predictions", "y_train", "sample_weight_train", "raw_predictions_val",
        "y_val", "sample_weight_val", "n_threads"]
    X, y = make_classification(n_samples=3000, n_features=6, weights=[0.95], random_state=3)
    for validation_fraction in (0.2, None):
        params = {"class_weight": "balanced", "max_iter": 200, "early_stopping": True,
                  "learning_rate": 0.3, "validation_fraction": validation_fraction,
                  "n_iter_no_change": 5, "random_state": 0}
        stock = HistGradientBoostingClassifier(**params).fit(X, y)
        ours = fast_hgb.CodedHistGradientBoostingClassifier(**params).fit(X, y)
        assert stock.n_iter_ < 200, "the case must stop early to test the stop"
        assert ours.n_iter_ == stock.n_iter_
        assert len(ours.train_score_) == len(stock.train_score_)
        np.testing.assert_array_equal(ours.validation_score_, stock.validation_score_)
        np.testing.assert_array_equal(ours.predict_proba(X), stock.predict_proba(X))
        if validation_fraction is None:  # scikit-learn's own method: the stop needs it
            np.testing.assert_array_equal(ours.train_score_, stock.train_score_)
        else:  # the shortcut was taken
            assert np.isnan(ours.train_score_).all() and not np.isnan(stock.train_score_).any()


def test_imblearn_pipeline_fit_is_still_the_plain_loop():
    """Check that imbalanced-learn's Pipeline.fit gives what the step-by-step loop gives."""
    from imblearn.pipeline import Pipeline
    from imblearn.under_sampling import RandomUnderSampler
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=600, weights=[0.9], random_state=1)
    import pandas as pd

    frame = pd.DataFrame(X)
    rows = np.arange(0, 600, 2)

    def pipe():
        return Pipeline([("scale", StandardScaler()), ("sample", RandomUnderSampler(
            random_state=0)), ("model", DecisionTreeClassifier(random_state=0))])

    stock = pipe().fit(frame.iloc[rows], y[rows])
    lean_fit = fold_memory.fit_on_rows(pipe(), frame, rows, y[rows])
    np.testing.assert_array_equal(stock.predict_proba(frame), lean_fit.predict_proba(frame))


def _bytes(model) -> bytes:
    buffer = io.BytesIO()
    with tree_bytes.reproducible_pickling():
        joblib.dump(model, buffer)
    return buffer.getvalue()


def test_tree_state_still_has_padded_nodes():
    """Check that a tree's pickled state still holds its nodes as a structured array with
    padding bytes (the reason for the shortcut: without padding it is not needed)."""
    X, y = make_classification(n_samples=200, random_state=0)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y).tree_
    cls, args, state = tree.__reduce__()
    assert cls is tree_bytes.tree_class()
    nodes = state["nodes"]
    assert nodes.dtype.names, "Tree state 'nodes' is no longer a structured array"
    fields = sum(nodes.dtype.fields[n][0].itemsize for n in nodes.dtype.names)
    assert nodes.dtype.itemsize > fields, "tree nodes have no padding any more: drop the shortcut"


def test_reproducible_pickling_cleans_copies_without_touching_the_model():
    """Check that a deep-copied forest pickles to the same bytes as the original, and that
    the model's own node arrays are left as they were."""
    X, y = make_classification(n_samples=300, weights=[0.9], random_state=0)
    forest = BalancedRandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    twin = copy.deepcopy(forest)
    before = [e.tree_.__reduce__()[2]["nodes"].tobytes() for e in twin.estimators_]
    assert _bytes(forest) == _bytes(twin)
    after = [e.tree_.__reduce__()[2]["nodes"].tobytes() for e in twin.estimators_]
    assert before == after  # not mutated
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(forest)).predict_proba(X),
                                  joblib.load(io.BytesIO(_bytes(twin))).predict_proba(X))


def test_reproducible_pickling_leaves_the_registry_of_reducers_as_it_was():
    """Check that the reducer is registered only inside the context."""
    import copyreg

    before = dict(copyreg.dispatch_table)
    with tree_bytes.reproducible_pickling():
        assert tree_bytes.tree_class() in copyreg.dispatch_table
    assert dict(copyreg.dispatch_table) == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_malloc_trim_is_in_the_c_library():
    """Check that glibc's malloc_trim can be called (trim_heap would do nothing otherwise)."""
    import ctypes

    out = subprocess.run(["ldd", "--version"], capture_output=True, text=True)
    if "GLIBC" not in (out.stdout + out.stderr).upper():
        pytest.skip("not glibc")
    assert ctypes.CDLL("libc.so.6").malloc_trim(0) in (0, 1)
    heap.trim_heap()


def test_evidently_snapshot_layout_is_still_read():
    """Check that a real evidently data-drift report gives the summary drift_summary expects."""
    import pandas as pd

    from schemas.inference import FeatureSpec, InputSchema
    from tasks.monitor.reports import data_drift_report, data_drift_summary

    rng = np.random.default_rng(0)
    schema = InputSchema(label="y", positive="1", negative="0", features=[
        FeatureSpec(name="x", kind="numeric", dtype="float64"),
        FeatureSpec(name="c", kind="categorical", dtype="object")])
    ref = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(["a", "b"], 500)})
    cur = pd.DataFrame({"x": rng.normal(3, 1, size=500), "c": rng.choice(["a", "b"], 500)})
    summary = data_drift_summary(data_drift_report(cur, ref, schema=schema, sample=1000))
    assert summary["drifted_columns"] == ["x"]
    assert summary["drift_share"] == pytest.approx(0.5)
    assert {c["column"] for c in summary["columns"]} == {"x", "c"}
    assert all(isinstance(c["score"], float) for c in summary["columns"])


def test_evidently_layout_change_fails_loudly():
    """Check that a snapshot without the expected metrics is an error, not an empty summary."""
    with pytest.raises(RuntimeError, match="evidently"):
        evidently_snapshot.drift_summary({"metrics": [{"id": "x", "config": {"type": "Other"},
                                         "value": 1}]})


def test_prefect_templating_fills_env_and_keeps_event_templates(monkeypatch):
    """Check that Prefect's templating pass fills {{ $VAR }} and leaves event templates."""
    import os

    monkeypatch.setenv("RAREFLOW_TEST_DATA", "x.parquet")
    specs = [{"name": "a", "parameters": {"data": "{{ $RAREFLOW_TEST_DATA }}",
                                          "name": "{{ event.resource.id }}"}}]
    out = prefect_templates.fill_env_templates(specs, os.environ)
    assert out[0]["parameters"] == {"data": "x.parquet", "name": "{{ event.resource.id }}"}


def test_prefect_console_handler_prints_through_its_console_attribute():
    """Check that Prefect's console handler prints every record through its ``console``
    attribute (a rich Console), which shared_prefect_console swaps and restores."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler
    from rich.console import Console

    handler = PrefectConsoleHandler(stream=io.StringIO())
    assert isinstance(handler.console, Console)
    own = handler.console
    record_logger = logging.getLogger("rareflow.lean.console-test")
    record_logger.addHandler(handler)
    record_logger.propagate = False
    try:
        with prefect_console.shared_prefect_console() as shared:
            assert handler.console is shared
            with shared.capture() as captured:
                record_logger.warning("through the shared console")
            assert "through the shared console" in captured.get()
        assert handler.console is own
    finally:
        record_logger.removeHandler(handler)


def test_temporary_server_command_is_prefects(monkeypatch):
    """Check that tasks.runtime._temporary_server runs the command and environment Prefect runs for
    its
    temporary server (SubprocessASGIServer), so starting it early changes nothing else."""
    import prefect.server.api.server as server_module

    from tasks.runtime import _temporary_server as server_start

    captured = {}

    def fake_popen(args, env=None, **kwargs):
        captured.update(args=list(args), env=dict(env or {}))
        return None

    monkeypatch.setattr(server_module.subprocess, "Popen", fake_popen)
    server = server_module.SubprocessASGIServer(port=8999)
    try:
        server._run_uvicorn_command()
    finally:
        server_module.SubprocessASGIServer._instances.pop(8999, None)
    assert captured["args"] == server_start.uvicorn_command(8999)
    for key, value in server_start.EPHEMERAL_SERVER_ENV.items():
        assert captured["env"][key] == value


def test_s3_store_calls_still_exist():
    """Check what the S3 store (tasks/runtime/_s3_store.py) relies on: s3fs's coroutine
    ``_call_s3``, botocore's conditional PutObject parameters, and s3fs keeping botocore's
    error code as the cause of a failed precondition (no network: the service model only)."""
    import asyncio
    import inspect

    s3fs = pytest.importorskip("s3fs")
    import botocore.session
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    from tasks.runtime import _s3_store as s3_store

    for library, checked in s3_store.CHECKED_AGAINST.items():
        installed = ".".join(version(library).split(".")[:2])
        assert installed == checked, f"{library} {installed}: rerun and update CHECKED_AGAINST"
    assert inspect.iscoroutinefunction(s3fs.S3FileSystem._call_s3)
    model = botocore.session.get_session().get_service_model("s3")
    members = model.operation_model("PutObject").input_shape.members
    assert {"IfMatch", "IfNoneMatch"} <= set(members)
    error = ClientError({"Error": {"Code": "PreconditionFailed", "Condition": "If-Match"},
                         "ResponseMetadata": {"HTTPStatusCode": 412}}, "PutObject")
    translated = translate_boto_error(error)
    assert isinstance(translated, OSError) and s3_store.precondition_failed(translated)
    assert asyncio.iscoroutinefunction(s3fs.S3FileSystem._call_s3)

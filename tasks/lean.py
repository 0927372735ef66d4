"""Every shortcut rareflow takes through a library's private internals, and why.

This is the only module allowed to touch private attributes or methods of scikit-learn,
imbalanced-learn, Prefect, evidently or the C library (``tests/unit/test_house_rules.py``
enforces it). Each shortcut below was measured to be worth it; each names the versions it was
checked against (``CHECKED_AGAINST``), and ``tests/unit/test_lean.py`` holds an upgrade test
per shortcut that fails loudly when the library stops doing what it relies on. After a
dependency upgrade: run those tests, re-measure if one fails, and update ``CHECKED_AGAINST``.

The shortcuts:

* :class:`CodedHistGradientBoostingClassifier`: reads the pipeline's category codes in place
  instead of scikit-learn re-encoding (and copying) the whole matrix.
* :class:`OneSortBinMapper` (used by the coded subclass): a class-weighted fit's bin
  thresholds from one sort per column instead of one sort per threshold.
* :func:`fit_on_rows`: imbalanced-learn's ``Pipeline.fit`` loop, freeing the fold's rows
  before the estimator is fitted.
* :func:`reproducible_pickling`: pickles scikit-learn trees with their padding bytes zeroed,
  so the same model always gives the same bytes (and sha256).
* :func:`trim_heap`: glibc's ``malloc_trim``, so each fold does not start with the last one's
  freed heap.
* :func:`drift_summary`: reads evidently's snapshot dictionary, whose layout is not documented.
* :func:`fill_env_templates`: Prefect's templating pass over prefect.yaml, as ``prefect
  deploy`` does it.
* :func:`shared_prefect_console`: Prefect's console log handlers print through one rich
  console while a progress bar is drawn on it.

One shortcut lives in its own module because this one imports scikit-learn, which is what it
saves time on: :mod:`tasks.server_start` starts Prefect's temporary API server at the
beginning of a command (its upgrade test is in ``tests/unit/test_lean.py`` too).
"""

from __future__ import annotations

import contextlib
import copyreg
import ctypes
import logging
import sys
import threading

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
from sklearn.ensemble._hist_gradient_boosting.common import ALMOST_INF, X_DTYPE
from sklearn.utils.validation import validate_data

logger = logging.getLogger(__name__)

CHECKED_AGAINST = {
    "scikit-learn": "1.9",
    "imbalanced-learn": "0.14",
    "evidently": "0.7",
    "prefect": "3.9",
}


# -- scikit-learn: HistGradientBoosting's category re-encoding ---------------------------------
class CodedHistGradientBoostingClassifier(HistGradientBoostingClassifier):
    """HistGradientBoosting for a matrix whose categorical columns hold codes 0..k-1.

    Why: scikit-learn re-encodes categorical columns with its own OrdinalEncoder in a
    ColumnTransformer, which copies the whole matrix (at 1M rows x 30 columns, 240 MB of the
    fold's peak). When each categorical column's values are already exactly 0..k-1 (the
    pipeline's OrdinalEncoder made them, on these rows), that encoding is the identity, so
    the matrix is read as it is: same bins, same trees, same predictions (the predictor
    itself sends unknown and negative codes where missing values go, as the re-encoding
    would). Any other input takes scikit-learn's own path.

    Relies on: the private ``_preprocess_X(X, *, reset)`` returning ``(X, known_categories)``
    and setting ``is_categorical_``, ``_preprocessor`` and ``_is_categorical_remapped``
    (scikit-learn 1.9).
    """

    def _preprocess_X(self, X, *, reset):
        positions = np.asarray(self.categorical_features if self.categorical_features
                               is not None else [])
        if (not reset or not isinstance(X, np.ndarray) or X.ndim != 2
                or X.dtype != np.float64 or positions.dtype.kind not in "iu"
                or not len(positions)):
            return super()._preprocess_X(X, reset=reset)
        is_categorical = np.zeros(X.shape[1], dtype=bool)
        is_categorical[positions] = True
        known = [None] * X.shape[1]
        for j in np.flatnonzero(is_categorical):
            column = X[:, j]
            values = np.unique(column[~np.isnan(column)])
            if len(values) > self.max_bins or not np.array_equal(values,
                                                                 np.arange(len(values))):
                return super()._preprocess_X(X, reset=reset)
            known[j] = values.astype(np.float64)
        X = validate_data(self, X, dtype=[np.float64], ensure_all_finite=False, reset=True)
        self.is_categorical_ = is_categorical
        self._preprocessor = None
        self._is_categorical_remapped = is_categorical
        return X, known

    def _bin_data(self, X, sample_weight, is_training_data):
        if is_training_data and sample_weight is not None:
            self._bin_mapper = OneSortBinMapper(**self._bin_mapper.get_params())
        return super()._bin_data(X, sample_weight, is_training_data)


class OneSortBinMapper(_BinMapper):
    """scikit-learn's bin mapper, with a weighted fit's thresholds from one sort per column.

    Why: with sample weights (``class_weight="balanced"`` gives them), scikit-learn 1.9 finds
    each column's 254 bin thresholds with one ``_weighted_percentile`` call per threshold,
    and each call sorts the column again: on 5,000 rows x 30 continuous columns a balanced
    fit spent 3.1 s binning against 0.06 s unweighted (4.7 s at 39,000 rows, 12.8 s at
    150,000), paid by every fold of every balanced gradient-boosting candidate. Here each
    column is sorted once and every threshold read from its cumulative weights: the same
    thresholds, bit for bit, with binning 10-47x faster (0.07 s, 0.32 s and 1.2 s). A whole
    balanced fit with rareflow's settings: 15.7x, 6.3x and 4.3x faster on 5,000, 39,000 and
    150,000 rows (``benchmarks/results/hgb_binning.md``).

    Relies on: ``HistGradientBoosting*._bin_data(X, sample_weight, is_training_data)``
    fitting ``self._bin_mapper`` on the training rows with their weights, and on
    ``_find_binning_thresholds`` being what :func:`weighted_thresholds` repeats
    (scikit-learn 1.9; ``tests/unit/test_lean.py`` compares them).
    """

    def fit(self, X, y=None, sample_weight=None):
        if sample_weight is None or (self.subsample is not None
                                     and X.shape[0] > self.subsample):
            return super().fit(X, y, sample_weight=sample_weight)  # no weighted quantiles
        super().fit(X, y)  # every fitted attribute; the columns' thresholds come next
        X = np.asarray(X, dtype=X_DTYPE)
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        for j in np.flatnonzero(~self.is_categorical_.astype(bool)):
            thresholds = weighted_thresholds(X[:, j], self.n_bins - 1, sample_weight)
            self.bin_thresholds_[j] = thresholds
            self.n_bins_non_missing_[j] = thresholds.shape[0] + 1
        return self


def weighted_thresholds(column: np.ndarray, max_bins: int,
                        sample_weight: np.ndarray) -> np.ndarray:
    """scikit-learn's ``_find_binning_thresholds`` for weighted rows, with every percentile
    from one sort of the column (its ``_weighted_percentile`` takes one rank at a time)."""
    keep = ~np.isnan(column) & (sample_weight != 0)
    column, sample_weight = column[keep], sample_weight[keep]
    order = np.argsort(column)
    column, sample_weight = column[order], sample_weight[order]
    distinct = np.unique(column).astype(X_DTYPE)
    if len(distinct) == 1:
        return np.asarray([])
    if len(distinct) <= max_bins:
        thresholds = (distinct[:-1] + distinct[1:]) / 2
    else:
        ranks = np.linspace(0, 100, num=max_bins + 1)[1:-1]
        thresholds = averaged_inverted_cdf(column, sample_weight, ranks)
    thresholds = np.unique(thresholds)  # sorted; duplicates dropped, as scikit-learn does
    return np.clip(thresholds, a_min=None, a_max=ALMOST_INF)


def averaged_inverted_cdf(values: np.ndarray, weights: np.ndarray,
                          ranks: np.ndarray) -> np.ndarray:
    """``_weighted_percentile(values, weights, ranks, average=True)`` for positive weights,
    every rank at once: the same sort, cumulative weights and search, without its loop."""
    order = np.argsort(values.reshape(-1, 1), axis=0).ravel()  # as it sorts (not stable)
    cdf = np.cumsum(weights[order])
    wanted = ranks / 100 * cdf[-1]
    last = len(values) - 1
    at = np.clip(np.searchsorted(cdf, wanted), 0, last)
    above = (cdf[at] - wanted) > np.finfo(np.float64).eps
    low, high = values[order[at]], values[order[np.clip(at + 1, 0, last)]]
    return np.where(above, low, (low + high) / 2)


# -- imbalanced-learn: Pipeline.fit, step by step -------------------------------------------
def fit_on_rows(pipe, X, rows: np.ndarray, y: np.ndarray):
    """``pipe.fit(X.iloc[rows], y)``, freeing each step's input once its output exists.

    Why: imbalanced-learn's ``Pipeline.fit`` keeps the fold's copy of the rows alive through
    the estimator's fit; at a million rows that is the size of the fold's table (the fold fit
    went from +662 MB to +376 MB over its baseline with this and FeatureMatrix). This is the
    same loop (each step fitted in place, samplers resample) with the input dropped as soon
    as the features are encoded.

    Relies on: ``Pipeline.fit`` meaning "fit_resample or fit_transform each step in order,
    then fit the last" (imbalanced-learn 0.14, no memory, no routed fit parameters).
    Anything else is simply fitted with ``pipe.fit``.
    """
    from imblearn.pipeline import Pipeline

    if not isinstance(pipe, Pipeline) or pipe.memory is not None:
        return pipe.fit(X.iloc[rows], y)
    Xt, yt = X.iloc[rows], y
    for _, step in pipe.steps[:-1]:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        if hasattr(step, "fit_resample"):
            Xt, yt = step.fit_resample(Xt, yt)
        else:
            Xt = step.fit_transform(Xt, yt)
    pipe.steps[-1][1].fit(Xt, yt)
    return pipe


# -- scikit-learn: reproducible tree bytes ----------------------------------------------------
_PICKLING = threading.Lock()


def tree_class():
    """scikit-learn's private ``Tree`` (the node arrays of every tree model)."""
    from sklearn.tree._tree import Tree

    return Tree


def _zeroed_nodes(nodes: np.ndarray) -> np.ndarray:
    clean = np.zeros(nodes.shape, dtype=nodes.dtype)
    for name in nodes.dtype.names:
        clean[name] = nodes[name]
    return clean


def _reduce_tree(tree):
    cls, args, state = tree.__reduce__()
    nodes = state.get("nodes") if isinstance(state, dict) else None
    if nodes is None or nodes.dtype.names is None:  # layout changed: bytes may vary again
        logger.warning("scikit-learn's Tree state has no structured 'nodes' array; model "
                       "bytes may not be reproducible (see tasks/lean.py)")
        return cls, args, state
    return cls, args, {**state, "nodes": _zeroed_nodes(nodes)}


@contextlib.contextmanager
def reproducible_pickling():
    """While inside, scikit-learn trees pickle with their node padding bytes zeroed.

    Why: a tree's node array has 7 padding bytes per node. scikit-learn zeroes them when it
    grows a tree, but a NumPy copy of the array (``deepcopy``, as imbalanced-learn's
    BalancedRandomForest does for its ``pipelines_``) leaves them uninitialised, so the same
    model pickled twice gave different bytes and a different sha256. The pickled copy is
    cleaned; the model itself is never modified. Predictions are not affected.

    Relies on: ``Tree.__reduce__`` returning ``(Tree, args, state)`` with the nodes as the
    structured array ``state["nodes"]`` (scikit-learn 1.9). It registers a reducer in
    ``copyreg.dispatch_table`` for the duration, which every pickler consults first.
    """
    tree = tree_class()
    with _PICKLING:
        previous = copyreg.dispatch_table.get(tree)
        copyreg.dispatch_table[tree] = _reduce_tree
        try:
            yield
        finally:
            if previous is None:
                copyreg.dispatch_table.pop(tree, None)
            else:
                copyreg.dispatch_table[tree] = previous


# -- glibc: give the freed heap back ----------------------------------------------------------
def trim_heap() -> None:
    """Return glibc's free heap to the operating system (a few milliseconds).

    Why: arrays below glibc's mmap threshold (which grows up to 32 MB as big arrays are
    freed) come from the heap, and a freed heap is kept, so without this the fitting of each
    fold started 70-100 MB higher than the one before (measured at 1M rows).

    Relies on: ``malloc_trim`` in ``libc.so.6`` (glibc on Linux); elsewhere it does nothing.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc (e.g. musl)
            ctypes.CDLL("libc.so.6").malloc_trim(0)


# -- evidently: the snapshot's dictionary ----------------------------------------------------
def drift_summary(snapshot_dict: dict) -> dict:
    """Drifted columns and their scores from a data-drift snapshot's ``dict()``.

    Why: evidently 0.7 offers the per-column drift scores and test outcomes only inside the
    snapshot's dictionary, whose layout is not a documented interface.

    Relies on: ``metrics[*].config.type`` ending in ``DriftedColumnsCount`` (value ``share``)
    or ``ValueDrift`` (config ``column``, ``method``, ``threshold``; value = the score), and
    ``tests[*].metric_config.metric_id`` / ``status`` (evidently 0.7).

    Raises:
        RuntimeError: the snapshot holds no metric of the layout above (evidently changed).
    """
    columns, drifted, share = {}, [], None
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        kind = config.get("type", "")
        if kind.endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
        elif kind.endswith("ValueDrift"):
            columns[metric["id"]] = {"column": config["column"], "method": config.get("method"),
                                     "threshold": config.get("threshold"),
                                     "score": metric["value"], "drifted": False}
    if share is None and not columns:
        raise RuntimeError("the evidently snapshot has no DriftedColumnsCount or ValueDrift "
                           "metric in the layout tasks/lean.py expects; evidently's snapshot "
                           "format changed: update lean.drift_summary")
    for test in snapshot_dict.get("tests", []):
        metric_id = test.get("metric_config", {}).get("metric_id")
        if metric_id in columns:
            columns[metric_id]["drifted"] = test.get("status") == "FAIL"
            if columns[metric_id]["drifted"]:
                drifted.append(columns[metric_id]["column"])
    return {"drifted_columns": drifted, "drift_share": share,
            "columns": sorted(columns.values(), key=lambda c: c["column"])}


# -- evidently: the data script of a saved HTML report ------------------------------------------
REPORT_DATA_MARKER = "\n    var additional_graphs_"


def check_report_html(text: str) -> None:
    """Refuse a saved evidently HTML report whose inline data script could be closed early.

    Why: evidently 0.7 writes the report's data with ``json.dumps`` straight into a
    ``<script>`` element (``legacy/utils/dashboard.py::file_html_template``), so a column name
    or category holding ``</script>`` would end the script and run its own. rareflow escapes
    names and values before evidently sees them (:func:`tasks.reports.html_safe_frame`); this
    checks the result.

    Relies on: the data block ``<script>\\n    var <id> = {...};\\n    var
    additional_graphs_<id> = {...};\\n</script>`` appearing once.

    Raises:
        RuntimeError: the data block is not found (evidently changed its template), or it
            holds ``</script`` or ``<!--`` (an unescaped value reached it).
    """
    marker = text.find(REPORT_DATA_MARKER)
    start = text.rfind("<script>", 0, marker)
    end = text.find("\n</script>", marker)
    if marker < 0 or start < 0 or end < 0:
        raise RuntimeError("the evidently HTML report has no data script in the layout "
                           "tasks/lean.py expects; evidently's template changed: update "
                           "lean.check_report_html")
    block = text[start + len("<script>"):end].lower()
    if "</script" in block or "<!--" in block:
        raise RuntimeError("an evidently HTML report holds an unescaped '</script' or '<!--' "
                           "in its data script; the report was not kept")


# -- Prefect: prefect.yaml's environment templates --------------------------------------------
def fill_env_templates(specs, env: dict):
    """``{{ $NAME }}`` values in deployment specs filled from ``env``, as ``prefect deploy`` does.

    Why: ``deployments/serve.py`` must read prefect.yaml exactly as ``prefect deploy`` does,
    and Prefect has no public function for that pass. Event templates (``{{ event.… }}``)
    are left as they are, for the trigger to fill.

    Relies on: ``prefect.utilities.templating.apply_values(template, values,
    remove_notset=False)`` (Prefect 3.9).
    """
    from prefect.utilities.templating import apply_values

    return apply_values(specs, dict(env), remove_notset=False)


# -- Prefect: its console log handlers, under a progress bar -----------------------------------
def _all_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [obj for obj in logging.Logger.manager.loggerDict.values()
                                       if isinstance(obj, logging.Logger)]
    seen, out = set(), []
    for lg in loggers:
        for handler in lg.handlers:
            if id(handler) not in seen:
                seen.add(id(handler))
                out.append(handler)
    return out


@contextlib.contextmanager
def shared_prefect_console():
    """Yield the rich Console every Prefect console log handler prints through while inside.

    Why: a rich progress bar redraws itself in place; a log line printed by another Console
    onto the same terminal is overwritten or tears the bar. Prefect's console handlers each
    own a Console, so while the bar is drawn they all print through the bar's (the first
    handler's, which keeps Prefect's colours): rich then prints each line above the bar.
    The handlers get their own consoles back on leaving (also on errors).

    Relies on: ``prefect.logging.handlers.PrefectConsoleHandler`` printing every record with
    ``self.console.print(...)``, ``console`` being a ``rich.console.Console`` attribute set
    in ``__init__`` (Prefect 3.9), and ``logging.Logger.manager.loggerDict`` listing the
    loggers (the standard library).
    """
    from prefect.logging.handlers import PrefectConsoleHandler
    from rich.console import Console

    handlers = [h for h in _all_handlers() if isinstance(h, PrefectConsoleHandler)
                and isinstance(getattr(h, "console", None), Console)]
    shared = handlers[0].console if handlers else Console(stderr=True)
    saved = [(h, h.console) for h in handlers]
    for handler in handlers:
        handler.console = shared
    try:
        yield shared
    finally:
        for handler, console in saved:
            handler.console = console

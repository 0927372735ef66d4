"""A shortcut through scikit-learn's private HistGradientBoosting internals, and why.

* :class:`CodedHistGradientBoostingClassifier`: reads the pipeline's category codes in place
  instead of scikit-learn re-encoding (and copying) the whole matrix.
* :class:`OneSortBinMapper` (used by the coded subclass): a class-weighted fit's bin
  thresholds from one sort per column instead of one sort per threshold.
* ``CodedHistGradientBoostingClassifier._check_early_stopping_loss``: with a validation
  part, early stopping reads only the validation loss, so the training loss scikit-learn
  also computes on every training row at every iteration is skipped.

Every model file that holds gradient boosting pickles this class: its path is part of the
registry's format (old paths are mapped in :mod:`tasks.registry.class_paths`).

Each shortcut here names the versions it was checked against (``CHECKED_AGAINST``);
``tests/unit/test_library_internals.py`` holds its upgrade test, which fails loudly when the
library stops doing what it relies on. After a dependency upgrade: run those tests,
re-measure if one fails, and update ``CHECKED_AGAINST``.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
from sklearn.ensemble._hist_gradient_boosting.common import ALMOST_INF, X_DTYPE
from sklearn.utils.validation import validate_data

CHECKED_AGAINST = {"scikit-learn": "1.9"}


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

    def _check_early_stopping_loss(self, raw_predictions, y_train, sample_weight_train,
                                   raw_predictions_val, y_val, sample_weight_val,
                                   n_threads=1):
        """Early stopping on the validation loss alone (``train_score_`` holds NaN).

        Why: with ``early_stopping`` and a ``validation_fraction`` (rareflow's settings),
        scikit-learn 1.9 decides from ``validation_score_`` only, yet also evaluates the loss
        on every training row at every iteration to fill ``train_score_``, which nothing
        reads. A balanced fit on 640,000 rows x 30 columns (a 1M-row table's fold, 285
        iterations) took 11.9 s, 10.5 s without it, with the same iterations, validation
        scores and predictions (``benchmarks/results/hgb_early_stopping.md``).
        Without a validation part (the stop is then decided on ``train_score_``) this is
        scikit-learn's own method.

        Relies on: ``_check_early_stopping_loss`` appending one score to ``train_score_``
        and ``validation_score_`` per call and returning ``_should_stop(validation_score_)``
        when ``_use_validation_data`` (scikit-learn 1.9; ``tests/unit/
        test_library_internals.py`` checks the same stop, scores and predictions).
        """
        if not self._use_validation_data:
            return super()._check_early_stopping_loss(
                raw_predictions, y_train, sample_weight_train, raw_predictions_val, y_val,
                sample_weight_val, n_threads=n_threads)
        self.train_score_.append(np.nan)  # not computed: the stop reads the validation loss
        self.validation_score_.append(-self._loss(
            y_true=y_val, raw_prediction=raw_predictions_val, sample_weight=sample_weight_val,
            n_threads=n_threads))
        return self._should_stop(self.validation_score_)

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

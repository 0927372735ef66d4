"""A shortcut that keeps a fold's fit within its memory, and why.

* :func:`fit_on_rows`: imbalanced-learn's ``Pipeline.fit`` loop, freeing the fold's rows
  before the estimator is fitted.

Each shortcut here names the versions it was checked against (``CHECKED_AGAINST``);
``tests/unit/test_library_internals.py`` holds its upgrade test, which fails loudly when the
library stops doing what it relies on. After a dependency upgrade: run those tests,
re-measure if one fails, and update ``CHECKED_AGAINST``.
"""

from __future__ import annotations

import numpy as np

CHECKED_AGAINST = {"imbalanced-learn": "0.14"}


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

"""A shortcut through scikit-learn's private ``Tree`` so that a model's bytes are reproducible.

* :func:`reproducible_pickling`: pickles scikit-learn trees with their padding bytes zeroed,
  so the same model always gives the same bytes (and sha256).

Each shortcut here names the versions it was checked against (``CHECKED_AGAINST``);
``tests/unit/test_library_internals.py`` holds its upgrade test, which fails loudly when the
library stops doing what it relies on. After a dependency upgrade: run those tests,
re-measure if one fails, and update ``CHECKED_AGAINST``.
"""

from __future__ import annotations

import contextlib
import copyreg
import logging
import threading

import numpy as np

logger = logging.getLogger(__name__)

CHECKED_AGAINST = {"scikit-learn": "1.9"}


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
                       "bytes may not be reproducible (see tasks/registry/_tree_bytes.py)")
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

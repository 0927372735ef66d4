"""Model hyper-parameters and encoder limits: the one place they are written.

No imports: the benchmarks' bare scikit-learn script reads the same values without loading
rareflow.
"""

MISSING_CATEGORY = "__missing__"  # what an empty category is encoded as
MAX_CATEGORIES = 64  # rarer categories are grouped into one code beyond this many
RF_MAX_TREE_ROWS = 10_000  # bootstrap rows per RandomForest tree: keeps big data affordable

# HistGradientBoosting: slower learning with a stronger floor on leaves than scikit-learn's
# defaults, and early stopping on 15 % of the rows; class_weight, categorical_features and
# random_state are set per candidate.
HGB_PARAMS = {
    "learning_rate": 0.05,
    "max_iter": 400,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": True,
    "validation_fraction": 0.15,
    "n_iter_no_change": 30,
}
LOGREG_PARAMS = {"C": 1.0, "max_iter": 3000}
RF_PARAMS = {"min_samples_leaf": 3, "max_features": "sqrt"}
# Forests: 100 trees per fold model (the served model averages the fold models: 500 trees).
# With 300 the quality benchmark's mean cost was 0.321, with 100 0.323 (within its fold noise)
# for a search 1.5-2.3x faster (benchmarks/results/quality_trees100.md).
RF_TREES = 100
RF_TREES_BIG = 200  # on tables bigger than RF_MAX_TREE_ROWS: each tree sees at most that many
BRF_PARAMS = {"n_estimators": 100, "sampling_strategy": "all", "replacement": True,
              "bootstrap": False}
GBOOST_PARAMS = {"n_estimators": 200, "max_depth": 3}
IFOREST_TREES = 200

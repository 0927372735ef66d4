"""Bare script for benchmarks/speed.py: the same fits with scikit-learn directly."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _rss import rss_mb  # benchmarks/ is this script's folder
from imblearn.pipeline import Pipeline
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline as SkPipeline
from sklearn.preprocessing import OrdinalEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from tasks.search.hyperparams import HGB_PARAMS, MAX_CATEGORIES, MISSING_CATEGORY  # noqa: E402

path, label, fn_cost, fp_cost, folds, test_size, seed = sys.argv[1:8]
fn_cost, fp_cost, folds, test_size, seed = (
    float(fn_cost),
    float(fp_cost),
    int(folds),
    float(test_size),
    int(seed),
)


rss_before_data = rss_mb()
t0 = time.perf_counter()
df = pd.read_parquet(path)
y = df[label].to_numpy()
X = df.drop(columns=label)
cats = [c for c in X.columns if X[c].dtype == object]
nums = [c for c in X.columns if c not in cats]


def pipe():
    prep = ColumnTransformer(
        [
            (
                "cat",
                SkPipeline(
                    [
                        ("i", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                        # as in rareflow: rare categories grouped beyond MAX_CATEGORIES
                        ("o", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                             max_categories=MAX_CATEGORIES, dtype=np.float64)),
                    ]
                ),
                cats,
            ),
            ("num", "passthrough", nums),  # HistGradientBoosting handles NaN itself
        ]
    )
    model = HistGradientBoostingClassifier(
        **HGB_PARAMS,  # rareflow's own settings (tasks/search/hyperparams.py)
        class_weight="balanced",
        categorical_features=list(range(len(cats))),
        random_state=seed,
    )
    return Pipeline([("prep", prep), ("model", model)])


idx = np.arange(len(y))
tr, te = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
tr, te = np.sort(tr), np.sort(te)
Xtr, ytr, Xte, yte = X.iloc[tr], y[tr], X.iloc[te], y[te]
oof = np.zeros(len(ytr))
fold_models = []
for a, b in StratifiedKFold(folds, shuffle=True, random_state=seed).split(Xtr, ytr):
    fold_models.append(pipe().fit(Xtr.iloc[a], ytr[a]))
    oof[b] = fold_models[-1].predict_proba(Xtr.iloc[b])[:, 1]
order = np.argsort(-oof)
tp = np.concatenate([[0], np.cumsum(ytr[order])])
fp = np.arange(len(tp)) - tp
cost = fn_cost * (ytr.sum() - tp) + fp_cost * fp
k = int(np.argmin(cost))
s = oof[order]
t = (s[k - 1] + s[k]) / 2 if 0 < k < len(s) else (1.0 if k == 0 else s[-1])
# the final model is the average of the fold models, as in rareflow (no refit)
scores = np.mean([m.predict_proba(Xte)[:, 1] for m in fold_models], axis=0)
d = scores >= t
nc = (fn_cost * np.sum((yte == 1) & ~d) + fp_cost * np.sum((yte == 0) & d)) / (fn_cost * yte.sum())
print(
    json.dumps(
        {
            "seconds": time.perf_counter() - t0,
            "rss_before_data_mb": rss_before_data,
            "threshold": float(t),
            "normalised_cost": float(nc),
            "pr_auc": float(average_precision_score(yte, scores)),
        }
    )
)

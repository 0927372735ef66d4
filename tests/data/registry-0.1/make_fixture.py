"""Build tests/data/registry-0.1: versions written by rareflow 0.1 (commit 9c70932), classes in tasks.models.

Run at that commit: python tests/data/registry-0.1/make_fixture.py tests/data/registry-0.1
"""
import sys, shutil
from pathlib import Path
import numpy as np
import pandas as pd
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tasks.demo import make_demo_data
from tasks.validate import validate_training_data
from tasks.split import stratified_split, cv_folds
from tasks.select import select_strategy
from tasks.models import CandidateSpec, fit_final
from tasks.registry import Registry
from tasks.evaluate import evaluate_scores

out = Path(sys.argv[1])
shutil.rmtree(out, ignore_errors=True)
df = make_demo_data(1500, positive_rate=0.08, seed=11)
data = validate_training_data(df, label="is_fraud", positive="1", test_size=0.2, n_folds=3)
split = stratified_split(data.X, data.y, test_size=0.2, seed=0)
Xtr, ytr = data.X.iloc[split.train_idx], data.y[split.train_idx]
Xte, yte = data.X.iloc[split.test_idx], data.y[split.test_idx]
folds = cv_folds(ytr, n_folds=3, seed=0)
reg = Registry(out, "old")
from tasks.select import blend_result, calibrate_result
def pick(specs, cal, blend=False):
    best, results = select_strategy(Xtr, ytr, data.schema, folds, specs, fn_cost=10, fp_cost=1, seed=0,
                                    time_budget_s=600, calibrate=cal, blend=False)
    if blend:
        best = blend_result(results, ytr, folds, fn_cost=10, fp_cost=1)
        best = calibrate_result(best, ytr, folds, mode=cal, fn_cost=10, fp_cost=1)
    return best
for best in (pick([CandidateSpec("hgb", "none", "balanced")], "always"),
             pick([CandidateSpec("gboost", "random_under", "balanced")], "never"),
             pick([CandidateSpec("iforest")], "never"),
             pick([CandidateSpec("logreg", "smote", "none")], "never"),
             pick([CandidateSpec("logreg", "none", "balanced"), CandidateSpec("hgb")], "always", blend=True)):
    fitted = fit_final(best.spec, Xtr, ytr, data.schema, threshold=best.threshold, seed=0,
                       fold_models=best.fold_models)
    m = evaluate_scores(yte, fitted.model.score(Xte), threshold=fitted.model.threshold, fn_cost=10, fp_cost=1)
    meta = {"config": {"name": "old"}, "threshold": fitted.model.threshold, "costs": {"fn_cost": 10.0, "fp_cost": 1.0},
            "strategy": {"name": best.spec.name}, "metrics": m, "verdict": {"status": "passed", "gates": []},
            "schema": data.schema.model_dump(), "rareflow_layout": "0.1"}
    v = reg.register(fitted.model, meta)
    print(v, best.spec.name, fitted.model.threshold)
batch = Xte.head(200)
batch.to_parquet(out / "batch.parquet", index=False)
batch = pd.read_parquet(out / "batch.parquet")  # as a user's batch arrives: missing is None
for v in reg.version_ids():
    np.save(out / f"expected_{v}.npy", reg.load(v)[0].score(batch))

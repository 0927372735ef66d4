"""Build tests/data/registry-0.4: a signed registry written by rareflow 0.4 (before tasks/ moved into stage packages).

Run at that commit, from the repository root:
    python tests/data/registry-0.4/make_fixture.py tests/data/registry-0.4

It trains through the CLI users run (`rareflow train`), signed with the test key kept beside it
(test-only, never a user's key): an HGB with the fast binning (auto), logistic regression with
SMOTE, a balanced random forest, gradient boosting with under-sampling, an IsolationForest, and
one model with money costs (`fn_cost_column: amount`). expected_<version>.npy holds the scores
that code gave for batch.parquet, decisions_<version>.npy the decisions.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from tasks.demo import make_demo_data  # noqa: E402
from tasks.registry import Registry  # noqa: E402
from tasks.signing import generate_key, write_key_file  # noqa: E402

out = Path(sys.argv[1]).resolve()
for old in ("models", "batch.parquet", "signing.key"):
    shutil.rmtree(out / old, ignore_errors=True) if (out / old).is_dir() else (out / old).unlink(missing_ok=True)
for f in out.glob("*.npy"):
    f.unlink()
work = out / "work"
shutil.rmtree(work, ignore_errors=True)
work.mkdir(parents=True)
key = write_key_file(out / "signing.key", generate_key())
df = make_demo_data(2000, positive_rate=0.08, seed=11)
df.to_csv(work / "train.csv", index=False)
env = {**os.environ, "RAREFLOW_SIGNING_KEY_FILE": str(key), "DO_NOT_TRACK": "1",
       "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
runs = [["--model", "hgb"], ["--model", "logreg", "--sampler", "smote", "--class-weight", "none"],
        ["--model", "brf"], ["--model", "gboost", "--sampler", "random_under"],
        ["--model", "iforest"], ["--model", "hgb", "--fn-cost-column", "amount"]]
for extra in runs:
    cmd = [str(Path(sys.executable).parent / "rareflow"), "train", "--data", str(work / "train.csv"),
           "--label", "is_fraud", "--registry", str(out / "models"), "--name", "compat",
           "--folds", "3", "--min-recall-gate", "0", "--max-normalised-cost-gate", "1",
           "--cost-margin-gate", "10", "--recall-margin-gate", "1", "--bootstrap-samples-gate", "200",
           *extra]
    print(" ".join(extra), subprocess.run(cmd, cwd=work, env=env).returncode)
shutil.rmtree(work)
os.environ["RAREFLOW_SIGNING_KEY_FILE"] = str(key)
batch = make_demo_data(300, positive_rate=0.08, seed=12).drop(columns=["is_fraud"])
batch.to_parquet(out / "batch.parquet", index=False)
batch = pd.read_parquet(out / "batch.parquet")
reg = Registry(out / "models", "compat")
for v in reg.version_ids():
    model, meta = reg.load(v)
    np.save(out / f"expected_{v}.npy", model.positive_proba(batch))
    np.save(out / f"decisions_{v}.npy", model.decide(batch))
    print(v, meta["strategy"]["name"], meta["threshold"])

"""Reproducibility: the same data, configuration and seed give the same model, byte for byte.

Two causes of different model.joblib bytes were found and fixed: pydantic pickles a model's
set of given fields in hash order (PYTHONHASHSEED changes it between processes; fixed in
schemas/inference.py), and a NumPy copy of a scikit-learn tree's node array leaves its padding
bytes uninitialised (BalancedRandomForest deep-copies its trees; fixed by
tasks.registry.store.zero_tree_padding before the model is written).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from schemas.config import StrategyConfig, TrainingConfig
from tasks.registry.store import Registry
from tasks.runtime.run_outcome import run_summary

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TIMING_KEYS = {"fit_seconds", "seconds", "cv_seconds"}


def _without_timing(value):
    """Drop wall-clock figures (they differ from run to run by nature)."""
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


@pytest.fixture(scope="module")
def repro_data(tmp_path_factory):
    from tasks.data.demo_tables import make_demo_data

    path = tmp_path_factory.mktemp("repro") / "train.csv"
    make_demo_data(2500, positive_rate=0.04, seed=5).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("model, sampler, class_weight", [
    ("hgb", "smote", "none"),
    ("brf", "none", "balanced"),
])
def test_same_data_config_seed_give_same_model(prefect_harness, repro_data, tmp_path, model,
                                               sampler, class_weight):
    """Check that two trainings give equal threshold, metrics, verdict and model sha256."""
    from threadpoolctl import threadpool_limits

    from flows.training import training_flow

    metas = []
    for run in ("a", "b"):
        config = TrainingConfig(
            data=str(repro_data), label="is_fraud", positive="1",
            registry=str(tmp_path / run), name="repro", seed=7,
            split={"n_folds": 3},
            strategy=StrategyConfig(model=model, sampler=sampler, class_weight=class_weight),
        )
        with threadpool_limits(1):  # OpenMP spinning on a busy 2-core box is 10x slower
            result = run_summary(training_flow(config, return_state=True))
        metas.append(Registry(tmp_path / run, "repro").metadata(result["version"]))
    a, b = metas
    assert a["threshold"] == b["threshold"]
    assert a["metrics"] == b["metrics"]
    assert a["verdict"] == b["verdict"]
    assert a["fingerprints"] == b["fingerprints"]
    assert a["calibration"] == b["calibration"]
    assert _without_timing(a["strategy"]) == _without_timing(b["strategy"])
    assert _without_timing(a["leaderboard"]) == _without_timing(b["leaderboard"])
    assert a["files"] == b["files"]  # sha256 of model.joblib and reference.parquet
    assert a["sha256"] == b["sha256"]


WORKER = textwrap.dedent('''
    import json, sys
    from tasks.data.demo_tables import make_demo_data
    from tasks.search.candidates import spec_from_config
    from tasks.search.final_fit import fit_final
    from tasks.registry.store import Registry
    from tasks.data.validation import validate_training_data

    df = make_demo_data(1500, positive_rate=0.05, seed=2)
    data = validate_training_data(df, label="is_fraud", positive="1", test_size=0.2, n_folds=3)
    reg = Registry(sys.argv[1], "repro")
    out = {}
    for model, cw in (("logreg", "balanced"), ("brf", "none")):
        fitted = fit_final(spec_from_config(model, "none", cw), data.X, data.y, data.schema,
                           threshold=0.25, seed=3)
        version = reg.register(fitted.model, {"verdict": {"status": "passed"}})
        out[model] = reg.metadata(version)["sha256"]
    print(json.dumps(out))
''')


def test_model_bytes_do_not_depend_on_the_process():
    """Check that model.joblib has the same sha256 in processes with different hash seeds."""
    import tempfile

    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in ("1", "2"):
            env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO),
                   "OMP_NUM_THREADS": "1"}
            procs.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, str(Path(tmp) / seed)], cwd=REPO, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outputs = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, stderr
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]

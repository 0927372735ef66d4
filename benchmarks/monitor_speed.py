"""Speed of monitoring: a 100,000-row labelled batch with 30 features, end to end.

A small model (HistGradientBoosting, no resampling, no weights, 3 folds) is trained on 20,000
rows of a 30-feature table (26 numeric, 4 categorical, ~1 % positives) into a temporary
registry; then a drifted, labelled, *unscored* batch of ``--rows`` rows is monitored:

* ``flow_first``: ``monitoring_flow`` the first time in the process (includes importing
  evidently, which is imported lazily by the report steps);
* ``flow_warm``: the same again (what a long-running worker or ``serve`` pays);
* ``cli``: ``rareflow monitor`` as a fresh process (Python start, Prefect's ephemeral server,
  every import, the flow), ``--cli-runs`` times (default 3): the first with a new
  ``PREFECT_HOME`` (Prefect creates its database), the others with that database in place
  (what a user's second and later calls pay); the target is the median of those;
* ``steps``: the plain functions one by one (load, score + validate, labels, decision, the
  classification report on every matured row, the data-drift report on
  ``drift_sample_rows`` rows per side, saving HTML + JSON);
* ``--compare-preset``: evidently's ``DataDriftPreset`` with its default stattests on every
  row, the thing the monitoring flow deliberately does not do.

Results: ``benchmarks/results/monitor_speed.json`` and ``monitor_speed.md``.

    uv run python benchmarks/monitor_speed.py
    uv run python benchmarks/monitor_speed.py --rows 100000 --compare-preset
    uv run python benchmarks/monitor_speed.py --cli-only        # only the new-process timing

Run it on a quiet machine: every figure is wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
N_NUMERIC, N_CATEGORICAL = 26, 4
LABEL = "target"


def make_data(n_rows: int, *, seed: int, drift: bool) -> pd.DataFrame:
    """30 features (26 numeric with 2 % missing, 4 categorical), ~1 % positives.

    ``drift=True`` shifts four numeric columns and one category's share and weakens the link
    between inputs and label, so recall at the trained threshold falls.
    """
    rng = np.random.default_rng(seed + (1000 if drift else 0))
    X = rng.standard_normal((n_rows, N_NUMERIC))
    if drift:
        X[:, [0, 8, 9, 10]] += 0.5
    p_cat = np.full(8, 1 / 8) if not drift else np.r_[0.3, np.full(7, 0.1)]
    cats = np.stack([rng.choice(8, size=n_rows, p=p_cat)]
                    + [rng.integers(0, 8, n_rows) for _ in range(N_CATEGORICAL - 1)], axis=1)
    logit = X[:, :6] @ np.array([1.0, -0.8, 0.6, 0.5, -0.4, 0.3]) + 0.8 * (cats[:, 1] == 3)
    logit += 0.5 * X[:, 6] * X[:, 7]
    logit *= 0.8 if drift else 2.0
    intercept = brentq(lambda b: expit(b + logit).mean() - 0.01, -30, 10)
    y = (rng.random(n_rows) < expit(intercept + logit)).astype(np.int8)
    X[rng.random(X.shape) < 0.02] = np.nan
    df = pd.DataFrame(X, columns=[f"num_{i:02d}" for i in range(N_NUMERIC)])
    for j in range(N_CATEGORICAL):
        df[f"cat_{j}"] = np.array([f"c{k}" for k in range(8)])[cats[:, j]]
    df[LABEL] = y
    return df


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def step_times(config, *, registry_root: str) -> dict:
    """Each plain monitoring step on its own (evidently already imported)."""
    from schemas.inference import InputSchema
    from schemas.scored import DECISION, SCORE
    from tasks.data import labels
    from tasks.data.tables import load_table
    from tasks.monitor import recall_drop as recall_test
    from tasks.monitor import reports
    from tasks.monitor.verdict import classification_figures
    from tasks.registry.store import Registry
    from tasks.serving.batch_scoring import scored_batch

    registry = Registry(registry_root, config.name)
    (model, meta), t_model = timed(registry.load, config.version)
    schema = InputSchema.model_validate(meta["schema"])
    reference, t_ref = timed(registry.reference, meta["version"])
    df, t_load = timed(load_table, config.data)
    batch, t_score = timed(scored_batch, model, df)
    (y, usable), t_labels = timed(labels.usable_labels, batch, schema=schema)
    y_ref = labels.binary_labels(reference[schema.label], positive=schema.positive,
                                 negative=schema.negative).astype(int)
    d_ref = (reference[SCORE].to_numpy() >= model.threshold).astype(int)
    start = time.perf_counter()
    fb = classification_figures(y[usable], batch.loc[usable, DECISION])
    fr = classification_figures(y_ref, d_ref)
    decision = recall_test.decide_recall_drift(
        batch_detected=fb["detected"], batch_positives=fb["positives"],
        reference_detected=fr["detected"], reference_positives=fr["positives"])
    t_decide = time.perf_counter() - start
    quality, t_quality = timed(
        reports.quality_report,
        reports.classification_frame(y.astype(int), batch[SCORE], batch[DECISION], schema=schema),
        reports.classification_frame(y_ref, reference[SCORE], d_ref, schema=schema),
        schema=schema, threshold=model.threshold)
    drift_snap, t_drift = timed(reports.data_drift_report, batch, reference, schema=schema,
                                sample=config.drift_sample_rows)
    start = time.perf_counter()
    folder = reports.report_folder(Path(tempfile.mkdtemp()))
    reports.save_snapshot(quality, folder, "quality")
    reports.save_snapshot(drift_snap, folder, "data_drift")
    t_save = time.perf_counter() - start
    return {"load_model": t_model, "load_reference": t_ref, "load_batch": t_load,
            "score_and_validate": t_score, "labels_and_maturity": t_labels,
            "recall_decision": t_decide, "classification_report": t_quality,
            "data_drift_report": t_drift, "save_html_json": t_save,
            "decision_status": decision.status, "reference_rows": len(reference)}


def preset_time(config, *, registry_root: str) -> dict:
    """evidently's DataDriftPreset with default stattests on every row, HTML saved."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from schemas.inference import InputSchema
    from tasks.data.tables import load_table
    from tasks.registry.store import Registry

    registry = Registry(registry_root, config.name)
    meta = registry.metadata(registry.resolve(config.version))
    schema = InputSchema.model_validate(meta["schema"])
    batch = load_table(config.data)[schema.feature_names]
    reference = registry.reference(meta["version"])[schema.feature_names]
    definition = DataDefinition(numerical_columns=schema.numeric,
                                categorical_columns=schema.categorical)
    start = time.perf_counter()
    snap = Report([DataDriftPreset()]).run(Dataset.from_pandas(batch, data_definition=definition),
                                           Dataset.from_pandas(reference,
                                                               data_definition=definition))
    t_run = time.perf_counter() - start
    out = Path(tempfile.mkdtemp()) / "preset.html"
    _, t_html = timed(snap.save_html, str(out))
    return {"run": t_run, "save_html": t_html, "total": t_run + t_html,
            "batch_rows": len(batch), "reference_rows": len(reference)}


def import_time() -> float:
    """Seconds to import evidently in a fresh interpreter (bytecode caches as configured)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import evidently"], check=True, cwd=ROOT,
                   capture_output=True)
    return time.perf_counter() - start


def bytecode_precompiled() -> bool:
    """Whether evidently's modules have .pyc files (``[tool.uv] compile-bytecode``): without
    them, and with PYTHONDONTWRITEBYTECODE set, every new process compiles them from source."""
    import importlib.util

    spec = importlib.util.find_spec("evidently.core.datasets")
    return bool(spec and spec.origin
                and Path(importlib.util.cache_from_source(spec.origin)).exists())


def cli_runs(config, *, registry: str, batch_path: Path, home: Path, runs: int) -> list:
    """``rareflow monitor`` as a new process, ``runs`` times with one PREFECT_HOME: the first
    creates Prefect's database, the others find it. Wall seconds and exit status of each."""
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    rareflow = Path(sys.executable).parent / "rareflow"
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        cli = subprocess.run([str(rareflow), "monitor", "--data", str(batch_path), "--registry",
                              registry, "--name", "bench", "--version", config.version],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if cli.returncode not in (0, 4, 5):
            raise SystemExit(f"rareflow monitor failed ({cli.returncode}):\n"
                             f"{cli.stderr[-3000:]}")
        out.append({"seconds": seconds, "exit_status": cli.returncode,
                    "load_avg_1m": os.getloadavg()[0]})
        print(f"rareflow monitor as a new process: {seconds:.1f} s", flush=True)
    return out


def main() -> None:
    from _key import ensure_signing_key

    ensure_signing_key()  # benchmarks write registries of their own
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--compare-preset", action="store_true")
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument("--cli-only", action="store_true",
                        help="Only time `rareflow monitor` as a new process.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rareflow-monitor-speed-"))
    os.environ.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "PREFECT_HOME": str(work / "prefect"),
                       "PREFECT_LOGGING_LEVEL": "WARNING",
                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"})
    sys.path.insert(0, str(ROOT))
    from flows.monitoring import monitoring_flow
    from flows.training import training_flow
    from schemas.config import MonitoringConfig, SplitConfig, StrategyConfig, TrainingConfig
    from tasks.runtime.run_outcome import run_summary

    def run(flow_fn, cfg):  # a drifted batch ends in a Failed state named Drift
        return run_summary(flow_fn(cfg, return_state=True))

    train_path = work / "train.parquet"
    batch_path = work / "batch.parquet"
    make_data(args.train_rows, seed=0, drift=False).to_parquet(train_path, index=False)
    batch = make_data(args.rows, seed=1, drift=True)
    batch.to_parquet(batch_path, index=False)
    registry = str(work / "registry")
    print(f"Training on {args.train_rows} rows ...", flush=True)
    trained, t_train = timed(run, training_flow, TrainingConfig(
        data=str(train_path), label=LABEL, positive="1", registry=registry, name="bench",
        split=SplitConfig(n_folds=3),
        strategy=StrategyConfig(model="hgb", sampler="none", class_weight="none")))
    config = MonitoringConfig(data=str(batch_path), registry=registry, name="bench",
                              version=trained["version"], emit_events=False)
    print(f"Monitoring {args.rows} rows x {batch.shape[1] - 1} features ...", flush=True)
    runs = cli_runs(config, registry=registry, batch_path=batch_path,
                    home=work / "prefect-cli", runs=max(1, args.cli_runs))
    later = [r["seconds"] for r in runs[1:]] or [runs[0]["seconds"]]
    if args.cli_only:
        print(f"first (new database) {runs[0]['seconds']:.1f} s; median of the others "
              f"{float(np.median(later)):.1f} s")
        return
    first, t_first = timed(run, monitoring_flow, config)
    _, t_warm = timed(run, monitoring_flow, config)
    steps = step_times(config, registry_root=registry)

    result = {
        "rows": args.rows, "features": batch.shape[1] - 1,
        "positives": int(batch[LABEL].sum()), "train_rows": args.train_rows,
        "train_seconds": t_train, "status": first["status"], "verdict": first["verdict"],
        "drift_sample_rows": config.drift_sample_rows,
        "stattests": {"numeric": config.num_stattest, "categorical": config.cat_stattest},
        "flow_first_seconds": t_first, "flow_warm_seconds": t_warm,
        "cli_seconds": float(np.median(later)), "cli_first_seconds": runs[0]["seconds"],
        "cli_runs": runs, "cli_exit_status": runs[-1]["exit_status"],
        "evidently_import_seconds": import_time(),
        "steps_seconds": steps,
        "python_dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        "bytecode_precompiled": bytecode_precompiled(),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
                    "python": platform.python_version()},
    }
    if args.compare_preset:
        print("DataDriftPreset (default stattests, every row) ...", flush=True)
        result["data_drift_preset_full_rows"] = preset_time(config, registry_root=registry)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "monitor_speed.json").write_text(json.dumps(result, indent=2, default=str),
                                                encoding="utf-8")
    (RESULTS / "monitor_speed.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


def markdown(r: dict) -> str:
    s = r["steps_seconds"]
    lines = [
        f"# Monitoring speed: {r['rows']:,} labelled rows x {r['features']} features", "",
        f"Verdict: {r['verdict']}", "",
        "| what | seconds |", "|---|---:|",
        f"| `monitoring_flow`, first call in the process (imports evidently) | "
        f"{r['flow_first_seconds']:.1f} |",
        f"| `monitoring_flow`, warm | {r['flow_warm_seconds']:.1f} |",
        f"| `rareflow monitor` as a new process (server start, imports, flow), median of "
        f"{max(1, len(r.get('cli_runs', [])) - 1)} runs with Prefect's database in place | "
        f"{r['cli_seconds']:.1f} |",
        f"| the same, first run (Prefect creates its database) | "
        f"{r.get('cli_first_seconds', r['cli_seconds']):.1f} |",
        f"| `import evidently` alone, fresh interpreter | {r['evidently_import_seconds']:.1f} |",
        "", "Steps (plain functions, warm):", "", "| step | seconds |", "|---|---:|",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in s.items() if isinstance(v, float)]
    if "data_drift_preset_full_rows" in r:
        p = r["data_drift_preset_full_rows"]
        lines += ["", f"For comparison, evidently `DataDriftPreset()` with default stattests on "
                  f"all {p['batch_rows']:,} + {p['reference_rows']:,} rows: run {p['run']:.1f} s "
                  f"+ HTML {p['save_html']:.1f} s = {p['total']:.1f} s."]
    lines += ["", f"Data drift on {r['drift_sample_rows']:,} sampled rows per side with "
              f"{r['stattests']['numeric']} (numeric) / {r['stattests']['categorical']} "
              "(categorical); the classification report uses every matured row.",
              f"Machine: {r['machine']['cpus']} CPUs, 1-minute load average "
              f"{r['machine']['load_avg_1m']:.1f} at the end (shared with other jobs); "
              f"PYTHONDONTWRITEBYTECODE set: {r['python_dont_write_bytecode']}; "
              f"bytecode compiled at install: {r.get('bytecode_precompiled')}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

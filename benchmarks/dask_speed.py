"""Scale-out: the auto strategy's candidate x fold fits, sequential vs on a local Dask cluster.

On generated data (``benchmarks/speed.py``'s generator: 30 features, about 1 % positives) the
training flow runs three times, one after the other, each in its own process:

* ``sequential, one core``: the default executor pinned to one core (one fit at a time, one
  thread): the baseline for the speedup of 2 workers;
* ``local``: the default, every candidate and fold in the flow's process (HistGradientBoosting
  and the forests may still use both cores through their own threads);
* ``local n_jobs=2``: two candidates at a time in joblib processes;
* ``dask``: every (candidate, fold) fit as a Prefect task on a local Dask cluster of
  ``--workers`` worker processes with one thread each (``strategy.executor: dask``).

Each child starts Prefect's ephemeral server with a trivial flow first, so the server start is
not counted. Reported: flow wall time, the selection step's wall time (for ``dask``: cluster
start + fits), the cluster start on its own, and the chosen strategy (which must be the same
for all three). Results: ``benchmarks/results/dask_speed.json`` and ``.md``.

    python -m uv run python benchmarks/dask_speed.py                  # 30,000 rows, 2 workers
    python -m uv run python benchmarks/dask_speed.py --rows 60000 --workers 2
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from speed import LABEL, make_data  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

CHILD = r'''
import json, sys, time
from prefect import flow

@flow
def warm_up():
    return 1

if __name__ == "__main__":
    import os
    if os.environ.get("BENCH_ONE_CORE"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    t0 = time.perf_counter()
    warm_up()
    server = time.perf_counter() - t0
    from flows.training import training_flow
    from schemas.config import StrategyConfig, TrainingConfig
    from tasks.runtime.run_outcome import run_summary
    from tasks.registry.store import Registry
    path, label, registry, strategy = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    cfg = TrainingConfig(data=path, label=label, positive="1", registry=registry, name="bench",
                         strategy=StrategyConfig(**json.loads(strategy)))
    t1 = time.perf_counter()
    result = run_summary(training_flow(cfg, return_state=True))
    seconds = time.perf_counter() - t1
    meta = Registry(registry, "bench").metadata(result["version"])
    board = meta["leaderboard"]
    print(json.dumps({
        "seconds": seconds, "server_start_seconds": server, "strategy": result["strategy"],
        "threshold": result["threshold"], "dask": meta["strategy"].get("dask"),
        "candidates": sum(1 for r in board if r["status"] not in ("failed", "skipped")
                          and not str(r["candidate"]).startswith("blend(")),
        "fit_seconds_sum": sum(float(r["fit_seconds"] or 0) for r in board
                               if not str(r["candidate"]).startswith("blend(")),
    }))
'''


def run(path: Path, registry: Path, strategy: dict, env: dict) -> dict:
    script = registry.parent / "child.py"
    script.write_text(CHILD)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), str(path), LABEL, str(registry),
                           json.dumps(strategy)], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    out["process_seconds"] = time.perf_counter() - started
    return out


def main(argv=None) -> int:
    from _key import ensure_signing_key

    ensure_signing_key()  # benchmarks write registries of their own
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=30_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "dask_speed"))
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = {
        "sequential, one core": {},
        "local": {},
        "local n_jobs=2": {"n_jobs": 2},
        f"dask, {args.workers} workers": {"executor": "dask", "dask_workers": args.workers},
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="rareflow-dask-speed-") as tmp:
        work = Path(tmp)
        path = work / "data.parquet"
        make_data(args.rows).to_parquet(path, index=False)
        env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_HOME": str(work / "prefect"), "PREFECT_LOGGING_LEVEL": "WARNING",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
               "PYTHONPATH": str(ROOT)}
        for name, strategy in runs.items():
            (work / name).mkdir()
            one_core = {"BENCH_ONE_CORE": "1", "OMP_NUM_THREADS": "1"} if "one core" in name \
                else {}
            r = run(path, work / name / "registry", strategy, {**env, **one_core})
            dask = r.get("dask") or {}
            rows.append({
                "run": name, "flow_seconds": round(r["seconds"], 1),
                "cluster_start_seconds": round(dask.get("cluster_start_seconds", 0.0), 1),
                "dask_fit_wall_seconds": round(dask.get("fit_wall_seconds", 0.0), 1) or None,
                "candidates": r["candidates"], "strategy": r["strategy"],
                "threshold": round(r["threshold"], 5),
                "server_start_seconds": round(r["server_start_seconds"], 1),
            })
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["flow_seconds"]
    for row in rows:
        row["speedup_vs_sequential"] = round(base / row["flow_seconds"], 2)
    meta = {"rows": args.rows, "workers": args.workers, "machine": platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
    cols = list(rows[0])
    lines = [
        "# Scale-out: auto strategy, sequential vs Dask", "",
        f"Run {meta['date']} on {meta['machine']}, {meta['cores']} cores, Python "
        f"{meta['python']}; {args.rows:,} generated rows x 30 features (about 1 % positives). "
        f"Command: `python -m uv run python benchmarks/dask_speed.py --rows {args.rows} "
        f"--workers {args.workers}`.", "",
        "Flow seconds exclude the Prefect server start; for Dask they include the local "
        "cluster start (its own column).", "",
        "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(str(row[c]) for c in cols) + " |" for row in rows]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    same = len({(r["strategy"], r["threshold"]) for r in rows}) == 1
    if not same:
        print("WARNING: the runs chose different strategies or thresholds", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Small runs: what Prefect's ephemeral server start costs, and what a running server saves.

The same small `rareflow train` (2,000 demo rows, a fixed logistic-regression strategy, so the
training itself takes a second or two) runs ``--repeats`` times as a new process each time:

* ``ephemeral``: no ``PREFECT_API_URL``, so every call starts Prefect's local server (SQLite);
* ``running server``: ``PREFECT_API_URL`` points at a ``prefect server start`` that this script
  started once beforehand (its own start time is reported too).

Results: ``benchmarks/results/server_start.json`` and ``.md``.

    python -m uv run python benchmarks/server_start.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from quality import prefect_server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def train_once(data: Path, registry: Path, env: dict) -> float:
    rareflow = str(Path(sys.executable).with_name("rareflow"))
    started = time.perf_counter()
    proc = subprocess.run([rareflow, "train", "--data", str(data), "--label", "is_fraud",
                           "--registry", str(registry), "--name", "small", "--model", "logreg",
                           "--sampler", "none", "--class-weight", "balanced"],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"rareflow train failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "server_start"))
    args = p.parse_args(argv)
    from tasks.data.demo_tables import make_demo_data

    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rareflow-server-start-") as tmp:
        work = Path(tmp)
        data = work / "small.csv"
        make_demo_data(2000, positive_rate=0.05, seed=0).to_csv(data, index=False)
        env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_HOME": str(work / "prefect"),
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
        env.pop("PREFECT_API_URL", None)
        ephemeral = [train_once(data, work / "reg_ephemeral", env) for _ in range(args.repeats)]
        started = time.perf_counter()
        with prefect_server(env, work / "server.log") as url:
            server_start = time.perf_counter() - started
            served = [train_once(data, work / "reg_server", {**env, "PREFECT_API_URL": url})
                      for _ in range(args.repeats)]
    med_e, med_s = statistics.median(ephemeral), statistics.median(served)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
        "python": platform.python_version(), "repeats": args.repeats,
        "ephemeral_seconds": [round(s, 1) for s in ephemeral],
        "running_server_seconds": [round(s, 1) for s in served],
        "median_ephemeral_seconds": round(med_e, 1),
        "median_running_server_seconds": round(med_s, 1),
        "saved_per_call_seconds": round(med_e - med_s, 1),
        "server_start_once_seconds": round(server_start, 1),
    }
    Path(args.out + ".json").write_text(json.dumps(result, indent=2))
    md = "\n".join([
        "# Small runs: ephemeral Prefect server vs a running server", "",
        f"Run {result['date']}, {result['cores']} cores, Python {result['python']}. Command: "
        f"`python -m uv run python benchmarks/server_start.py --repeats {args.repeats}`. "
        "Each call is a new `rareflow train` process on 2,000 rows with a fixed logistic "
        "regression (the training itself takes about a second).", "",
        "| mode | wall seconds per call | median |", "|---|---|---|",
        f"| ephemeral server (no PREFECT_API_URL) | {result['ephemeral_seconds']} | "
        f"{result['median_ephemeral_seconds']} |",
        f"| running server (PREFECT_API_URL set) | {result['running_server_seconds']} | "
        f"{result['median_running_server_seconds']} |", "",
        f"A running server saves about {result['saved_per_call_seconds']} s per call; starting "
        f"it once took {result['server_start_once_seconds']} s.", "",
    ])
    Path(args.out + ".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

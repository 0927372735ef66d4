"""Scoring a source on a Dask cluster against the local path, through `rareflow score`.

The source and the model are ``benchmarks/score_speed.py``'s (hive-style daily Parquet
partitions of 30 features; an OrdinalEncoder + HistGradientBoosting pipeline of 100 trees,
registered and signed). Each run is the user's command in a fresh process, into an empty
scored source:

* ``local``: ``rareflow score --data SOURCE --out SCORED ...`` (one partition after another);
* ``dask``: the same with ``--executor dask --dask-workers 2`` (a local cluster of two worker
  processes, one thread each, started by the command; each worker reads its partitions and
  verifies the model itself).

Measured from outside, polled every 0.1 s until it exits: wall seconds, the command process's
own peak RSS (``VmHWM``), and the bytes it read itself (``rchar`` of ``/proc/PID/io``: every
read call, Python's imports and the model included, less what its child processes read: the
Dask workers and Prefect's temporary server). The two
scored sources are compared partition by partition (``scored_at`` aside).

    python -m uv run python benchmarks/dask_scoring.py                 # 10M rows, 40 partitions
    python -m uv run python benchmarks/dask_scoring.py --rows 2000000 --repeats 1

Run it on a quiet machine: every figure is wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root
from score_speed import NAME, publish_model, write_source  # noqa: E402  (benchmarks/)

RESULTS = HERE / "results"
WORK = HERE / "work" / "dask_scoring"


def _field(path: str, name: str) -> int | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    return next((int(x.split()[1]) for x in text.splitlines() if x.startswith(name)), None)


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def watch(proc: subprocess.Popen) -> dict:
    """Poll a running process's peak RSS, and the bytes it read itself, until it exits.

    ``rchar`` of a process grows by a child's reads when the child is reaped, so the bytes
    the command read itself are its last ``rchar`` less each child's last ``rchar`` (its
    Dask workers, Prefect's temporary server)."""
    seen = {"peak_rss_mb": 0.0, "rchar": 0, "children": {}}

    def poll() -> None:
        while proc.poll() is None:
            hwm = _field(f"/proc/{proc.pid}/status", "VmHWM")
            rchar = _field(f"/proc/{proc.pid}/io", "rchar")
            if hwm is None or rchar is None:
                break
            for child in _children(proc.pid):
                got = _field(f"/proc/{child}/io", "rchar")
                if got is not None:
                    seen["children"][child] = got
            seen["peak_rss_mb"] = max(seen["peak_rss_mb"], hwm / 1024)
            seen["rchar"] = max(seen["rchar"], rchar)
            time.sleep(0.1)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    proc.wait()
    thread.join()
    own = seen["rchar"] - sum(seen["children"].values())
    return {"peak_rss_mb": seen["peak_rss_mb"], "read_mb": own / 2**20,
            "children_read_mb": sum(seen["children"].values()) / 2**20}


def run_watched(command: list[str], env: dict, *, what: str, ok=(0,)) -> tuple:
    """Run a command in a fresh process, watched (:func:`watch`), its output kept.

    Returns:
        (exit status, wall seconds, what :func:`watch` saw, the output)

    Raises:
        RuntimeError: it exited with a status not in ``ok`` (naming ``what``).
    """
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                text=True)
        seen = watch(proc)
        seconds = time.perf_counter() - started
        log.seek(0)
        text = log.read()
    if proc.returncode not in ok:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{text[-3000:]}")
    return proc.returncode, seconds, seen, text


def score(mode: str, source: Path, out: Path, registry: Path, env: dict) -> dict:
    script = Path(sys.executable).with_name("rareflow")
    command = [str(script), "score", "--data", str(source), "--out", str(out), "--registry",
               str(registry), "--name", NAME, "--id-column", "id", "--time-column",
               "event_time"]
    if mode == "dask":
        command += ["--executor", "dask", "--dask-workers", "2"]
    shutil.rmtree(out, ignore_errors=True)
    _, seconds, seen, text = run_watched(command, env, what=mode)
    summary = next(line for line in text.splitlines() if line.startswith("Scored "))
    return {"mode": mode, "seconds": round(seconds, 2), **{k: round(v, 1) for k, v in
                                                            seen.items()}, "summary": summary}


def same_scored(a: Path, b: Path) -> bool:
    """Every scored partition of ``a`` equals ``b``'s, ``scored_at`` aside."""
    parts = sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    if parts != sorted(p.relative_to(b) for p in b.rglob("*.parquet")):
        return False
    return all(pd.read_parquet(a / p).drop(columns="scored_at").equals(
        pd.read_parquet(b / p).drop(columns="scored_at")) for p in parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--part-rows", type=int, default=250_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "dask_scoring"))
    args = parser.parse_args()
    source = WORK / f"source_{args.rows}_{args.part_rows}"
    write_source(source, args.rows, args.part_rows)
    work = Path(tempfile.mkdtemp(prefix="rareflow-dask-scoring-"))
    try:
        registry = work / "registry"
        publish_model(registry)
        env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_HOME": str(work / "prefect-home")}
        env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
        runs = []
        for k in range(args.repeats):
            for mode in (("local", "dask") if k % 2 == 0 else ("dask", "local")):
                runs.append(score(mode, source, work / f"scored-{mode}", registry, env))
                print(json.dumps(runs[-1]), flush=True)
        identical = same_scored(work / "scored-dask", work / "scored-local")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(runs, args, identical)


def write_results(runs: list[dict], args, identical: bool) -> None:
    table = pd.DataFrame(runs)
    median = table.groupby("mode")[["seconds", "peak_rss_mb", "read_mb"]].median()
    ratio = median.loc["dask", "seconds"] / median.loc["local", "seconds"]
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        {"rows": args.rows, "part_rows": args.part_rows, "runs": runs,
         "dask_over_local_seconds": round(ratio, 3), "same_scored_source": identical},
        indent=1) + "\n")
    lines = [
        "# Scoring a source on Dask (2 local workers) vs the local path",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. Command: `python benchmarks/dask_scoring.py --rows "
        f"{args.rows} --part-rows {args.part_rows} --repeats {args.repeats}`. Source: "
        f"{args.rows:,} rows in {-(-args.rows // args.part_rows)} daily Parquet partitions; "
        "each run `rareflow score` into an empty scored source, in a fresh process.",
        "",
        "| run | mode | seconds | command's peak RSS MB | read by the command itself (MB) | "
        "read by its child processes (MB) |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {i + 1} | {r['mode']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
          f"{r['read_mb']:.0f} | {r['children_read_mb']:.0f} |" for i, r in enumerate(runs)],
        "",
        f"Dask / local wall time (medians): **{ratio:.2f}**. The scored sources are the same "
        f"partition for partition (`scored_at` aside): **{'yes' if identical else 'NO'}**.",
        "",
    ]
    Path(args.out).with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

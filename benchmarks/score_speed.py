"""Speed and memory of scoring a source by record batches, against today's in-memory path.

A served classifier (an OrdinalEncoder + HistGradientBoosting pipeline, 100 trees, wrapped as
rareflow serves it) is fitted on 20,000 rows of a 30-feature table (26 numeric with 2 %
missing, 4 categorical) and registered, signed, in a temporary registry. Then, each in a fresh
child process (peak RSS is the child's VmHWM; times exclude Python's start and imports):

* ``memory``: today's path for one file: ``load_table`` + ``score_frame`` + ``write_table``;
* ``stream``: ``score --data SOURCE`` through its plain functions (the flow's partition task,
  without Prefect): every partition read, checked against the frozen schema, scored and
  written by record batches (``--id-column id``, the production case);
* ``stream-keys``: the same with content-fingerprint row keys (no id column);
* ``rerun``: the same command again on the scored source: nothing to score.

Sources: hive-style ``date=…/part.parquet`` partitions of ``--part-rows`` rows, at each of
``--sizes`` total rows; one CSV file of ``--csv-rows`` rows (a single partition: memory must
not grow with it). Results: ``benchmarks/results/score_speed.md`` (and ``.json``).

    uv run python benchmarks/score_speed.py                              # 1M and 5M rows
    uv run python benchmarks/score_speed.py --sizes 20000000 --csv-rows 0 --append   # then 20M

Run it on a quiet machine: every figure is wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
WORK = HERE / "work" / "score_speed"
N_NUMERIC, N_CATEGORICAL = 26, 4
LEVELS = [5, 12, 30, 8]
NAME = "bench"


def numeric_names() -> list[str]:
    return [f"x{i:02d}" for i in range(N_NUMERIC)]


def categorical_names() -> list[str]:
    return [f"c{i}" for i in range(N_CATEGORICAL)]


def make_rows(n: int, *, seed: int, first_id: int = 0, day: str = "2026-11-01"
              ) -> pd.DataFrame:
    """``n`` rows: id, event_time, 26 numeric (2 % missing) and 4 categorical features."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_NUMERIC))
    X[rng.random((n, N_NUMERIC)) < 0.02] = np.nan
    frame = pd.DataFrame(X, columns=numeric_names())
    for name, levels in zip(categorical_names(), LEVELS, strict=True):
        frame[name] = pd.Series(rng.integers(0, levels, n)).map(lambda i: f"L{i}").astype(object)
    frame.insert(0, "event_time", pd.Timestamp(day, tz="UTC")
                 + pd.to_timedelta(rng.integers(0, 86_400, n), "s"))
    frame.insert(0, "id", np.arange(first_id, first_id + n, dtype=np.int64))
    return frame


def publish_model(registry: Path) -> str:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from schemas.inference import FeatureSpec, InputSchema
    from tasks.decision.served_classifier import served_classifier
    from tasks.registry.store import Registry

    train = make_rows(20_000, seed=0)
    logit = -4.5 + 1.2 * train["x00"].fillna(0) + 0.8 * (train["c0"] == "L1")
    y = (np.random.default_rng(1).random(len(train)) < 1 / (1 + np.exp(-logit))).astype(int)
    cats = categorical_names()
    pre = ColumnTransformer([("cat", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                    unknown_value=-1,
                                                    encoded_missing_value=-1), cats)],
                            remainder="passthrough")
    model = make_pipeline(pre, HistGradientBoostingClassifier(
        max_iter=100, categorical_features=list(range(len(cats))), random_state=0))
    model.fit(train[[*cats, *numeric_names()]], y)
    schema = InputSchema(label="y", positive="1", negative="0", features=[
        *[FeatureSpec(name=n, kind="numeric", dtype="float64") for n in numeric_names()],
        *[FeatureSpec(name=n, kind="categorical", dtype="object",
                      categories=[f"L{i}" for i in range(k)])
          for n, k in zip(cats, LEVELS, strict=True)]])
    served = served_classifier(model, threshold=0.1, schema=schema, spec=None, negative=0,
                               positive=1)
    reg = Registry(registry, NAME)
    version = reg.register(served, {"verdict": {"status": "passed"},
                                    "schema": schema.model_dump()})
    reg.promote(version, reason="benchmark")
    return version


def write_source(folder: Path, rows: int, part_rows: int) -> None:
    """Hive-style daily partitions of ``part_rows`` rows (written once, reused)."""
    if (folder / ".complete").is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    for i, start in enumerate(range(0, rows, part_rows)):
        day = (pd.Timestamp("2026-01-01") + pd.Timedelta(days=i)).date().isoformat()
        part = folder / f"date={day}"
        part.mkdir(parents=True)
        make_rows(min(part_rows, rows - start), seed=100 + i, first_id=start, day=day
                  ).to_parquet(part / "part.parquet", index=False)
    (folder / ".complete").touch()


def write_csv(folder: Path, rows: int, chunk: int = 500_000) -> None:
    """One CSV file of ``rows`` rows, written in chunks."""
    if (folder / ".complete").is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path = folder / "big.csv"
    for i, start in enumerate(range(0, rows, chunk)):
        make_rows(min(chunk, rows - start), seed=500 + i, first_id=start).to_csv(
            path, mode="a", header=i == 0, index=False)
    (folder / ".complete").touch()


# -- the child: one measurement in a fresh process ---------------------------------------------
def peak_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process (every thread): less sensitive than wall time
    to the other work on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(args) -> dict:
    from tasks.data.tables import load_table, write_table
    from tasks.registry.store import Registry
    from tasks.serving.batch_scoring import score_frame

    sys.path.insert(0, str(HERE))
    from _rss import rss_mb

    reg = Registry(args.registry, NAME)
    model, meta = reg.load("champion")
    base = rss_mb()
    start, cpu = time.perf_counter(), cpu_seconds()
    if args.child == "memory":
        scored = score_frame(model, load_table(args.data))
        write_table(scored, args.out)
        rows, scored_parts = len(scored), 1
    else:
        rows, scored_parts = stream(args, reg, model, meta)
    return {"seconds": time.perf_counter() - start, "cpu_s": cpu_seconds() - cpu, "rows": rows,
            "partitions": scored_parts, "peak_mb": peak_mb(), "base_mb": base}


def stream(args, reg, model, meta) -> tuple[int, int]:
    from tasks.data.source_files import resolve_source
    from tasks.serving.partition_scoring import Serving
    from tasks.serving.scored_source import ScoredSource, signature_digest
    from tasks.serving.source_scoring import score_pending

    files = resolve_source(args.data)
    scored = ScoredSource.open(files, Path(args.out), NAME)
    serving = Serving(model, meta["version"], signature_digest(reg.version_dir(
        meta["version"])), pd.Timestamp.now(tz="UTC"), args.id_column or None, "event_time")
    with scored.locked():
        scored.keyed_as(serving)
        done = score_pending(scored, scored.pending(), serving)
    return sum(d["rows"] for d in done), len(done)


def measure(mode: str, data: Path, out: Path, registry: Path, *, id_column: str | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, __file__, "--child", mode, "--data", str(data), "--out", str(out),
            "--registry", str(registry), "--id-column", id_column or ""]
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{mode} {data} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["rows_per_s"] = result["rows"] / result["seconds"] if result["rows"] else None
    print(mode, data.name, json.dumps(result), flush=True)
    return result


def run(args) -> list[dict]:
    WORK.mkdir(parents=True, exist_ok=True)
    registry = WORK / "registry"
    shutil.rmtree(registry, ignore_errors=True)
    publish_model(registry)
    rows_out = []

    def record(case, mode, size, result):
        rows_out.append({"case": case, "mode": mode, "input_rows": size, **result})

    single = WORK / "single-1M" / "batch.parquet"
    if not single.is_file():
        single.parent.mkdir(parents=True, exist_ok=True)
        make_rows(1_000_000, seed=7).to_parquet(single, index=False)
    record("1M-row file, in memory (today)", "memory", 1_000_000,
           measure("memory", single, WORK / "single-1M-scored.parquet", registry,
                   id_column=None))
    for size in args.sizes:
        source = WORK / f"source-{size}"
        write_source(source, size, args.part_rows)
        out = WORK / f"source-{size}-scored"
        shutil.rmtree(out, ignore_errors=True)
        label = f"{size / 1e6:g}M rows, {-(-size // args.part_rows)} Parquet partitions"
        record(label, "stream", size, measure("stream", source, out, registry,
                                              id_column="id"))
        record(label, "rerun", size, measure("rerun", source, out, registry, id_column="id"))
        if size == min(args.sizes) and not args.append:
            shutil.rmtree(out, ignore_errors=True)
            record(label + ", fingerprint keys", "stream-keys", size,
                   measure("stream-keys", source, out, registry, id_column=None))
    if args.csv_rows:
        folder = WORK / f"csv-{args.csv_rows}"
        write_csv(folder, args.csv_rows)
        out = WORK / f"csv-{args.csv_rows}-scored"
        shutil.rmtree(out, ignore_errors=True)
        record(f"{args.csv_rows / 1e6:g}M-row CSV file (one partition)", "stream",
               args.csv_rows, measure("stream", folder, out, registry, id_column="id"))
    return rows_out


def write_results(rows: list[dict], args) -> None:
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "part_rows": args.part_rows,
            "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
            "command": "python benchmarks/score_speed.py " + " ".join(sys.argv[1:])}
    previous = RESULTS / "score_speed.json"
    if args.append and previous.is_file():
        before = json.loads(previous.read_text())["meta"]
        meta["command"] = f"{before['command']}` then `{meta['command']}"
        meta["load"] = f"{before['load']}, then {meta['load']}"
    (RESULTS / "score_speed.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                         indent=2))
    lines = ["# Scoring a source: streamed by record batch vs in memory", "",
             f"`{meta['command']}` on {meta['cpus']} CPUs shared with other work, "
             "OMP_NUM_THREADS=1; each figure one fresh process (peak RSS = its VmHWM; "
             "seconds exclude Python's start and imports; `base` = RSS after imports and "
             "loading the model).", "",
             "| case | mode | rows scored | seconds | CPU s | rows/s | rows per CPU s | "
             "peak RSS MB | base MB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = f"{r['rows_per_s']:,.0f}" if r["rows_per_s"] else "-"
        cpu = r.get("cpu_s")
        per_cpu = f"{r['rows'] / cpu:,.0f}" if r["rows"] and cpu else "-"
        lines.append(f"| {r['case']} | {r['mode']} | {r['rows']:,} | {r['seconds']:.2f} | "
                     f"{cpu or 0:.1f} | {rate} | {per_cpu} | {r['peak_mb']:,.0f} | "
                     f"{r['base_mb']:,.0f} |")
    lines += ["", f"Load average while it ran: {meta.get('load', '?')} on {meta['cpus']} "
              "CPUs (other engineers' tests and servers): compare rows per CPU second."]
    (RESULTS / "score_speed.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--part-rows", type=int, default=250_000)
    parser.add_argument("--csv-rows", type=int, default=5_000_000)
    parser.add_argument("--append", action="store_true",
                        help="Add these sizes' rows to the existing results.")
    parser.add_argument("--child", choices=["memory", "stream", "stream-keys", "rerun"])
    parser.add_argument("--data"), parser.add_argument("--out")
    parser.add_argument("--registry"), parser.add_argument("--id-column")
    args = parser.parse_args()
    os.environ.setdefault("RAREFLOW_SIGNING_KEY", "bench-" + secrets.token_hex(24))
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = run(args)
    previous = RESULTS / "score_speed.json"
    if args.append and previous.is_file():  # a later, larger run beside the results so far
        rows = json.loads(previous.read_text())["rows"] + [
            r for r in rows if r["mode"] != "memory"]
    write_results(rows, args)


if __name__ == "__main__":
    main()

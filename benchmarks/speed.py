"""Speed and memory: the training flow against a bare script doing the same work.

For each size (default 100k, 1M and 4M rows x 30 features, 1 % positives) the data is written
once to Parquet, then two child processes run one after the other:

* ``bare``: pandas + scikit-learn + imbalanced-learn directly — read, stratified split,
  5-fold out-of-fold predictions, cost-optimal threshold, the average of the 5 fold
  models (rareflow's final model, no refit) scoring the test part.
* ``flow``: rareflow's training flow with the same fixed strategy (HistGradientBoosting,
  balanced class weights, no resampling, cost threshold), plus everything a production run
  does on top (validation, fingerprints, artifacts, gates, registry). The Prefect ephemeral
  server start is measured separately (a trivial flow first) and not counted in the flow time.

* ``source`` (with ``--partitions N``): the same flow on the same rows landed as a data source
  of N daily hive partitions (``date=YYYY-MM-DD/part-0.parquet``, ``time_column: date``,
  a random test part so the split matches the other two): what reading a living source costs
  against one file.

Each child reports its wall time; the parent reads the child's peak RSS from ``os.wait4``.
Results: ``benchmarks/results/speed.json`` and ``speed.md``.

    python -m uv run python benchmarks/speed.py                 # 100k, 1M, 4M
    python -m uv run python benchmarks/speed.py --rows 100000   # one size
    python -m uv run python benchmarks/speed.py --rows 1000000 --partitions 365 \
        --out benchmarks/results/speed_partitions                # a year of daily partitions
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = ROOT / "benchmarks" / "results"
N_NUMERIC, N_CATEGORICAL = 26, 4
LABEL = "target"
FN_COST, FP_COST = 10.0, 1.0
FOLDS, TEST_SIZE, SEED = 5, 0.2, 0


def make_data(n_rows: int, *, seed: int = 0) -> pd.DataFrame:
    """30 features (26 numeric with some missing values, 4 categorical), ~1 % positives."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, N_NUMERIC)).astype(np.float64)
    cats = rng.integers(0, 8, size=(n_rows, N_CATEGORICAL))
    logit = X[:, :6] @ np.array([1.0, -0.8, 0.6, 0.5, -0.4, 0.3]) + 0.8 * (cats[:, 0] == 3)
    logit += 0.5 * X[:, 6] * X[:, 7]
    intercept = np.log(0.01 / 0.99) - 0.9
    y = (rng.random(n_rows) < 1 / (1 + np.exp(-(intercept + logit)))).astype(np.int8)
    X[rng.random((n_rows, N_NUMERIC)) < 0.02] = np.nan
    df = pd.DataFrame(X, columns=[f"num_{i:02d}" for i in range(N_NUMERIC)])
    for j in range(N_CATEGORICAL):
        df[f"cat_{j}"] = pd.Categorical.from_codes(cats[:, j], [f"c{k}" for k in range(8)])
        df[f"cat_{j}"] = df[f"cat_{j}"].astype(str)
    df[LABEL] = y
    return df


def run_child_rss(script: str, args: list[str], env: dict) -> dict:
    """Like run_child, measuring this child's own peak RSS with os.wait4."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / script), *args],
            stdout=out,
            stderr=err,
            env=env,
            cwd=ROOT,
            text=True,
        )
        started = time.perf_counter()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"child failed ({proc.returncode}):\n{err.read()[-3000:]}")
        line = [ln for ln in out.read().splitlines() if ln.startswith("{")][-1]
    result = json.loads(line)
    result["process_wall_seconds"] = wall
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result


def write_partitions(path: Path, source: Path, partitions: int) -> None:
    """The rows of ``path``, in order, as ``partitions`` daily hive partitions."""
    df = pd.read_parquet(path)
    days = pd.date_range("2025-01-01", periods=partitions, freq="D")
    for day, part in zip(days, np.array_split(np.arange(len(df)), partitions), strict=True):
        folder = source / f"date={day.date().isoformat()}"
        folder.mkdir(parents=True)
        df.iloc[part].to_parquet(folder / "part-0.parquet", index=False)


def bench(n_rows: int, work: Path, repeats: int = 1, partitions: int | None = None) -> dict:
    """Run the bare script and the flow ``repeats`` times each, alternating which goes first.

    Seconds are medians over the repeats (each flow run gets an empty registry, so none
    compares with a champion); peak RSS is the largest seen.
    """
    df = make_data(n_rows)
    frame_mb = df.memory_usage(deep=True).sum() / 2**20
    path = work / f"speed_{n_rows}.parquet"
    df.to_parquet(path, index=False)
    del df
    env = {
        **os.environ,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    bare_args = [str(path), LABEL, str(FN_COST), str(FP_COST), str(FOLDS), str(TEST_SIZE),
                 str(SEED)]
    source = work / f"source_{n_rows}"
    if partitions:
        write_partitions(path, source, partitions)
    bares, flows, sources = [], [], []
    for k in range(repeats):
        runs = [("bare", "bare", bare_args),
                ("flow", "flow", [str(path), LABEL, str(work / f"registry_{n_rows}_{k}")])]
        if partitions:
            runs.append(("source", "flow", [str(source), LABEL, str(work / f"reg_src_{n_rows}_{k}"),
                                            '{"time_column": "date", '
                                            '"split": {"test_order": "random"}}']))
        for side, script, args in runs if k % 2 == 0 else runs[::-1]:
            result = run_child_rss(f"_speed_{script}.py", args, env)
            {"bare": bares, "flow": flows, "source": sources}[side].append(result)
            print(f"  {n_rows} rows, repeat {k + 1}: {side} {result['seconds']:.1f} s", flush=True)

    def median(runs, key):
        return float(np.median([r[key] for r in runs]))

    bare_s, flow_s = median(bares, "seconds"), median(flows, "seconds")
    bare_rss = max(r["peak_rss_mb"] for r in bares)
    flow_rss = max(r["peak_rss_mb"] for r in flows)
    typical = flows[int(np.argsort([r["seconds"] for r in flows])[len(flows) // 2])]
    row = {
        "rows": n_rows,
        "features": N_NUMERIC + N_CATEGORICAL,
        "frame_mb": round(frame_mb, 1),
        "repeats": repeats,
        "bare_seconds": round(bare_s, 2),
        "flow_seconds": round(flow_s, 2),
        "flow_over_bare": round(flow_s / bare_s, 3),
        "flow_over_bare_each": " ".join(f"{f['seconds'] / b['seconds']:.3f}"
                                        for b, f in zip(bares, flows, strict=True)),
        "server_start_seconds": round(median(flows, "server_start_seconds"), 2),
        "bare_peak_rss_mb": round(bare_rss, 1),
        "flow_peak_rss_mb": round(flow_rss, 1),
        "bare_rss_over_frame": round(bare_rss / frame_mb, 2),
        "flow_rss_over_frame": round(flow_rss / frame_mb, 2),
        "bare_rss_before_data_mb": round(median(bares, "rss_before_data_mb"), 1),
        "flow_rss_before_data_mb": round(median(flows, "rss_before_data_mb"), 1),
        "bare_normalised_cost": round(bares[0]["normalised_cost"], 4),
        "flow_normalised_cost": round(flows[0]["normalised_cost"], 4),
        "flow_task_seconds": typical.get("task_seconds"),
    }
    if sources:
        src_s = median(sources, "seconds")
        row.update({
            "partitions": partitions, "source_seconds": round(src_s, 2),
            "source_over_file": round(src_s / flow_s, 3),
            "source_peak_rss_mb": round(max(r["peak_rss_mb"] for r in sources), 1),
            "source_normalised_cost": round(sources[0]["normalised_cost"], 4)})
    print(json.dumps(row), flush=True)
    return row


def markdown_table(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def write_results(rows: list[dict], out: str, sizes: list[int],
                  repeats: int = 1) -> pd.DataFrame:
    """Write the JSON and the markdown report for the sizes measured so far."""
    table = pd.DataFrame(rows).drop(columns=["flow_task_seconds"])
    for side in ("bare", "flow"):
        per_row = table[f"{side}_seconds"] / table.rows
        table[f"{side}_time_per_row_vs_smallest"] = (per_row / per_row.iloc[0]).round(3)
    Path(out + ".json").write_text(json.dumps(rows, indent=2))
    steps = ["", "## Where the flow's time went (task run time, seconds)", ""]
    for row in rows:
        tasks = ", ".join(f"{k} {v}" for k, v in sorted((row["flow_task_seconds"] or {}).items(),
                                                          key=lambda kv: -kv[1]))
        steps.append(f"- {row['rows']:,} rows: {tasks}")
    cmd = " ".join(map(str, sizes)) + (f" --repeats {repeats}" if repeats > 1 else "")
    if "partitions" in rows[0]:
        cmd += f" --partitions {rows[0]['partitions']}"
    Path(out + ".md").write_text(
        "# Speed: training flow vs bare script\n\n"
        f"Run {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} cores. Command: "
        f"`python -m uv run python benchmarks/speed.py --rows {cmd}`. Seconds are medians over "
        "the repeats (bare and flow alternate) and exclude the Prefect server start (its own "
        "column); `flow_over_bare_each` is each repeat's ratio. RSS is each child's peak "
        "(os.wait4), the largest over the repeats; `rss_before_data` is the process after its "
        "imports (and, for the flow, the server start), before reading the data. frame_mb is "
        "the DataFrame's deep in-memory size.\n\n"
        + markdown_table(table)
        + "\n" + "\n".join(steps) + "\n"
    )
    return table


def main() -> None:
    from _key import ensure_signing_key

    ensure_signing_key()  # benchmarks write registries of their own
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000, 4_000_000])
    parser.add_argument("--out", default=str(RESULTS / "speed"))
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each side per size (medians are reported)")
    parser.add_argument("--partitions", type=int, default=None,
                        help="also train on the rows as this many daily hive partitions")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rareflow-speed-") as tmp:
        for n in args.rows:  # results are written after every size
            rows.append(bench(n, Path(tmp), args.repeats, args.partitions))
            table = write_results(rows, args.out, args.rows, args.repeats)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()

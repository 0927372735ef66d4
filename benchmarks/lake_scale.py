"""A source larger than memory, through the user's commands: training on every row against
training on a negative sample, scoring the whole source, and scoring from object storage on
Dask.

The source is ``--rows`` rows (default 100 million) in daily Parquet partitions of
``--part-rows``: an ``id``, 16 numeric and 3 categorical features and a label ``y`` at about
0.3 % positives. Every step is a fresh process, polled every 0.1 s for its peak RSS
(``VmHWM``), wall time and the bytes it read itself (``rchar``, its child processes'
excluded; see ``benchmarks/dask_scoring.py``):

* ``train-plain``: ``rareflow train --data SOURCE --label y --positive 1 --model hgb ...``
  (every row): the window does not fit, and what it does is recorded (exit status, last line);
* ``train-sample``: the same with ``--sample auto`` (2 million rows by default);
* ``score``: ``rareflow score --data SOURCE --out SCORED`` with that version, every partition;
* ``s3``: the first ``--s3-rows`` rows (default 10 million) uploaded to a local S3-protocol
  server (moto's, on 127.0.0.1, started and stopped here), then scored from
  ``s3://.../source`` by the local path and with ``--executor dask --dask-workers 2``;
* ``s3-train``: the same upload, then ``train --sample auto --sample-rows`` (default 500,000)
  from it by the local path and with ``--executor dask --dask-workers 2`` (the partitions read
  by the workers, the fits on them too).

    python benchmarks/lake_scale.py                                  # 100M rows, 10M on S3
    python benchmarks/lake_scale.py --rows 4000000 --s3-rows 1000000 # a quick look

It needs the dev extra (moto, boto3) for the ``s3`` step. Run it on a quiet machine; the
source takes about 12 GB of disk under benchmarks/work/ (delete it after).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root
from dask_scoring import run_watched  # noqa: E402  (benchmarks/)

RESULTS = HERE / "results"
WORK = HERE / "work" / "lake_scale"
NAME = "lake"
N_NUMERIC, LEVELS = 16, (8, 40, 12)
MODES = (("local", []), ("dask", ["--executor", "dask", "--dask-workers", "2"]))  # s3 steps


def partition(n: int, *, seed: int, first_id: int) -> pd.DataFrame:
    """``n`` rows: id, 16 numeric and 3 categorical features, label ``y`` (about 0.3 %)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_NUMERIC))
    frame = pd.DataFrame(X, columns=[f"x{i:02d}" for i in range(N_NUMERIC)])
    for i, levels in enumerate(LEVELS):
        codes = rng.integers(0, levels, n)
        frame[f"c{i}"] = pd.Categorical.from_codes(codes, [f"L{j}" for j in range(levels)])
    logit = -9.2 + 2.0 * X[:, 0] + 1.5 * X[:, 1] * X[:, 2] + 1.5 * (frame["c0"] == "L1")
    frame["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    frame.insert(0, "id", np.arange(first_id, first_id + n, dtype=np.int64))
    return frame


def write_source(folder: Path, rows: int, part_rows: int) -> None:
    if (folder / ".complete").is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    for i, start in enumerate(range(0, rows, part_rows)):
        day = (pd.Timestamp("2025-01-01") + pd.Timedelta(days=i)).date().isoformat()
        (folder / f"date={day}").mkdir(parents=True)
        partition(min(part_rows, rows - start), seed=10_000 + i, first_id=start).to_parquet(
            folder / f"date={day}" / "part.parquet", index=False)
    (folder / ".complete").touch()


def measured(step: str, command: list[str], env: dict, *, ok=(0, 3)) -> dict:
    code, seconds, seen, text = run_watched(command, env, what=step, ok=ok)
    lines = [line for line in text.splitlines() if line.strip()]
    row = {"step": step, "exit": code, "seconds": round(seconds, 1),
           **{k: round(v, 1) for k, v in seen.items()}, "last_line": lines[-1][:400]}
    print(json.dumps(row), flush=True)
    return row


def train_command(source, registry, *extra) -> list[str]:
    return [str(Path(sys.executable).with_name("rareflow")), "train", "--data", str(source),
            "--label", "y", "--positive", "1", "--model", "hgb", "--sampler", "none",
            "--class-weight", "balanced", "--folds", "3", "--registry", str(registry),
            "--name", NAME, *extra]


def score_command(source, out, registry, *extra) -> list[str]:
    return [str(Path(sys.executable).with_name("rareflow")), "score", "--data", str(source),
            "--out", str(out), "--registry", str(registry), "--name", NAME, "--id-column",
            "id", "--version", "latest", *extra]


@contextlib.contextmanager
def s3_source(source: Path, rows: int, part_rows: int, work: Path, env: dict):
    """The first ``rows`` rows' partitions uploaded to a local S3 server: (URL, environment,
    rows)."""
    sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
    from s3_server import running_s3_server

    parts = sorted(source.glob("date=*/part.parquet"))[: -(-rows // part_rows)]
    with running_s3_server(work / "moto.log") as server:
        bucket = server.new_bucket()
        client = server.client()
        for path in parts:
            client.upload_file(str(path), bucket, f"source/{path.parent.name}/part.parquet")
        yield f"s3://{bucket}/source", {**env, **server.env()}, len(parts) * part_rows


def s3_step(source: Path, rows: int, part_rows: int, registry: Path, work: Path,
            env: dict) -> list[dict]:
    """Score the S3 source with the local path, then on 2 Dask workers."""
    out = []
    with s3_source(source, rows, part_rows, work, env) as (url, s3_env, n_rows):
        for mode, extra in MODES:
            scored = work / f"s3_scored_{mode}"
            out.append(measured(f"s3-score-{mode}", score_command(
                url, scored, registry, *extra), s3_env) | {"rows": n_rows})
            shutil.rmtree(scored, ignore_errors=True)
    return out


def s3_train_step(source: Path, rows: int, part_rows: int, work: Path, env: dict,
                  sample_rows: int) -> list[dict]:
    """``train --sample auto`` on the S3 source: read by the flow, then by 2 Dask workers
    (``--executor dask``: the scan and the fits on the cluster)."""
    out = []
    with s3_source(source, rows, part_rows, work, env) as (url, s3_env, n_rows):
        for mode, extra in MODES:
            registry = work / f"s3_registry_{mode}"
            out.append(measured(f"s3-train-sample-{mode}", train_command(
                url, registry, "--sample", "auto", "--sample-rows", str(sample_rows), *extra),
                s3_env) | {"rows": n_rows})
            meta = json.loads((registry / NAME / "versions" / "v0001" / "metadata.json")
                              .read_text())
            out[-1]["sample"] = meta["lineage"]["sample"]
            out[-1]["normalised_cost"] = meta["metrics"]["at_threshold"]["normalised_cost"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--part-rows", type=int, default=500_000)
    parser.add_argument("--s3-rows", type=int, default=10_000_000)
    parser.add_argument("--steps", nargs="*", default=["train-plain", "train-sample", "score",
                                                         "s3", "s3-train"])
    parser.add_argument("--s3-sample-rows", type=int, default=500_000,
                        help="s3-train: the rows `--sample auto` keeps")
    parser.add_argument("--out", default=str(RESULTS / "lake_scale"))
    args = parser.parse_args()
    source = WORK / f"source_{args.rows}_{args.part_rows}"
    started = time.perf_counter()
    write_source(source, args.rows, args.part_rows)
    print(f"source ready in {time.perf_counter() - started:.0f} s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="rareflow-lake-"))
    registry = work / "registry"
    env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_HOME": str(work / "prefect")}
    rows = []
    try:
        if "train-plain" in args.steps:
            rows.append(measured("train-plain", train_command(source, work / "plain"), env,
                                 ok=(0, 2, 3)))
        if "train-sample" in args.steps:
            rows.append(measured("train-sample", train_command(source, registry, "--sample",
                                                               "auto"), env))
            meta = json.loads((registry / NAME / "versions" / "v0001" / "metadata.json")
                              .read_text())
            rows[-1]["sample"] = meta["lineage"]["sample"]
        if "score" in args.steps:
            rows.append(measured("score", score_command(source, work / "scored", registry),
                                 env))
            shutil.rmtree(work / "scored", ignore_errors=True)
        if "s3" in args.steps:
            rows += s3_step(source, args.s3_rows, args.part_rows, registry, work, env)
        if "s3-train" in args.steps:
            rows += s3_train_step(source, args.s3_rows, args.part_rows, work, env,
                                  args.s3_sample_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"rows": args.rows, "part_rows": args.part_rows, "steps": rows,
              "source_bytes_on_disk": sum(p.stat().st_size for p in source.rglob("*.parquet")),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "memory_gib": round(os.sysconf("SC_PAGE_SIZE")
                                              * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    keys = ["step", "exit", "seconds", "peak_rss_mb", "read_mb", "children_read_mb"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k)) for k in keys) + " |" for r in rows]
    lines += ["", *[f"- {r['step']}: `{r['last_line']}`" for r in rows]]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

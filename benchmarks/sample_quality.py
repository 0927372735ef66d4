"""Training on a negative sample (`--sample`) against training on every row, through the CLI.

A generated source of ``--rows`` rows (default 2 million; 30 features of
``benchmarks/score_speed.py``, 4 of them categorical, 2 % missing values) in daily Parquet
partitions, with a label at about 0.2 % positives that depends on a few features non-linearly.
Each arm is the user's command in a fresh process:

    rareflow train --data SOURCE --label y --positive 1 --model hgb --sampler none \
        --class-weight balanced --folds 3 --registry R --name full
    rareflow train ... --sample 0.1 --name sampled

and each version then scores the same held-out table of ``--test-rows`` rows drawn from the
same distribution (``rareflow score --data test.parquet --out ...``). Normalised cost =
(10·FN + FP) / (10·positives) of the scored file's decisions, so both arms are judged on the
population, the sampled model's threshold and scores having been put back in its units.
Measured from outside: wall seconds and the command's peak RSS (``VmHWM``).

    python -m uv run python benchmarks/sample_quality.py                  # 2M rows
    python -m uv run python benchmarks/sample_quality.py --rows 400000 --test-rows 400000

Run it on a quiet machine. The shared datasets' side of the comparison is
``benchmarks/quality.py --train-args "--sample 0.5"`` (see benchmarks/results/sample_quality.md).
"""

from __future__ import annotations

import argparse
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
from sklearn.metrics import average_precision_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root
from dask_scoring import run_watched  # noqa: E402  (benchmarks/)
from score_speed import make_rows  # noqa: E402

RESULTS = HERE / "results"
WORK = HERE / "work" / "sample_quality"
FN_COST, FP_COST = 10.0, 1.0
INTERCEPT = -13.5  # about 0.2 % positives


def labelled_rows(n: int, *, seed: int, day: str) -> pd.DataFrame:
    """``n`` rows of score_speed's features with a label ``y`` (about 0.2 % positives)."""
    frame = make_rows(n, seed=seed, day=day).drop(columns=["id", "event_time"])
    x = frame[["x00", "x01", "x02", "x03"]].fillna(0).to_numpy()
    logit = (INTERCEPT + 2.6 * x[:, 0] + 2.0 * x[:, 1] * x[:, 2] + 1.2 * np.abs(x[:, 3])
             + 1.5 * (frame["c0"] == "L1") - 1.2 * (frame["c1"] == "L2"))
    rng = np.random.default_rng(seed + 7)
    frame["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return frame


def write_data(folder: Path, rows: int, test_rows: int, part_rows: int = 200_000) -> None:
    """The source (daily partitions) and the held-out table (written once, reused)."""
    if (folder / ".complete").is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    for i, start in enumerate(range(0, rows, part_rows)):
        day = (pd.Timestamp("2026-01-01") + pd.Timedelta(days=i)).date().isoformat()
        part = folder / "source" / f"date={day}"
        part.mkdir(parents=True)
        labelled_rows(min(part_rows, rows - start), seed=1000 + i, day=day).to_parquet(
            part / "part.parquet", index=False)
    labelled_rows(test_rows, seed=99, day="2026-06-01").to_parquet(folder / "test.parquet",
                                                                   index=False)
    (folder / ".complete").touch()


def run(command: list[str], env: dict) -> dict:
    # 3: trained but not promoted
    _, seconds, seen, _ = run_watched(command, env, what=command[1], ok=(0, 3))
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(seen["peak_rss_mb"], 1)}


def arm(name: str, sample: str | None, data: Path, work: Path, env: dict) -> dict:
    rareflow = str(Path(sys.executable).with_name("rareflow"))
    registry = work / "registry"
    train = [rareflow, "train", "--data", str(data / "source"), "--label", "y", "--positive",
             "1", "--model", "hgb", "--sampler", "none", "--class-weight", "balanced",
             "--folds", "3", "--fn-cost", str(FN_COST), "--fp-cost", str(FP_COST),
             "--registry", str(registry), "--name", name]
    if sample:
        train += ["--sample", sample]
    fit = run(train, env)
    scored = work / f"{name}_scored.parquet"
    run([rareflow, "score", "--data", str(data / "test.parquet"), "--out", str(scored),
         "--registry", str(registry), "--name", name, "--version", "latest"], env)
    frame = pd.read_parquet(scored, columns=["y", "score", "decision"])
    y, d = frame["y"].to_numpy() == 1, frame["decision"].to_numpy() == 1
    fn, fp = int((y & ~d).sum()), int((~y & d).sum())
    meta = json.loads((registry / name / "versions" / "v0001" / "metadata.json").read_text())
    lineage = meta["lineage"].get("sample") or {}
    return {"arm": name, "sample": sample or "every row", "train_seconds": fit["seconds"],
            "train_peak_rss_mb": fit["peak_rss_mb"],
            "rows_trained_on": meta["lineage"]["rows"],
            "normalised_cost": round((FN_COST * fn + FP_COST * fp) / (FN_COST * y.sum()), 4),
            "recall": round(float(d[y].mean()), 4),
            "precision": round(float(y[d].mean()) if d.any() else 0.0, 4),
            "pr_auc": round(float(average_precision_score(y, frame["score"])), 4),
            "mean_score": round(float(frame["score"].mean()), 5),
            "test_prevalence": round(float(y.mean()), 5),
            "threshold": meta.get("threshold"), "negative_weight":
                lineage.get("negative_weight")}


def table(rows: list[dict]) -> str:
    keys = ["arm", "sample", "rows_trained_on", "train_seconds", "train_peak_rss_mb",
            "normalised_cost", "recall", "precision", "pr_auc", "mean_score",
            "test_prevalence"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--test-rows", type=int, default=2_000_000)
    parser.add_argument("--sample", default="0.1")
    parser.add_argument("--out", default=str(RESULTS / "sample_quality_generated"))
    args = parser.parse_args()
    data = WORK / f"data_{args.rows}_{args.test_rows}"
    write_data(data, args.rows, args.test_rows)
    work = Path(tempfile.mkdtemp(prefix="rareflow-sample-quality-"))
    env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_HOME": str(work / "prefect")}
    try:
        rows = [arm("full", None, data, work, env), arm("sampled", args.sample, data, work, env)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    full, sampled = rows
    summary = {
        "cost_ratio": round(sampled["normalised_cost"] / full["normalised_cost"], 4),
        "time_ratio": round(sampled["train_seconds"] / full["train_seconds"], 3),
        "rss_ratio": round(sampled["train_peak_rss_mb"] / full["train_peak_rss_mb"], 3)}
    result = {"rows": args.rows, "test_rows": args.test_rows, "arms": rows, **summary,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    text = (f"{table(rows)}\n\nsampled / full: normalised cost {summary['cost_ratio']}, "
            f"train time {summary['time_ratio']}, peak RSS {summary['rss_ratio']}\n")
    Path(args.out + ".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Class-weighted gradient boosting: scikit-learn's binning against rareflow's one-sort bin
mapper, and what the auto strategy's search costs on a mid-sized table.

1. **One fit.** On the speed benchmark's synthetic table (26 numeric columns with missing
   values, ~1 % positives), HistGradientBoosting with rareflow's settings and
   ``class_weight="balanced"`` is fitted twice on the same rows: scikit-learn's own class,
   and ``tasks.search._fast_hgb.CodedHistGradientBoostingClassifier`` (whose bin mapper finds the
   weighted bin thresholds with one sort per column). Both must give the same scores.
2. **The search.** rareflow's auto strategy search (every candidate on every fold, as
   ``rareflow train`` runs it) on ``--search-rows`` rows of the same table, against fitting
   HGB + scikit-learn's ``TunedThresholdClassifierCV`` as a user would (benchmarks/quality.py's
   alternative), timed in the same process.

    python -m uv run python benchmarks/hgb_binning.py
    python -m uv run python benchmarks/hgb_binning.py --rows 5000 39000 --search-rows 39000

Results: ``benchmarks/results/hgb_binning.{json,md}``. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from ablation import training_part  # noqa: E402  (benchmarks/ is this script's folder)
from quality import time_alternative  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from speed import LABEL, N_NUMERIC, make_data  # noqa: E402

from tasks.search._fast_hgb import CodedHistGradientBoostingClassifier  # noqa: E402
from tasks.search.hyperparams import HGB_PARAMS  # noqa: E402
from tasks.search.selection import search  # noqa: E402

RESULTS = HERE / "results"


def time_fit(cls, X, y, repeats: int) -> tuple[float, np.ndarray]:
    """Median seconds of ``repeats`` balanced fits, and the last fit's scores."""
    seconds = []
    for _ in range(repeats):
        model = cls(**HGB_PARAMS, class_weight="balanced", random_state=0)
        started = time.perf_counter()
        model.fit(X, y)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), model.predict_proba(X[:2000])[:, 1]


def one_fit(rows: int, repeats: int) -> dict:
    df = make_data(rows)
    X = df[[f"num_{i:02d}" for i in range(N_NUMERIC)]].to_numpy()
    y = df[LABEL].to_numpy().astype(int)
    stock, stock_scores = time_fit(HistGradientBoostingClassifier, X, y, repeats)
    ours, our_scores = time_fit(CodedHistGradientBoostingClassifier, X, y, repeats)
    if not np.array_equal(stock_scores, our_scores):
        raise AssertionError(f"{rows} rows: the one-sort bin mapper changed the scores")
    return {"rows": rows, "columns": N_NUMERIC, "scikit_learn_s": round(stock, 3),
            "rareflow_s": round(ours, 3), "speedup": round(stock / ours, 2),
            "same_scores": True}


def the_search(rows: int) -> dict:
    df = make_data(rows)
    y = df[LABEL].to_numpy().astype(int)
    alternative = time_alternative(df.drop(columns=[LABEL]), y)
    X, y_train, schema, config = training_part(df, label=LABEL, positive="1")
    started = time.perf_counter()
    best, results, _ = search(X, y_train, schema, config=config)
    seconds = time.perf_counter() - started
    return {"rows": rows, "search_rows": len(y_train), "alternative_s": round(alternative, 2),
            "search_s": round(seconds, 2), "ratio": round(seconds / alternative, 2),
            "chosen": best.spec.name, "cv_cost": round(best.cv_cost, 4),
            "candidates": {r.spec.name: round(r.fit_seconds, 2) for r in results
                           if r.spec.model != "blend"}}


def markdown(fits: list[dict], found: dict | None, meta: dict) -> str:
    lines = ["# Class-weighted HistGradientBoosting: binning, and the search it sits in", "",
             f"Run {meta['finished']} on {meta['machine']}. Command: `{meta['command']}`.", "",
             "## One balanced fit (rareflow's HGB settings, 26 numeric columns)", "",
             "| rows | scikit-learn s | rareflow s | speed-up | same scores |",
             "|---:|---:|---:|---:|:---:|"]
    lines += [f"| {f['rows']:,} | {f['scikit_learn_s']} | {f['rareflow_s']} | "
              f"{f['speedup']}x | {'yes' if f['same_scores'] else 'NO'} |" for f in fits]
    if found:
        lines += ["", f"## The auto strategy's search on {found['rows']:,} rows "
                  f"({found['search_rows']:,} in the training part)", "",
                  f"HGB + TunedThresholdClassifierCV {found['alternative_s']} s; rareflow's "
                  f"search {found['search_s']} s: **{found['ratio']}x**. Chosen "
                  f"`{found['chosen']}` (CV cost {found['cv_cost']}).", "",
                  "| candidate | seconds (5 folds) |", "|---|---:|"]
        lines += [f"| `{name}` | {s} |" for name, s in found["candidates"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5000, 39000, 150000])
    parser.add_argument("--search-rows", type=int, default=39000, help="0: no search")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "hgb_binning")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    started = time.perf_counter()
    fits = [one_fit(n, args.repeats) for n in args.rows]
    found = the_search(args.search_rows) if args.search_rows else None
    meta = {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_seconds":
            round(time.perf_counter() - started, 1), "machine": f"{platform.machine()}, "
            f"{len(os.sched_getaffinity(0))} cores, Python "
            f"{platform.python_version()}", "command": " ".join(
                ["python benchmarks/hgb_binning.py", *(argv if argv is not None
                                                        else sys.argv[1:])])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "fits": fits, "search": found}, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(fits, found, meta), encoding="utf-8")
    print(markdown(fits, found, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Candidate ablation: what the auto strategy would choose, and what that choice would cost on
unseen rows, with fewer candidates or another selection rule, without refitting anything.

For each data set x outer fold of the quality benchmark (same folds, same training part as
``rareflow train`` uses: the stratified 80 % part, or every row when the evidence is a nested
cross-validation) the auto search runs once. Every candidate's honest CV result and out-of-fold
scores are kept, with the outer-test scores of the average of its fold models (what a served
model of that candidate scores). Each variant then replays the selection on the kept results
(``tasks.search.selection.finish_selection``: blends, the choice, calibration) and the chosen
strategy is
scored on the outer-test rows exactly as ``rareflow score`` would.

A variant's time ratio is the fit seconds of the candidates it keeps over the seconds of
HGB + ``TunedThresholdClassifierCV`` on the same outer-training rows (quality.py's alternative).
The choice with every candidate reproduces quality.py's ``rareflow auto`` column.

    python -m uv run python benchmarks/ablation.py          # about 6 minutes on 2 cores

Results: ``benchmarks/results/ablation.{json,md}``. Needs ``../shared/datasets``.
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

import quality as q  # noqa: E402  (benchmarks/ is this script's folder)

from schemas.config import TrainingConfig  # noqa: E402
from tasks.data.split import cv_folds, split_parts  # noqa: E402
from tasks.data.validation import validate_training_data  # noqa: E402
from tasks.decision.calibration import apply_platt  # noqa: E402
from tasks.decision.costs import DecisionCosts  # noqa: E402
from tasks.decision.served_classifier import positive_scores  # noqa: E402
from tasks.search.evidence import evidence_kind  # noqa: E402
from tasks.search.selection import finish_selection, search  # noqa: E402

COSTS = DecisionCosts(fn_cost=q.FN_COST, fp_cost=q.FP_COST)


def training_part(df, *, label: str, positive: str):
    """What ``rareflow train`` with default settings searches on: the validated table's
    training part (every row when the evidence is a nested cross-validation), and the config.
    """
    config = TrainingConfig(data="benchmark", label=label, positive=positive,
                            costs={"fn_cost": q.FN_COST, "fp_cost": q.FP_COST})
    split = config.split
    data = validate_training_data(df, label=label, positive=positive,
                                  test_size=split.test_size, n_folds=split.n_folds)
    parts = split_parts(data, test_size=split.test_size, seed=config.seed,
                        evidence=evidence_kind(config, int(data.y.sum())),
                        n_folds=split.n_folds)
    return parts.X_train.reset_index(drop=True), parts.y_train, parts.schema, config


def searched(df, y, info: dict, train, test) -> dict:
    """One outer fold: the search's kept results and each candidate's outer-test scores."""
    d, held = df.iloc[train].reset_index(drop=True), df.iloc[test].reset_index(drop=True)
    alternative = q.time_alternative(d.drop(columns=[info["label"]]), y[train])
    X, y_part, schema, config = training_part(d, label=info["label"],
                                              positive=str(info["positive"]))
    best, results, _ = search(X, y_part, schema, config=config)
    kept = []
    for r in results:
        if r.ok and r.spec.family != "blend":
            scores = np.mean([positive_scores(m, held) for m in r.fold_models], axis=0)
            r.fold_models = []
            kept.append((r, scores))
    return {"y": y_part, "folds": cv_folds(y_part, n_folds=config.split.n_folds,
                                           seed=config.seed),
            "kept": kept, "y_test": y[test], "alternative": alternative,
            "chosen": best.spec.name}


def outer_test_scores(spec, scores_by_name: dict) -> np.ndarray:
    """The chosen strategy's outer-test scores, from its candidates' (blend: their mean)."""
    if spec.members:
        scores = np.mean([scores_by_name[m.name] for m in spec.members], axis=0)
    else:
        scores = scores_by_name[spec.uncalibrated().name]
    return apply_platt(scores, *spec.calibration) if spec.calibration else scores


def replay(fold: dict, keep, *, blend: bool = True, se: float = 0.0) -> tuple[float, float]:
    """(outer-test normalised cost, time ratio) of the choice among the kept candidates."""
    kept = [(r, s) for r, s in fold["kept"] if keep(r.spec.name)]
    results = [r for r, _ in kept]
    best, _ = finish_selection(results, fold["y"], fold["folds"], costs=COSTS, blend=blend,
                               simpler_within_se=se)
    decisions = outer_test_scores(best.spec, {r.spec.name: s for r, s in kept}) >= best.threshold
    cost = q.normalised_cost(fold["y_test"], decisions.astype(int))
    return cost, sum(r.fit_seconds for r in results) / fold["alternative"]


def variants(names: list[str]) -> dict:
    """The variants: every candidate, each one left out, no blends, the 1-SE rule."""
    out = {"every candidate (the default)": ({}, lambda n: True)}
    for left_out in names:
        out[f"without {left_out}"] = ({}, lambda n, x=left_out: n != x)
    out["no blends"] = ({"blend": False}, lambda n: True)
    for se in (0.5, 1.0):
        out[f"one-SE rule at {se:g}"] = ({"se": se}, lambda n: True)
    return out


def evaluate(store: dict) -> dict:
    datasets = list(dict.fromkeys(name for name, _ in store))
    names = list(dict.fromkeys(r.spec.name for fold in store.values() for r, _ in fold["kept"]))
    table = {}
    for label, (options, keep) in variants(names).items():
        row = {}
        for name in datasets:
            runs = [replay(store[(name, k)], keep, **options) for k in range(5)]
            costs, ratios = np.array([c for c, _ in runs]), np.array([t for _, t in runs])
            row[name] = {"cost": round(float(costs.mean()), 4),
                         "std": round(float(costs.std(ddof=1)), 4),
                         "time_ratio": round(float(ratios.mean()), 2)}
        shared = [row[n]["cost"] for n in datasets if n != q.WEAK]
        row["mean of the shared"] = round(float(np.mean(shared)), 4)
        row["largest time ratio"] = max(v["time_ratio"] for k, v in row.items()
                                        if isinstance(v, dict))
        table[label] = row
    return table


def markdown(table: dict, meta: dict) -> str:
    datasets = [k for k, v in next(iter(table.values())).items() if isinstance(v, dict)]
    lines = ["# Candidate ablation: the auto strategy's choice replayed without refitting", "",
             f"Run {meta['finished']} on {meta['machine']}; wall time {meta['wall_min']} min. "
             f"Command: `{meta['command']}`. Protocol: benchmarks/ablation.py's docstring. "
             "Cells: outer-test normalised cost, mean ± std over the 5 outer folds, and the "
             "search's time over HGB + TunedThresholdClassifierCV's.", "",
             "| variant | mean of the five shared | largest time ratio | "
             + " | ".join(datasets) + " |", "|---|---:|---:|" + "---:|" * len(datasets)]
    for label, row in table.items():
        cells = [f"{row[d]['cost']:.3f} ± {row[d]['std']:.3f} ({row[d]['time_ratio']:.1f}x)"
                 for d in datasets]
        lines.append(f"| {label} | {row['mean of the shared']:.4f} | "
                     f"{row['largest time ratio']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ablation")
    args = parser.parse_args(argv)
    if not q.DATASETS.exists():
        print(f"{q.DATASETS} is absent: the ablation needs the shared data sets")
        return 2
    logging.disable(logging.WARNING)
    started = time.perf_counter()
    store = {}
    for name, info in q.datasets(q.load_manifest(q.DATASETS)).items():
        df, y = q.load_any(info)
        for k, (train, test) in enumerate(q.outer_folds(y)):
            store[(name, k)] = searched(df, y, info, train, test)
            print(name, k, store[(name, k)]["chosen"], flush=True)
    table = evaluate(store)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}")
    meta = {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine,
            "wall_min": round((time.perf_counter() - started) / 60, 1),
            "command": "python benchmarks/ablation.py"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "variants": table},
                                                        indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(table, meta), encoding="utf-8")
    print(markdown(table, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Early stopping without the training loss: what one gradient-boosting fold fit saves.

On the speed benchmark's synthetic table (``benchmarks/speed.py``: 26 numeric columns with
missing values, 4 categorical ones as codes, ~1 % positives), one fold's training rows (80 %
of a training part, as ``benchmarks/speed.py --rows 1000000`` fits them) are fitted with
rareflow's settings and ``class_weight="balanced"`` by
``tasks.search._fast_hgb.CodedHistGradientBoostingClassifier`` twice, alternating: as
shipped (early stopping reads the validation loss alone) and with scikit-learn's own
``_check_early_stopping_loss`` (which also evaluates the loss on every training row at every
iteration). Both must stop at the same iteration and give the same scores.

    python -m uv run python benchmarks/hgb_early_stopping.py               # 640,000 rows
    python -m uv run python benchmarks/hgb_early_stopping.py --rows 64000 --repeats 3

Results: ``benchmarks/results/hgb_early_stopping.{json,md}``. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from speed import LABEL, N_CATEGORICAL, make_data  # noqa: E402

from tasks.search._fast_hgb import CodedHistGradientBoostingClassifier  # noqa: E402
from tasks.search.hyperparams import HGB_PARAMS  # noqa: E402

RESULTS = HERE / "results"


class WithTrainingLoss(CodedHistGradientBoostingClassifier):
    """The coded subclass with scikit-learn's own early-stopping check (the comparison)."""

    _check_early_stopping_loss = HistGradientBoostingClassifier._check_early_stopping_loss


def coded_matrix(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The table's categorical columns as codes 0..7 first, then the numeric ones."""
    df = make_data(rows)
    y = df.pop(LABEL).to_numpy()
    cats = [f"cat_{j}" for j in range(N_CATEGORICAL)]
    codes = [df.pop(c).str[1:].astype(float).to_numpy() for c in cats]
    return np.column_stack([*codes, df.to_numpy()]), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=640_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    X, y = coded_matrix(args.rows)
    seconds, fitted = {"shipped": [], "with_training_loss": []}, {}
    for _ in range(args.repeats):
        for name, cls in (("with_training_loss", WithTrainingLoss),
                          ("shipped", CodedHistGradientBoostingClassifier)):
            model = cls(**HGB_PARAMS, class_weight="balanced",
                        categorical_features=list(range(N_CATEGORICAL)), random_state=0)
            started = time.perf_counter()
            model.fit(X, y)
            seconds[name].append(round(time.perf_counter() - started, 2))
            fitted[name] = model
    ours, theirs = fitted["shipped"], fitted["with_training_loss"]
    same = (ours.n_iter_ == theirs.n_iter_
            and np.array_equal(ours.validation_score_, theirs.validation_score_)
            and np.array_equal(ours.predict_proba(X[:200_000]), theirs.predict_proba(X[:200_000])))
    result = {"rows": args.rows, "columns": X.shape[1], "cores": os.cpu_count(),
              "iterations": int(ours.n_iter_), "seconds": seconds,
              "median_shipped": float(np.median(seconds["shipped"])),
              "median_with_training_loss": float(np.median(seconds["with_training_loss"])),
              "same_iterations_scores_and_predictions": bool(same)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hgb_early_stopping.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "hgb_early_stopping.md").write_text(
        "# Early stopping without the training loss\n\n"
        f"Run {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} cores: `python -m uv "
        f"run python benchmarks/hgb_early_stopping.py --rows {args.rows} --repeats "
        f"{args.repeats}`. One balanced gradient-boosting fit with rareflow's settings on "
        f"{args.rows:,} rows x {X.shape[1]} columns, {ours.n_iter_} iterations.\n\n"
        "| fit | seconds (each repeat) | median |\n|---|---|---|\n"
        f"| scikit-learn's check (training loss every iteration) | "
        f"{seconds['with_training_loss']} | {result['median_with_training_loss']:.2f} |\n"
        f"| shipped (validation loss alone) | {seconds['shipped']} | "
        f"{result['median_shipped']:.2f} |\n\n"
        f"Same iterations, validation scores and predictions: **{same}**.\n")
    print(json.dumps(result))
    if not same:
        sys.exit("the two fits differ: the shortcut changed the model")


if __name__ == "__main__":
    main()

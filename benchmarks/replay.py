"""Replay: a time-stamped stream through rareflow's real flows, week by week, under four
retraining policies.

The stream (``tasks.data.demo_tables.make_stream``): daily partitions over 20 weeks, about 1.5 %
positives, labels that arrive 14-28 days after the transaction, and a concept drift at week 10
(an account-takeover ring replaces most of the old fraud pattern). Each week's rows land in a
data source through the ingest flow; ``as_of`` advances a week at a time (no sleeping); every
model is trained by the training flow on the source's window as of that time, and monitoring is
the monitoring flow. One ephemeral Prefect server serves the whole replay.

Policies, each with its own registry (the first model, trained as of week 6, is shared):

* **static**: the first model forever;
* **scheduled**: retrain every week on the source's window (matured labels);
* **rareflow**: monitor every week (labels matured since the last check); retrain only on
  recall drift, through the path a ``rareflow.monitor.recall-drift`` trigger takes (the drift
  payload → ``tasks.data.arrivals.config_for_event`` → the training flow);
* **hindsight**: retrain every week on every label, matured or not (an unreachable bound).

A week's cost is that week's rows scored by the champion serving during the week:
fn_cost x missed positives + fp_cost x false alarms, normalised by the cost of flagging nothing.
Strategy: fixed (HistGradientBoosting, balanced class weights, no resampling, 3 folds, cost
threshold) rather than ``auto``, to keep 5 seeds x ~45 trainings near an hour on 2 cores.

    python -m uv sync --frozen --extra bench       # matplotlib, for the plot
    python -m uv run python benchmarks/replay.py                  # 5 seeds: the committed run
    python -m uv run python benchmarks/replay.py --seeds 0 --weeks 14 --drift-week 9 \
        --out /tmp/replay/replay --work /tmp/replay/work          # quick: one seed, ~10 min
    python -m uv run python benchmarks/replay.py --render /tmp/replay/replay.json  # redraw

Results: ``benchmarks/results/replay.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "replay"
POLICIES = ("static", "scheduled", "rareflow", "hindsight")
NAME = "fraud"
FIRST_WEEK = 6
WINDOW = "56d"
FAST = {"strategy": {"model": "hgb", "sampler": "none", "class_weight": "balanced",
                     "calibrate": "never"}, "split": {"n_folds": 3}}
MATURITY = {"time_column": "event_time", "label_time_column": "label_time"}
RECOVERED = 1.10  # a week's cost within 10 % of the policy's own pre-drift mean


def prefect_env(work: Path) -> None:
    """One quiet, throwaway Prefect home for the replay's ephemeral server."""
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect-home"))
    for key, value in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "PREFECT_LOGGING_LEVEL": "WARNING",
                       "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}.items():
        os.environ.setdefault(key, value)


class Replay:
    """One seed's stream replayed through the flows under every policy."""

    def __init__(self, seed: int, args, base: Path):
        from tasks.data.demo_tables import STREAM_START, make_stream

        self.seed, self.args, self.base = seed, args, base
        self.stream = make_stream(args.weeks, rows_per_day=args.rows_per_day,
                                  drift_week=args.drift_week, seed=seed)
        self.start = pd.Timestamp(STREAM_START, tz="UTC")
        self.week_of = ((self.stream["event_time"] - self.start).dt.days // 7).to_numpy()
        self.source = base / "source"
        self.registries = {p: base / f"registry-{p}" for p in POLICIES}
        self.weeks: list[dict] = []
        self.counts = {p: {"retrainings": 0, "promotions": 0} for p in POLICIES}

    def as_of(self, week: int) -> str:
        return (self.start + pd.Timedelta(weeks=week)).isoformat()

    def config(self, policy: str, as_of: str):
        from schemas.config import TrainingConfig

        maturity = {"time_column": "event_time"} if policy == "hindsight" else MATURITY
        return TrainingConfig(data=str(self.source), label="is_fraud", positive="1",
                              window=WINDOW, as_of=as_of, registry=str(self.registries[policy]),
                              name=NAME, seed=self.seed, **maturity, **FAST)

    def land(self, week: int) -> None:
        from flows.ingest import ingest_flow
        from schemas.config import IngestConfig

        path = self.base / "incoming" / f"week-{week:02d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream[self.week_of == week].to_parquet(path, index=False)
        ingest_flow(IngestConfig(data=str(path), source=str(self.source), name=NAME,
                                 time_column="event_time", as_of=self.as_of(week + 1)))

    def train(self, policy: str, as_of: str, trigger=None) -> dict:
        from flows.training import training_flow
        from tasks.runtime.run_outcome import run_summary

        result = run_summary(training_flow(self.config(policy, as_of), trigger=trigger,
                                           return_state=True))
        self.counts[policy]["retrainings"] += 1
        self.counts[policy]["promotions"] += int(result["promoted"])
        return result

    def first_models(self) -> None:
        """The shared first model (static, scheduled, rareflow) and hindsight's own."""
        as_of = self.as_of(FIRST_WEEK)
        for policy in ("static", "hindsight"):
            result = self.train(policy, as_of)
            self.counts[policy] = {"retrainings": 0, "promotions": 0}
            if not result["promoted"]:
                raise RuntimeError(f"seed {self.seed}: the first {policy} model was not "
                                   f"promoted: {result['verdict']['status']}")
        for policy in ("scheduled", "rareflow"):
            shutil.copytree(self.registries["static"], self.registries[policy])

    def cost(self, policy: str, rows: pd.DataFrame) -> dict:
        """The week's rows scored by the policy's serving champion."""
        from tasks.registry.store import Registry

        model, meta = Registry(self.registries[policy], NAME).load("champion")
        costs = meta["costs"]
        X = rows[model.schema.feature_names]
        d = model.decide(X).astype(bool)
        y = rows["is_fraud"].to_numpy().astype(bool)
        fn, fp = int((y & ~d).sum()), int((~y & d).sum())
        cost = costs["fn_cost"] * fn + costs["fp_cost"] * fp
        return {"cost": float(cost), "positives": int(y.sum()), "fn": fn, "fp": fp,
                "normalised_cost": float(cost / (costs["fn_cost"] * y.sum())),
                "recall": float((y & d).sum() / y.sum()), "champion": meta["version"]}

    def monitor(self, as_of: str) -> dict:
        """Policy rareflow's weekly check; on recall drift, the trigger's retraining."""
        from flows.monitoring import monitoring_flow
        from schemas.config import MonitoringConfig, TriggerEvent
        from tasks.monitor.verdict import drift_payload
        from tasks.runtime import events
        from tasks.runtime.run_outcome import run_summary

        result = run_summary(monitoring_flow(MonitoringConfig(
            data=str(self.source), registry=str(self.registries["rareflow"]), name=NAME,
            window=WINDOW, as_of=as_of, drift_sample_rows=2000, **MATURITY), return_state=True))
        est = result["estimate"] or {}
        check = {"status": result["status"], "p_value": result["decision"]["p_value"],
                 "matured_positives": result["batch"]["positives"],
                 "realised_recall": result["batch"]["recall"],
                 "reference_recall": result["reference"]["recall"],
                 "estimate": est.get("status"), "estimated_recall": est.get("estimated_recall"),
                 "estimate_reference_recall": est.get("reference_recall"),
                 "estimate_rows": est.get("rows"), "retrained": None}
        if result["status"] == "drift":
            trigger = TriggerEvent(event=events.RECALL_DRIFT, payload=drift_payload(result))
            check["retrained"] = self.train("rareflow", as_of, trigger=trigger)["status"]
        return check

    def run(self) -> dict:
        started = time.perf_counter()
        for week in range(FIRST_WEEK):
            self.land(week)
        self.first_models()
        for week in range(FIRST_WEEK, self.args.weeks):
            self.land(week)
            rows = self.stream[self.week_of == week]
            record = {"week": week, **{p: self.cost(p, rows) for p in POLICIES}}
            if week < self.args.weeks - 1:  # act at the end of the week, for the next one
                as_of = self.as_of(week + 1)
                self.train("scheduled", as_of)
                record["check"] = self.monitor(as_of)
                self.train("hindsight", as_of)
            self.weeks.append(record)
            print(f"  seed {self.seed} week {week:2d}: " + "  ".join(
                f"{p} {record[p]['normalised_cost']:.3f}" for p in POLICIES)
                + (f"  check {record['check']['status']}/{record['check']['estimate']}"
                   if "check" in record else "")
                + f"  [{time.perf_counter() - started:.0f} s]", flush=True)
        return {"seed": self.seed, "weeks": self.weeks, "counts": self.counts,
                "seconds": round(time.perf_counter() - started, 1)}


# -- what the replay shows ------------------------------------------------------------------------
def _first(weeks: list[int], after: int) -> int | None:
    later = [w for w in weeks if w >= after]
    return min(later) if later else None


def seed_summary(run: dict, *, drift_week: int) -> dict:
    """Per policy: total and post-drift cost, retrainings, promotions, recovery; rareflow's
    alarms (realised and estimated) and false alarms."""
    weeks = run["weeks"]
    out = {}
    for policy in POLICIES:
        cost = np.array([w[policy]["cost"] for w in weeks])
        pos = np.array([w[policy]["positives"] for w in weeks])
        norm = np.array([w[policy]["normalised_cost"] for w in weeks])
        week = np.array([w["week"] for w in weeks])
        pre, post = week < drift_week, week >= drift_week
        recovered = [int(k) for k, n in zip(week[post], norm[post], strict=True)
                     if n <= RECOVERED * norm[pre].mean()]
        out[policy] = {
            "normalised_cost": float(cost.sum() / (10.0 * pos.sum())),
            "post_drift_cost": float(cost[post].sum()),
            "pre_drift_normalised_cost": float(norm[pre].mean()),
            **run["counts"][policy],
            "weeks_to_recovery": (recovered[0] - drift_week) if recovered else None,
        }
    checks = [(w["week"] + 1, w["check"]) for w in weeks if "check" in w]  # as_of week
    alarms = [k for k, c in checks if c["status"] == "drift"]
    estimated = [k for k, c in checks if c["estimate"] == "estimated-drop"]
    alarm, early = _first(alarms, drift_week), _first(estimated, drift_week)
    out["rareflow"].update({
        "alarm_weeks": alarms, "estimate_weeks": estimated,
        "weeks_to_alarm": None if alarm is None else alarm - drift_week,
        "weeks_to_estimate": None if early is None else early - drift_week,
        "false_alarms_before_drift": sum(k <= drift_week for k in alarms),
        "alarms_on_pre_drift_labels": sum(k <= drift_week + 2 for k in alarms),
        "estimate_false_alarms_before_drift": sum(k <= drift_week for k in estimated),
        "estimate_leads_by_1_week": (early is not None and alarm is not None
                                     and early <= alarm - 1),
    })
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def overall(summaries: list[dict]) -> dict:
    """Means over seeds, and the issue's targets checked on them."""
    table = {p: {key: _mean([s[p][key] for s in summaries])
                 for key in ("normalised_cost", "post_drift_cost", "pre_drift_normalised_cost",
                             "retrainings", "promotions", "weeks_to_recovery")}
             for p in POLICIES}
    rf = [s["rareflow"] for s in summaries]
    table["rareflow"].update({
        "weeks_to_alarm": _mean([r["weeks_to_alarm"] for r in rf]),
        "weeks_to_estimate": _mean([r["weeks_to_estimate"] for r in rf]),
        "false_alarms_before_drift": int(sum(r["false_alarms_before_drift"] for r in rf)),
        "alarms_on_pre_drift_labels": int(sum(r["alarms_on_pre_drift_labels"] for r in rf)),
        "seeds_without_alarm": sum(r["weeks_to_alarm"] is None for r in rf),
    })
    static_post = sum(s["static"]["post_drift_cost"] for s in summaries)
    rf_post = sum(s["rareflow"]["post_drift_cost"] for s in summaries)
    ratio_post = rf_post / static_post
    ratio_total = table["rareflow"]["normalised_cost"] / table["scheduled"]["normalised_cost"]
    retrain_ratio = table["rareflow"]["retrainings"] / table["scheduled"]["retrainings"]
    leads = sum(r["estimate_leads_by_1_week"] for r in rf)
    targets = [
        ("rareflow's post-drift cost <= 0.7 x static's", f"{ratio_post:.3f} x",
         ratio_post <= 0.7),
        ("rareflow's total cost within 5 % of scheduled's", f"{ratio_total:.3f} x",
         ratio_total <= 1.05),
        ("rareflow retrains at most half as often as scheduled",
         f"{retrain_ratio:.3f} x", retrain_ratio <= 0.5),
        ("no false alarm before the drift (all seeds)",
         f"{table['rareflow']['false_alarms_before_drift']} false alarms",
         table["rareflow"]["false_alarms_before_drift"] == 0),
        ("the estimate flags the drift >= 1 week before matured labels on >= 3 of the seeds",
         f"{leads} of {len(rf)} seeds", leads >= 3),
    ]
    return {"table": table, "targets": [{"target": t, "measured": m, "met": bool(ok)}
                                        for t, m, ok in targets]}


def weekly_means(runs: list[dict]) -> pd.DataFrame:
    """Mean normalised cost of each week's rows per policy, over the seeds."""
    rows = [{"week": w["week"], "policy": p, "normalised_cost": w[p]["normalised_cost"]}
            for run in runs for w in run["weeks"] for p in POLICIES]
    return (pd.DataFrame(rows).groupby(["week", "policy"])["normalised_cost"].mean()
            .unstack()[list(POLICIES)])


def _fmt(value, spec=".3f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(runs: list[dict], summaries: list[dict], result: dict, args, minutes: float) -> str:
    t = result["table"]
    lines = [
        "# Replay: retraining policies on a stream with late labels and a concept drift", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores in {minutes:.0f} "
        f"min. Command: `python -m uv run python benchmarks/replay.py --seeds "
        f"{' '.join(map(str, args.seeds))} --weeks {args.weeks} --drift-week "
        f"{args.drift_week}`. Stream: {args.weeks} weeks x "
        f"{args.rows_per_day} rows a day, ~1.5 % positives, labels 14-28 days late, concept "
        f"drift at week {args.drift_week}; first model as of week {FIRST_WEEK}; window "
        f"{WINDOW}; fixed strategy {FAST['strategy']} with 3 folds; costs fn 10, fp 1. "
        f"A week's normalised cost: its rows scored by the champion serving that week, cost / "
        "cost of flagging nothing. Means over the seeds.", "",
        "| policy | normalised cost, all weeks | before the drift | post-drift cost vs static "
        "| retrainings | promotions | weeks drift → alarm | weeks drift → recovery | "
        "false alarms before the drift |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    static_post = t["static"]["post_drift_cost"]
    for p in POLICIES:
        row = t[p]
        alarm = _fmt(row.get("weeks_to_alarm"), ".1f") if p == "rareflow" else "-"
        false = str(row["false_alarms_before_drift"]) if p == "rareflow" else "-"
        lines.append(
            f"| {p} | {_fmt(row['normalised_cost'])} | {_fmt(row['pre_drift_normalised_cost'])} "
            f"| {row['post_drift_cost'] / static_post:.3f} | {row['retrainings']:.1f} | "
            f"{row['promotions']:.1f} | {alarm} | {_fmt(row['weeks_to_recovery'], '.1f')} | "
            f"{false} |")
    lines += ["", "Recovery: the first week from the drift on whose rows the policy's cost is "
              f"within {RECOVERED - 1:.0%} of its own mean before the drift (means over the seeds "
              "that recover; '-' none).", "", "## Targets", "", "| target | measured | met |",
              "|---|---|---|"]
    lines += [f"| {x['target']} | {x['measured']} | {'yes' if x['met'] else 'NO'} |"
              for x in result["targets"]]
    lines += ["", "## Per seed", "", "| seed | static | scheduled | rareflow | hindsight | "
              "rareflow retrainings | alarms (as-of week) | estimated drops (as-of week) |",
              "|---|---:|---:|---:|---:|---:|---|---|"]
    for s, run in zip(summaries, runs, strict=True):
        lines.append(
            f"| {run['seed']} | " + " | ".join(_fmt(s[p]["normalised_cost"]) for p in POLICIES)
            + f" | {s['rareflow']['retrainings']} | {s['rareflow']['alarm_weeks']} | "
            f"{s['rareflow']['estimate_weeks']} |")
    weekly = weekly_means(runs)
    lines += ["", "## Weekly normalised cost (mean over seeds)", "",
              "| week | " + " | ".join(POLICIES) + " |", "|---|" + "---:|" * len(POLICIES)]
    lines += [f"| {week}{' (drift)' if week == args.drift_week else ''} | "
              + " | ".join(f"{v:.3f}" for v in row) + " |"
              for week, row in zip(weekly.index, weekly.to_numpy(), strict=True)]
    lines += ["", "![weekly cost per policy](replay.png)", ""]
    return "\n".join(lines)


def plot(runs: list[dict], path: Path, *, drift_week: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weekly = weekly_means(runs)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for policy, style in zip(POLICIES, ("-", "--", "-", ":"), strict=True):  # static and
        ax.plot(weekly.index, weekly[policy], style, marker="o", markersize=3,  # rareflow can
                label=policy, linewidth=2.5 if policy == "static" else 1.5)  # coincide

    ax.axvline(drift_week - 0.5, color="grey", linestyle="--", linewidth=1)
    ax.text(drift_week - 0.4, ax.get_ylim()[1] * 0.95, "concept drift", color="grey",
            va="top", fontsize=8)
    ax.set_xlabel("week")
    ax.set_ylabel("normalised cost of the week's rows")
    ax.set_title(f"Weekly cost per retraining policy (mean of {len(runs)} seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_results(runs, args, out: Path, minutes: float) -> dict:
    summaries = [seed_summary(r, drift_week=args.drift_week) for r in runs]
    result = overall(summaries)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps({
        "settings": {"seeds": args.seeds, "weeks": args.weeks, "rows_per_day":
                     args.rows_per_day, "drift_week": args.drift_week, "first_week":
                     FIRST_WEEK, "window": WINDOW, "training": FAST},
        "summary": result, "per_seed": summaries, "runs": runs}, indent=1, default=str))
    Path(f"{out}.md").write_text(markdown(runs, summaries, result, args, minutes))
    plot(runs, Path(f"{out}.png"), drift_week=args.drift_week)
    return result


def render(saved: Path, out: Path) -> None:
    """Write the table and plot again from a saved run (its settings and per-week records)."""
    data = json.loads(saved.read_text())
    settings = data["settings"]
    args = argparse.Namespace(seeds=settings["seeds"], weeks=settings["weeks"],
                              rows_per_day=settings["rows_per_day"],
                              drift_week=settings["drift_week"])
    runs = data["runs"]
    result = write_results(runs, args, out, sum(r["seconds"] for r in runs) / 60)
    for target in result["targets"]:
        print(f"{'met   ' if target['met'] else 'MISSED'} {target['target']}: "
              f"{target['measured']}")


def main() -> None:
    from _key import ensure_signing_key

    ensure_signing_key()  # benchmarks write registries of their own
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--weeks", type=int, default=20)
    parser.add_argument("--rows-per-day", type=int, default=1000)
    parser.add_argument("--drift-week", type=int, default=10)
    parser.add_argument("--out", default=str(RESULTS / "replay"))
    parser.add_argument("--work", default=str(WORK), help="scratch folder (emptied per seed)")
    parser.add_argument("--render", help="redraw the table and plot from a saved replay.json")
    args = parser.parse_args()
    try:
        import matplotlib  # noqa: F401  (checked before an hour of replay, not after)
    except ImportError:
        sys.exit("replay.py needs matplotlib for its plot: "
                 "python -m uv sync --frozen --extra bench")
    if args.render:
        return render(Path(args.render), Path(args.out))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    prefect_env(Path(tempfile.mkdtemp(prefix="rareflow-replay-")))
    started, runs = time.perf_counter(), []
    for seed in args.seeds:
        base = work / f"seed-{seed}"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        print(f"seed {seed}", flush=True)
        runs.append(Replay(seed, args, base).run())
        result = write_results(runs, args, Path(args.out), (time.perf_counter() - started) / 60)
    for target in result["targets"]:
        print(f"{'met   ' if target['met'] else 'MISSED'} {target['target']}: "
              f"{target['measured']}")


if __name__ == "__main__":
    sys.exit(main())

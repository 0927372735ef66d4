"""Replay: a time-stamped stream through rareflow's real flows, week by week, under five
retraining policies.

The stream (``tasks.data.demo_tables.make_stream``): daily partitions over 20 weeks, about 1.5 %
positives, labels that arrive 14-28 days after the transaction, and a new fraud pattern from
week 10 (a fraud ring). Two variants (``--variant``): ``concept``, where the ring
changes only the link between inputs and label (P(y|x)) and ``new-inputs``, where it arrives
with transactions of its own (new accounts buying online at a few merchants, mid-sized
amounts), as real fraud rings do. Each week's rows land in a data source through the ingest
flow; ``as_of`` advances a week at a time (no sleeping); every model is trained by the training
flow on the source's window as of that time, and monitoring is the monitoring flow. One
ephemeral Prefect server serves the whole replay.

Policies, each with its own registry (the first model, trained as of week 6, is shared):

* **static**: the first model forever;
* **scheduled**: retrain every week on the source's window (matured labels);
* **rareflow**: monitor every week (labels matured since the last check, the window re-scored
  by the champion); retrain only on recall drift, through the path a
  ``rareflow.monitor.recall-drift`` trigger takes (the drift payload →
  ``tasks.data.arrivals.config_for_event`` → the training flow);
* **shadow** (rareflow + shadow challenger): each week's arrivals are scored by the scoring
  flow (``rareflow score`` of the source into a scored source, champion and challenger);
  monitoring judges what was served (``monitor --scored``); recall drift retrains with
  ``gates.shadow_first``, so the candidate shadows the champion and is promoted only when the
  shadow comparison passes on live matured rows (while a challenger answers the drift,
  monitoring withholds the drift event, so nothing retrains);
* **hindsight**: retrain every week on every label, matured or not (an unreachable bound).

A week's cost is that week's rows decided by the champion serving during the week (for
**shadow**, the decisions the scoring flow wrote): fn_cost x missed positives + fp_cost x false
alarms, normalised by the cost of flagging nothing. A promotion is **harmful** when the four
weeks it serves first cost more than the champion it replaced would have on the same rows.
Strategy: fixed (HistGradientBoosting, balanced class weights, no resampling, 3 folds, cost
threshold) rather than ``auto``, to keep 5 seeds x ~45 trainings near an hour on 2 cores.

    python -m uv sync --frozen --extra bench       # matplotlib, for the plot
    python -m uv run python benchmarks/replay.py                  # 5 seeds: the committed run
    python -m uv run python benchmarks/replay.py --variant new-inputs \
        --out benchmarks/results/replay_new_inputs                 # the second variant
    python -m uv run python benchmarks/replay.py --seeds 0 --weeks 14 --drift-week 9 \
        --out /tmp/replay/replay --work /tmp/replay/work          # quick: one seed, ~10 min
    python -m uv run python benchmarks/replay.py --render /tmp/replay/replay.json  # redraw

Results: ``benchmarks/results/replay.{md,json,png}`` and ``replay_new_inputs.{md,json,png}``.
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
from _replay_report import (
    FIRST_WEEK,
    HARM_WEEKS,
    POLICIES,
    SERVED,
    WINDOW,
    markdown,
    overall,
    plot,
    policies_of,
    seed_summary,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "replay"
NAME = "fraud"
FAST = {"strategy": {"model": "hgb", "sampler": "none", "class_weight": "balanced",
                     "calibrate": "never"}, "split": {"n_folds": 3}}
MATURITY = {"time_column": "event_time", "label_time_column": "label_time"}
# monitor --scored judges every matured row of its window that a version decided (it has no
# since-last-check): a 56-day window would mix weeks of the old pattern into each check, so
# the shadow policy watches 28 days, whose matured rows are the 2-4 weeks before the check
SERVED_WINDOW = "28d"


def prefect_env(work: Path) -> None:
    """One quiet, throwaway Prefect home for the replay's ephemeral server."""
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect-home"))
    for key, value in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "PREFECT_LOGGING_LEVEL": "WARNING",
                       "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}.items():
        os.environ.setdefault(key, value)


def decision_cost(model, meta: dict, rows: pd.DataFrame, decisions=None) -> dict:
    """The cost of ``decisions`` (default: ``model``'s) on ``rows``, in the version's costs."""
    costs = meta["costs"]
    d = (model.decide(rows[model.schema.feature_names]) if decisions is None
         else np.asarray(decisions)).astype(bool)
    y = rows["is_fraud"].to_numpy().astype(bool)
    fn, fp = int((y & ~d).sum()), int((~y & d).sum())
    cost = costs["fn_cost"] * fn + costs["fp_cost"] * fp
    return {"cost": float(cost), "positives": int(y.sum()), "fn": fn, "fp": fp,
            "normalised_cost": float(cost / (costs["fn_cost"] * y.sum())),
            "recall": float((y & d).sum() / y.sum()), "champion": meta["version"]}


def check_fields(result: dict) -> dict:
    """What the replay keeps of a monitoring run's result."""
    est, batch, ref = (result.get(k) or {} for k in ("estimate", "batch", "reference"))
    return {"status": result["status"], "p_value": (result.get("decision") or {}).get("p_value"),
            "matured_positives": batch.get("positives"), "realised_recall": batch.get("recall"),
            "reference_recall": ref.get("recall"), "estimate": est.get("status"),
            "estimated_recall": est.get("estimated_recall"),
            "estimate_reference_recall": est.get("reference_recall"),
            "estimate_rows": est.get("rows"), "retrained": None}


class Replay:
    """One seed's stream replayed through the flows under every policy asked for."""

    def __init__(self, seed: int, args, base: Path):
        from tasks.data.demo_tables import STREAM_START, make_stream

        self.seed, self.args, self.base = seed, args, base
        self.policies = [p for p in POLICIES if p in args.policies]
        self.stream = make_stream(args.weeks, rows_per_day=args.rows_per_day,
                                  drift_week=args.drift_week, seed=seed, variant=args.variant)
        self.start = pd.Timestamp(STREAM_START, tz="UTC")
        self.week_of = ((self.stream["event_time"] - self.start).dt.days // 7).to_numpy()
        self.source, self.served_source = base / "source", base / "served-source"
        self.scored = base / "scored"
        self.registries = {p: base / f"registry-{p}" for p in self.policies}
        self.weeks: list[dict] = []
        self.counts = {p: {"retrainings": 0, "promotions": 0} for p in self.policies}
        self.serving: dict[str, str | None] = {p: None for p in self.policies}
        self.promotions: dict[str, list[dict]] = {p: [] for p in self.policies}
        self.models: dict[tuple, tuple] = {}

    def as_of(self, week: int) -> str:
        return (self.start + pd.Timedelta(weeks=week)).isoformat()

    def config(self, policy: str, as_of: str):
        from schemas.config import TrainingConfig

        maturity = {"time_column": "event_time"} if policy == "hindsight" else MATURITY
        gates = {"gates": {"shadow_first": True}} if policy == SERVED else {}
        return TrainingConfig(data=str(self.source), label="is_fraud", positive="1",
                              window=WINDOW, as_of=as_of, registry=str(self.registries[policy]),
                              name=NAME, seed=self.seed, **maturity, **FAST, **gates)

    def land(self, week: int) -> None:
        """The week's rows into the source; from the first model on, also into the source the
        shadow policy scores (so only rows that arrived while a model served are scored)."""
        from flows.ingest import ingest_flow
        from schemas.config import IngestConfig

        path = self.base / "incoming" / f"week-{week:02d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream[self.week_of == week].to_parquet(path, index=False)
        served = SERVED in self.policies and week >= FIRST_WEEK
        for source in (self.source, self.served_source) if served else (self.source,):
            ingest_flow(IngestConfig(data=str(path), source=str(source), name=NAME,
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
        """The shared first model (static, scheduled, rareflow, shadow) and hindsight's own."""
        as_of = self.as_of(FIRST_WEEK)
        for policy in [p for p in ("static", "hindsight") if p in self.policies]:
            result = self.train(policy, as_of)
            self.counts[policy] = {"retrainings": 0, "promotions": 0}
            if not result["promoted"]:
                raise RuntimeError(f"seed {self.seed}: the first {policy} model was not "
                                   f"promoted: {result['verdict']['status']}")
        for policy in [p for p in ("scheduled", "rareflow", SERVED) if p in self.policies]:
            shutil.copytree(self.registries["static"], self.registries[policy])

    def version(self, policy: str, version: str) -> tuple:
        """A version of the policy's registry, loaded (and verified) once."""
        from tasks.registry.store import Registry

        if (policy, version) not in self.models:
            self.models[policy, version] = Registry(self.registries[policy], NAME).load(version)
        return self.models[policy, version]

    def cost(self, policy: str, rows: pd.DataFrame) -> dict:
        """The week's rows decided by the policy's serving champion."""
        from tasks.registry.store import Registry

        champion = Registry(self.registries[policy], NAME).champion()["version"]
        return decision_cost(*self.version(policy, champion), rows)

    def served_cost(self, rows: pd.DataFrame) -> dict:
        """The shadow policy's week: the scoring flow scores the arrivals, and the week's cost
        is that of the decisions it wrote (joined to the rows by row key)."""
        from flows.scoring import scoring_flow
        from schemas.scored import (
            CHALLENGER_DECISION,
            CHALLENGER_VERSION,
            DECISION,
            MODEL_VERSION,
            ROW_KEY,
        )
        from schemas.scoring import ScoringConfig
        from tasks.data.row_keys import key_columns, row_keys
        from tasks.monitor.served import read_scored

        scoring_flow(ScoringConfig(data=str(self.served_source), out=str(self.scored),
                                   registry=str(self.registries[SERVED]), name=NAME,
                                   time_column="event_time"))
        scored = read_scored(str(self.scored), name=NAME).set_index(ROW_KEY)
        model, _ = self.version(SERVED, "v0001")
        decided = scored.reindex(row_keys(rows, key_columns(model.schema, "event_time")))
        if decided[DECISION].isna().any():
            raise RuntimeError(f"seed {self.seed}: {int(decided[DECISION].isna().sum())} rows "
                               "of the week were not scored")
        versions = decided[MODEL_VERSION].astype(str).unique()
        if len(versions) != 1:
            raise RuntimeError(f"seed {self.seed}: the week was decided by {list(versions)}")
        out = decision_cost(*self.version(SERVED, versions[0]), rows,
                            decisions=decided[DECISION].to_numpy())
        if CHALLENGER_VERSION in decided and decided[CHALLENGER_VERSION].notna().all():
            challenger = str(decided[CHALLENGER_VERSION].iloc[0])
            out["challenger"] = challenger
            out["challenger_normalised_cost"] = decision_cost(
                *self.version(SERVED, challenger), rows,
                decisions=decided[CHALLENGER_DECISION].to_numpy())["normalised_cost"]
        return out

    def track_promotions(self, week: int, record: dict, rows: pd.DataFrame) -> None:
        """For each champion change, its first ``HARM_WEEKS`` weeks: what the new champion
        cost and what the champion it replaced would have cost on the same rows."""
        for policy in self.policies:
            now, before = record[policy]["champion"], self.serving[policy]
            if before is not None and now != before:
                self.promotions[policy].append({"week": week, "from": before, "to": now,
                                                "weeks": 0, "served": 0.0, "previous": 0.0})
            self.serving[policy] = now
            for promotion in self.promotions[policy]:
                if promotion["weeks"] < HARM_WEEKS:
                    promotion["served"] += record[policy]["cost"]
                    promotion["previous"] += decision_cost(
                        *self.version(policy, promotion["from"]), rows)["cost"]
                    promotion["weeks"] += 1

    def monitor(self, as_of: str) -> dict:
        """Policy rareflow's weekly check; on recall drift, the trigger's retraining."""
        from flows.monitoring import monitoring_flow
        from schemas.config import MonitoringConfig

        return self.check("rareflow", monitoring_flow(MonitoringConfig(
            data=str(self.source), registry=str(self.registries["rareflow"]), name=NAME,
            window=WINDOW, as_of=as_of, drift_sample_rows=2000, **MATURITY),
            return_state=True), as_of)

    def monitor_served(self, as_of: str) -> dict:
        """Policy shadow's weekly check of what was served (and of the challenger); on recall
        drift with no challenger shadowing, the trigger's retraining (shadow first)."""
        from flows.monitoring import monitoring_flow
        from schemas.config import MonitoringConfig

        return self.check(SERVED, monitoring_flow(MonitoringConfig(
            data=str(self.source), scored=str(self.scored),
            registry=str(self.registries[SERVED]), name=NAME, window=SERVED_WINDOW, as_of=as_of,
            drift_sample_rows=2000, **MATURITY), return_state=True), as_of)

    def check(self, policy: str, state, as_of: str) -> dict:
        from schemas.config import TriggerEvent
        from schemas.statuses import DRIFT
        from tasks.monitor.verdict import drift_payload
        from tasks.runtime import events
        from tasks.runtime.run_outcome import run_summary

        result = run_summary(state)
        check = check_fields(result)
        shadow = result.get("shadow") or {}
        if policy == SERVED:
            check.update(shadow=(shadow.get("verdict") or {}).get("status"),
                         shadow_action=shadow.get("action"),
                         drift_withheld=result.get("drift_withheld"))
        # the drift event's trigger retrains; monitor --scored withholds the event while a
        # challenger answers the drift (shadowing, awaiting approval, just promoted)
        if result["status"] == DRIFT and not result.get("drift_withheld"):
            trigger = TriggerEvent(event=events.RECALL_DRIFT, payload=drift_payload(result))
            check["retrained"] = self.train(policy, as_of, trigger=trigger)["status"]
        return check

    def run(self) -> dict:
        started = time.perf_counter()
        for week in range(FIRST_WEEK):
            self.land(week)
        self.first_models()
        for week in range(FIRST_WEEK, self.args.weeks):
            self.land(week)
            rows = self.stream[self.week_of == week]
            record = {"week": week, **{p: self.served_cost(rows) if p == SERVED
                                       else self.cost(p, rows) for p in self.policies}}
            self.track_promotions(week, record, rows)
            if week < self.args.weeks - 1:  # act at the end of the week, for the next one
                self.act(record, self.as_of(week + 1))
            self.weeks.append(record)
            print(f"  seed {self.seed} week {week:2d}: " + "  ".join(
                f"{p} {record[p]['normalised_cost']:.3f}" for p in self.policies)
                + "".join(f"  {k} {record[k]['status']}/{record[k]['estimate']}"
                          for k in ("check", "shadow_check") if k in record)
                + f"  [{time.perf_counter() - started:.0f} s]", flush=True)
        return {"seed": self.seed, "policies": self.policies, "weeks": self.weeks,
                "counts": self.counts, "promotion_records": self.promotions,
                "seconds": round(time.perf_counter() - started, 1)}

    def act(self, record: dict, as_of: str) -> None:
        """The end of a week: each policy's retraining or check, for the next week."""
        if "scheduled" in self.policies:
            self.train("scheduled", as_of)
        if "rareflow" in self.policies:
            record["check"] = self.monitor(as_of)
        if SERVED in self.policies:
            record["shadow_check"] = self.monitor_served(as_of)
        if "hindsight" in self.policies:
            self.train("hindsight", as_of)


def write_results(runs, args, out: Path, minutes: float) -> dict:
    summaries = [seed_summary(r, drift_week=args.drift_week) for r in runs]
    result = overall(summaries, policies_of(runs[0]))
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps({
        "settings": {"seeds": args.seeds, "weeks": args.weeks, "rows_per_day":
                     args.rows_per_day, "drift_week": args.drift_week, "first_week":
                     FIRST_WEEK, "window": WINDOW, "training": FAST,
                     "variant": args.variant, "policies": policies_of(runs[0])},
        "summary": result, "per_seed": summaries, "runs": runs}, indent=1, default=str))
    Path(f"{out}.md").write_text(markdown(runs, summaries, result, args, minutes,
                                          plot_name=f"{out.name}.png", training=FAST))
    plot(runs, Path(f"{out}.png"), drift_week=args.drift_week)
    return result


def render(saved: Path, out: Path) -> None:
    """Write the table and plot again from a saved run (its settings and per-week records)."""
    data = json.loads(saved.read_text())
    settings = data["settings"]
    args = argparse.Namespace(seeds=settings["seeds"], weeks=settings["weeks"],
                              rows_per_day=settings["rows_per_day"],
                              drift_week=settings["drift_week"],
                              variant=settings.get("variant"),
                              policies=settings.get("policies"))
    runs = data["runs"]
    report(write_results(runs, args, out, sum(r["seconds"] for r in runs) / 60))


def report(result: dict) -> None:
    for target in result["targets"]:
        print(f"{'met   ' if target['met'] else 'MISSED'} {target['target']}: "
              f"{target['measured']}")


def arguments() -> argparse.Namespace:
    from tasks.data.demo_tables import STREAM_VARIANTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--weeks", type=int, default=20)
    parser.add_argument("--rows-per-day", type=int, default=1000)
    parser.add_argument("--drift-week", type=int, default=10)
    parser.add_argument("--variant", choices=STREAM_VARIANTS, default=STREAM_VARIANTS[0])
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES),
                        help="static always runs (it trains the shared first model)")
    parser.add_argument("--out", default=str(RESULTS / "replay"))
    parser.add_argument("--work", default=str(WORK), help="scratch folder (emptied per seed)")
    parser.add_argument("--render", help="redraw the table and plot from a saved replay.json")
    args = parser.parse_args()
    args.policies = sorted({"static", *args.policies}, key=POLICIES.index)
    return args


def main() -> None:
    from _key import ensure_signing_key

    ensure_signing_key()  # benchmarks write registries of their own; puts the root on sys.path
    args = arguments()
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
    report(result)


if __name__ == "__main__":
    sys.exit(main())

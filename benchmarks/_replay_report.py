"""What benchmarks/replay.py shows: per-seed summaries, the means and targets over seeds, the
markdown tables and the weekly cost plot (from the per-week records a replay keeps)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

POLICIES = ("static", "scheduled", "rareflow", "shadow", "hindsight")
SERVED = "shadow"  # policy (e): rareflow + shadow challenger, judged on what was served
CHECKS = {"rareflow": "check", SERVED: "shadow_check"}  # the weekly monitoring records
OLD_POLICIES = ["static", "scheduled", "rareflow", "hindsight"]  # replays before policy (e)
FIRST_WEEK = 6
WINDOW = "56d"
RECOVERED = 1.10  # a week's cost within 10 % of the policy's own pre-drift mean
HARM_WEEKS = 4  # a promotion is judged on the weeks it serves first


def policies_of(run: dict) -> list[str]:
    return run.get("policies", OLD_POLICIES)


def _first(weeks: list[int], after: int) -> int | None:
    later = [w for w in weeks if w >= after]
    return min(later) if later else None


def promotions_of(run: dict, policy: str) -> list[dict] | None:
    """The policy's champion changes, each with the cost of the ``HARM_WEEKS`` weeks after it
    (as served; fewer at the stream's end: not ``complete``) against what the champion it
    replaced would have cost on the same rows: ``harmful`` when they cost more. None for a
    replay that did not record them."""
    if "promotion_records" not in run:
        return None
    return [{**p, "complete": p["weeks"] == HARM_WEEKS, "harmful": p["served"] > p["previous"]}
            for p in run["promotion_records"].get(policy, [])]


def alarm_summary(run: dict, policy: str, *, drift_week: int) -> dict:
    """A monitored policy's alarms (realised and estimated), false alarms and, for the shadow
    policy, its promotions on shadow evidence (as-of weeks)."""
    checks = [(w["week"] + 1, w[CHECKS[policy]]) for w in run["weeks"]
              if CHECKS[policy] in w]
    alarms = [k for k, c in checks if c["status"] == "drift"]
    estimated = [k for k, c in checks if c["estimate"] == "estimated-drop"]
    alarm, early = _first(alarms, drift_week), _first(estimated, drift_week)
    return {
        "alarm_weeks": alarms, "estimate_weeks": estimated,
        "shadow_promotions": [k for k, c in checks if c.get("shadow_action") == "promote"],
        "weeks_to_alarm": None if alarm is None else alarm - drift_week,
        "weeks_to_estimate": None if early is None else early - drift_week,
        "false_alarms_before_drift": sum(k <= drift_week for k in alarms),
        "estimate_false_alarms_before_drift": sum(k <= drift_week for k in estimated),
        "estimate_leads_by_1_week": (early is not None and alarm is not None
                                     and early <= alarm - 1),
    }


def seed_summary(run: dict, *, drift_week: int) -> dict:
    """Per policy: total and post-drift cost, retrainings, promotions (harmful ones apart),
    recovery; the monitored policies' alarms."""
    from schemas.config import Costs

    weeks, fn_cost = run["weeks"], Costs().fn_cost  # the replay trains with the default costs
    out = {}
    for policy in policies_of(run):
        cost = np.array([w[policy]["cost"] for w in weeks])
        pos = np.array([w[policy]["positives"] for w in weeks])
        norm = np.array([w[policy]["normalised_cost"] for w in weeks])
        week = np.array([w["week"] for w in weeks])
        pre, post = week < drift_week, week >= drift_week
        recovered = [int(k) for k, n in zip(week[post], norm[post], strict=True)
                     if n <= RECOVERED * norm[pre].mean()]
        promotions = promotions_of(run, policy)
        out[policy] = {
            "normalised_cost": float(cost.sum() / (fn_cost * pos.sum())),
            "post_drift_cost": float(cost[post].sum()),
            "pre_drift_normalised_cost": float(norm[pre].mean()),
            **run["counts"][policy],
            "harmful_promotions": (None if promotions is None
                                   else sum(p["harmful"] for p in promotions)),
            "weeks_to_recovery": (recovered[0] - drift_week) if recovered else None,
        }
        if promotions is not None:  # champion changes as served (shadow's come from checks)
            out[policy]["promotions"] = len(promotions)
            out[policy]["short_promotions"] = sum(not p["complete"] for p in promotions)
        if policy in CHECKS:
            out[policy].update(alarm_summary(run, policy, drift_week=drift_week))
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


MEANS = ("normalised_cost", "post_drift_cost", "pre_drift_normalised_cost", "retrainings",
         "promotions", "harmful_promotions", "weeks_to_recovery")


def overall(summaries: list[dict], policies: list[str]) -> dict:
    """Means over seeds, and the issue's targets checked on them (those whose policies ran)."""
    table = {p: {key: _mean([s[p][key] for s in summaries]) for key in MEANS}
             for p in policies}
    for p in (p for p in CHECKS if p in policies):
        rows = [s[p] for s in summaries]
        table[p].update({
            "weeks_to_alarm": _mean([r["weeks_to_alarm"] for r in rows]),
            "weeks_to_estimate": _mean([r["weeks_to_estimate"] for r in rows]),
            "false_alarms_before_drift": int(sum(r["false_alarms_before_drift"] for r in rows)),
            "seeds_without_alarm": sum(r["weeks_to_alarm"] is None for r in rows),
            "estimate_leads": sum(r["estimate_leads_by_1_week"] for r in rows),
        })
    return {"table": table, "targets": targets(summaries, table, policies)}


def targets(summaries: list[dict], table: dict, policies: list[str]) -> list[dict]:
    out = []

    def target(name, measured, met):
        out.append({"target": name, "measured": measured, "met": bool(met)})

    def total(p):
        return table[p]["normalised_cost"]

    if {"static", "rareflow"} <= set(policies):
        ratio = (sum(s["rareflow"]["post_drift_cost"] for s in summaries)
                 / sum(s["static"]["post_drift_cost"] for s in summaries))
        target("rareflow's post-drift cost <= 0.7 x static's", f"{ratio:.3f} x", ratio <= 0.7)
    if {"scheduled", "rareflow"} <= set(policies):
        ratio = total("rareflow") / total("scheduled")
        target("rareflow's total cost within 5 % of scheduled's", f"{ratio:.3f} x",
               ratio <= 1.05)
        ratio = table["rareflow"]["retrainings"] / table["scheduled"]["retrainings"]
        target("rareflow retrains at most half as often as scheduled", f"{ratio:.3f} x",
               ratio <= 0.5)
    for p in (p for p in CHECKS if p in policies):
        false = table[p]["false_alarms_before_drift"]
        target(f"{p}: no false alarm before the drift (all seeds)", f"{false} false alarms",
               false == 0)
    if "rareflow" in policies:
        leads = table["rareflow"]["estimate_leads"]
        target("the estimate flags the drift >= 1 week before matured labels on >= 3 of the "
               "seeds", f"{leads} of {len(summaries)} seeds", leads >= 3)
    if SERVED in policies:
        harmful = [s[SERVED]["harmful_promotions"] or 0 for s in summaries]
        short = sum(s[SERVED].get("short_promotions") or 0 for s in summaries)
        target("shadow: no harmful promotion on any seed",
               f"{sum(harmful)} harmful, on {sum(h > 0 for h in harmful)} seeds ({short} of "
               f"the promotions judged on fewer than {HARM_WEEKS} weeks, at the stream's end)",
               sum(harmful) == 0)
        if "rareflow" in policies:
            ratio = total(SERVED) / total("rareflow")
            target("shadow's total cost <= rareflow's", f"{ratio:.3f} x", ratio <= 1.0)
    return out


def weekly_means(runs: list[dict]) -> pd.DataFrame:
    """Mean normalised cost of each week's rows per policy, over the seeds."""
    policies = policies_of(runs[0])
    rows = [{"week": w["week"], "policy": p, "normalised_cost": w[p]["normalised_cost"]}
            for run in runs for w in run["weeks"] for p in policies]
    return (pd.DataFrame(rows).groupby(["week", "policy"])["normalised_cost"].mean()
            .unstack()[policies])


def _fmt(value, spec=".3f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(runs: list[dict], summaries: list[dict], result: dict, args, minutes: float,
             *, plot_name: str, training: dict) -> str:
    t, policies = result["table"], policies_of(runs[0])
    variant = getattr(args, "variant", None) or "concept"
    lines = [
        f"# Replay ({variant}): retraining policies on a stream with late labels and a new "
        "fraud pattern", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores in {minutes:.0f} "
        f"min. Command: `python -m uv run python benchmarks/replay.py {command_options(args)}"
        f"--seeds {' '.join(map(str, args.seeds))} --weeks "
        f"{args.weeks} --drift-week {args.drift_week}`. Stream: {args.weeks} weeks x "
        f"{args.rows_per_day} rows a day, ~1.5 % positives, labels 14-28 days late, a fraud "
        f"ring from week {args.drift_week} ({variant}); first model as of week {FIRST_WEEK}; "
        f"window {WINDOW}; fixed strategy {training['strategy']} with 3 folds; costs fn 10, "
        "fp 1. A week's normalised cost: its rows decided by the champion serving that week, "
        "cost / cost of flagging nothing. Means over the seeds.", "",
        "| policy | normalised cost, all weeks | before the drift | post-drift cost vs static "
        "| retrainings | promotions | harmful promotions | weeks drift → alarm | weeks drift → "
        "recovery | false alarms before the drift |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    static_post = t["static"]["post_drift_cost"]
    for p in policies:
        row = t[p]
        alarm = _fmt(row.get("weeks_to_alarm"), ".1f") if p in CHECKS else "-"
        false = str(row["false_alarms_before_drift"]) if p in CHECKS else "-"
        lines.append(
            f"| {p} | {_fmt(row['normalised_cost'])} | {_fmt(row['pre_drift_normalised_cost'])} "
            f"| {row['post_drift_cost'] / static_post:.3f} | {row['retrainings']:.1f} | "
            f"{row['promotions']:.1f} | {_fmt(row['harmful_promotions'], '.1f')} | {alarm} | "
            f"{_fmt(row['weeks_to_recovery'], '.1f')} | {false} |")
    lines += ["", "Recovery: the first week from the drift on whose rows the policy's cost is "
              f"within {RECOVERED - 1:.0%} of its own mean before the drift (means over the seeds "
              "that recover; '-' none). A promotion is harmful when the "
              f"{HARM_WEEKS} weeks after it cost more, as served, than the champion it "
              "replaced would have on the same rows (at the stream's end, the weeks left: "
              "see the promotions table).", "", "## Targets", "",
              "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {x['target']} | {x['measured']} | {'yes' if x['met'] else 'NO'} |"
              for x in result["targets"]]
    lines += per_seed_lines(runs, summaries, policies)
    lines += promotion_lines(runs, policies)
    weekly = weekly_means(runs)
    lines += ["", "## Weekly normalised cost (mean over seeds)", "",
              "| week | " + " | ".join(policies) + " |", "|---|" + "---:|" * len(policies)]
    lines += [f"| {week}{' (drift)' if week == args.drift_week else ''} | "
              + " | ".join(f"{v:.3f}" for v in row) + " |"
              for week, row in zip(weekly.index, weekly.to_numpy(), strict=True)]
    lines += ["", f"![weekly cost per policy]({plot_name})", ""]
    return "\n".join(lines)


def command_options(args) -> str:
    """``--variant``/``--policies`` as the run was given them (a replay before them: none)."""
    given = [f"--{k} {v if isinstance(v, str) else ' '.join(v)}"
             for k in ("variant", "policies") if (v := getattr(args, k, None))]
    return "".join(f"{g} " for g in given)


def per_seed_lines(runs, summaries, policies) -> list[str]:
    monitored = [p for p in CHECKS if p in policies]
    head = (["seed", *policies]
            + [f"{p} {what} (as-of week)" for p in monitored
               for what in ("alarms", "estimated drops")]
            + (["shadow promotions (as-of week)"] if SERVED in policies else []))
    lines = ["", "## Per seed", "", "| " + " | ".join(head) + " |",
             "|---|" + "---:|" * len(policies) + "---|" * (len(head) - 1 - len(policies))]
    for s, run in zip(summaries, runs, strict=True):
        cells = [str(run["seed"]), *(_fmt(s[p]["normalised_cost"]) for p in policies)]
        cells += [str(s[p][k]) for p in monitored for k in ("alarm_weeks", "estimate_weeks")]
        if SERVED in policies:
            cells.append(str(s[SERVED]["shadow_promotions"]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def promotion_lines(runs, policies) -> list[str]:
    lines = ["", "## Promotions", "",
             f"Each champion change: the week it first served, and the cost of the "
             f"{HARM_WEEKS} weeks from then (fewer at the stream's end), as served, against "
             "the champion it replaced on the same rows.", "",
             "| seed | policy | first week served | from → to | weeks | cost served | cost of "
             "the previous champion | harmful |", "|---|---|---:|---|---:|---:|---:|---|"]
    for run in runs:
        for p in policies:
            for x in promotions_of(run, p) or []:
                lines.append(f"| {run['seed']} | {p} | {x['week']} | {x['from']} → {x['to']} | "
                             f"{x['weeks']} | {x['served']:.0f} | {x['previous']:.0f} | "
                             f"{'yes' if x['harmful'] else 'no'} |")
    return lines


def plot(runs: list[dict], path: Path, *, drift_week: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weekly = weekly_means(runs)
    styles = {"static": "-", "scheduled": "--", "rareflow": "-", SERVED: "-.",
              "hindsight": ":"}
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for policy in weekly.columns:  # static and rareflow can coincide: static drawn wider
        ax.plot(weekly.index, weekly[policy], styles[policy], marker="o", markersize=3,
                label=policy, linewidth=2.5 if policy == "static" else 1.5)
    ax.axvline(drift_week - 0.5, color="grey", linestyle="--", linewidth=1)
    low, high = ax.get_ylim()
    ax.text(drift_week - 0.4, low + 0.02 * (high - low), "fraud ring", color="grey",
            va="bottom", fontsize=8)
    ax.set_xlabel("week")
    ax.set_ylabel("normalised cost of the week's rows")
    ax.set_title(f"Weekly cost per retraining policy (mean of {len(runs)} seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

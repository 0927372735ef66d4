"""Money costs with a review capacity, end to end: the gates judge what the capacity allows,
the champion comparison caps both models the same way, the command line sets every gate,
and versions are shown with the name of their cost column."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from schemas.config import Gates
from tasks.decision.costs import DecisionCosts
from tasks.decision.threshold import alert_budget, capped_decisions
from tasks.judge.gates import Candidate, Champion, evaluate_gates

POINT = Gates(absolute_gates="point", bootstrap_samples=500)


def money_metrics(recall: float, rows: int = 4000, positives: int = 160) -> dict:
    return {"rows": rows, "positives": positives, "prevalence": positives / rows,
            "pr_auc": 0.4, "at_threshold": {"recall": recall, "normalised_cost": 0.6}}


@pytest.mark.parametrize("rate, recall, passed", [
    (None, 0.2, False),   # no capacity: recall 0.2 < 0.3
    (0.01, 0.2, True),    # 40 alerts for 160 positives: at best 0.25; 0.2 >= 0.3 x 0.25
    (0.01, 0.05, False),  # 0.05 < 0.075: a fifth of what the capacity allows
    (0.5, 0.2, False),    # capacity above prevalence: the fixed floor again
])
def test_min_recall_is_judged_within_the_review_capacity(rate, recall, passed):
    """Check that with an alert cap below the prevalence min_recall is a share of the best
    recall the cap allows (a fixed 0.3 cannot be reached by any model), and stays the fixed
    floor otherwise."""
    costs = DecisionCosts(fn_cost=10, fp_cost=1, max_alert_rate=rate)
    verdict = evaluate_gates(Candidate(money_metrics(recall), costs), POINT).as_dict()
    gate = next(g for g in verdict["gates"] if g["gate"] == "min_recall")
    assert gate["passed"] is passed
    expected = 0.3 * 0.25 if rate == 0.01 else 0.3
    assert gate["limit"] == pytest.approx(expected)
    assert ("best recall within max_alert_rate" in gate["detail"]) is (rate == 0.01)


def test_capped_decisions_keep_the_highest_scores():
    """Check that a cap keeps the flagged rows of highest score, ties in row order, and
    leaves decisions within the budget as they are."""
    decisions = np.array([1, 1, 0, 1, 1])
    scores = np.array([0.6, 0.9, 0.95, 0.6, 0.7])
    assert capped_decisions(decisions, scores, 2).tolist() == [0, 1, 0, 0, 1]
    assert capped_decisions(decisions, scores, 3).tolist() == [1, 1, 0, 0, 1]
    assert capped_decisions(decisions, scores, 9).tolist() == [1, 1, 0, 1, 1]
    assert alert_budget(1000, 0.004) == 4 and alert_budget(1000, None) is None


def test_champion_comparison_caps_both_models_alike():
    """Check that the champion comparison judges the champion within the same alert cap as
    the candidate: a champion flagging three times the cap is judged on its top-scored
    alerts only (in money), and the verdict says what the cap changed."""
    rng = np.random.default_rng(0)
    n, pos = 4000, 160
    y = np.zeros(n, dtype=int)
    y[:pos] = 1
    amount = np.where(y == 1, rng.uniform(10, 1000, n), 0.0)
    cand_scores = np.where(y == 1, rng.uniform(0.3, 1, n), rng.uniform(0, 0.6, n))
    champ_scores = cand_scores + rng.normal(0, 0.05, n)
    budget = alert_budget(n, 0.01)
    cand = capped_decisions(cand_scores >= 0.5, cand_scores, budget)
    champ = champ_scores >= np.sort(champ_scores)[-3 * budget]  # three times the cap
    champion = Champion("v0001", champ, scores=champ_scores)

    def judged(max_alert_rate=None):
        costs = DecisionCosts(fn_cost=10, fp_cost=50, fn_costs=amount,
                              max_alert_rate=max_alert_rate)
        candidate = Candidate(money_metrics(0.2), costs, y=y, scores=cand_scores, decisions=cand)
        return evaluate_gates(candidate, POINT, champion=champion).as_dict()

    capped = judged(max_alert_rate=0.01)
    cap = capped["comparison"]["alert_cap"]
    assert cap == {"max_alert_rate": 0.01, "alerts": budget, "candidate_flagged": budget,
                   "champion_flagged": 3 * budget}
    row = next(g for g in capped["gates"] if g["gate"] == "champion_cost")
    assert f"both at most {budget} alerts" in row["detail"]
    uncapped = judged()["comparison"]
    assert uncapped["alert_cap"] is None
    # uncapped, the champion's extra alerts catch more money than the cap allows anyone to
    assert uncapped["cost_diff"] > capped["comparison"]["cost_diff"]
    assert uncapped["recall_drop"] > capped["comparison"]["recall_drop"]


def test_versions_show_the_cost_column_by_name():
    """Check that `models compare` and the model card name the column each missed positive
    costs (funded_amnt / 500), not the unused fixed fn_cost."""
    from tasks.registry.compare import version_column
    from tasks.registry.model_card import cost_text

    costs = {"fn_cost": 10.0, "fp_cost": 500.0, "fn_cost_column": "funded_amnt",
             "max_alert_rate": 0.01, "min_recall": None}
    assert version_column({"version": "v0001", "costs": costs},
                          champion=None)["costs (fn / fp)"] == "funded_amnt / 500"
    fixed = {**costs, "fn_cost_column": None}
    assert version_column({"version": "v0001", "costs": fixed},
                          champion=None)["costs (fn / fp)"] == "10 / 500"
    assert cost_text(costs).startswith("the row's `funded_amnt`·FN + 500·FP")


def test_every_gate_has_a_train_flag(monkeypatch, tmp_path):
    """Check that `rareflow train` has a `--<field>-gate` flag for every field of Gates, and
    that the flags set the config's gates (the others keep their defaults)."""
    import flows.cli as cli
    from flows.config_reference import command_flags

    flags = command_flags("train")
    for name in Gates.model_fields:
        assert flags[f"gates__{name}"] == f"`--{name.replace('_', '-')}-gate`"
    seen = {}
    monkeypatch.setattr(cli, "run_training", lambda config, server=None: seen.setdefault(
        "config", config) and 0)
    monkeypatch.setattr(cli, "FlowServer", lambda: None)
    run = CliRunner().invoke(cli.app, [
        "train", "--data", "x.csv", "--label", "y", "--min-recall-gate", "0.05",
        "--max-normalised-cost-gate", "0.99", "--absolute-gates-gate", "point",
        "--min-recall", "0.2", "--registry", str(tmp_path)])
    assert run.exit_code == 0, run.output
    gates, costs = seen["config"].gates, seen["config"].costs
    assert (gates.min_recall, gates.max_normalised_cost, gates.absolute_gates) == (
        0.05, 0.99, "point")
    assert gates.cost_margin == Gates().cost_margin and costs.min_recall == 0.2


def test_recall_is_judged_in_money_with_per_row_costs():
    """Check that with each positive's own cost min_recall judges the share of the money
    caught (the model was chosen in money): flagging the few dear frauds passes although it
    catches a fifth of them by count, and the capacity's best reach is in money too."""
    n, pos = 4000, 100
    y = np.zeros(n, dtype=int)
    y[:pos] = 1
    amount = np.where(np.arange(n) < 20, 1000.0, np.where(y == 1, 10.0, 0.0))  # 20 dear frauds
    scores = np.where(np.arange(n) < 20, 0.9, 0.1)
    decisions = scores >= 0.5
    metrics = money_metrics(0.2, rows=n, positives=pos)

    def candidate(max_alert_rate=None):
        costs = DecisionCosts(fn_cost=10, fp_cost=1, fn_costs=amount,
                              max_alert_rate=max_alert_rate)
        return Candidate(metrics, costs, y=y, scores=scores, decisions=decisions)

    gate = next(g for g in evaluate_gates(candidate(), POINT).gates if g.gate == "min_recall")
    gate = gate.as_dict()
    money = 20_000 / (20_000 + 80 * 10)
    assert gate["passed"] and gate["point"] == pytest.approx(money)
    assert "recall in money" in gate["detail"]
    bound = evaluate_gates(candidate(), Gates(bootstrap_samples=500))
    assert bound.bounds["recall"] == pytest.approx(money)
    capped = evaluate_gates(candidate(max_alert_rate=0.0025), POINT)  # 10 alerts
    gate = next(g for g in capped.gates if g.gate == "min_recall")
    assert gate.limit == pytest.approx(0.3 * 10_000 / 20_800)  # the 10 dearest frauds

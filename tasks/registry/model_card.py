"""The model card of a version (``model_card.md``): what it is for, what it learnt from, how it
decides, how good it is, what it passed, and how to reproduce and load it.

Built from the version's metadata only (``metadata.json`` holds every figure), with the plots
linked by their file names in the version folder.
"""

from __future__ import annotations

import html
import re

from tasks.judge.metrics import metric_table
from tasks.judge.plots import CAPTIONS

LEADERBOARD_ROWS = 12


def _fmt4(value) -> str:
    return "" if value is None else f"{value:.4g}"


def _cell(value) -> str:
    """A table cell: names from data are escaped, so they never become HTML or a new cell."""
    if isinstance(value, float):
        return _fmt4(value)
    return "" if value is None else html.escape(str(value), quote=False).replace("|", "\\|")


def _code(value) -> str:
    """``value`` as an inline code span, whatever backticks it holds (HTML in a code span is
    shown as text, never rendered)."""
    text = " ".join(str(value).splitlines())
    fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table; numbers right-aligned, '|' inside a cell escaped."""
    align = ["---:" if rows and isinstance(rows[0][i], int | float) and i else "---"
             for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def card_intro(meta: dict) -> list[str]:
    schema, config = meta["schema"], meta["config"]
    return [
        f"# Model card: {config['name']} {{version}}",
        "",
        f"Trained {meta['trained_at']} by rareflow {meta.get('rareflow_version', '?')} on "
        f"{_code(config['data'])} ({meta['fingerprints']['rows']} rows). It predicts whether "
        f"{_code(schema['label'])} is {_code(schema['positive'])} (the rare, positive class) "
        f"rather than {_code(schema['negative'])}.",
    ]


def card_use(meta: dict) -> list[str]:
    costs = meta["config"]["costs"]
    return [
        "## Intended use and limits",
        f"- Intended use: flag rows of the same kind as the training table for review, at "
        f"the decision threshold that minimises {cost_text(costs)} (FN: a missed positive, "
        "FP: a false alarm). Judge it by minority recall, PR AUC and expected cost, never "
        "plain accuracy.",
        "- Not for: other populations or sources than the training table's; a different "
        "positive rate or different costs (the threshold depends on both: retrain); "
        "decisions about people without human review.",
        "- Inputs are checked against the frozen schema below; categories unseen in training "
        "are scored as 'unknown'. Monitor recall on labelled batches (`rareflow monitor`).",
        "- " + ("`predict_proba` is calibrated (sigmoid map fitted on out-of-fold scores): it "
                "can be read as a probability." if meta.get("calibrated") else
                "`predict_proba` is a model score in [0, 1], not calibrated: rank and decide "
                "with it, do not read it as a probability."),
    ]


def card_window(lin: dict) -> list[str]:
    """Which rows of a data source the version was trained on (nothing for a plain file)."""
    if not lin.get("as_of") or (lin.get("kind") == "file" and not lin.get("time_column")):
        return []
    span = f"the last {lin['window']}" if lin.get("window") else "every row"
    since = (f", from {lin['since']} on (the rows since a recall drift)"
             if lin.get("since") else "")
    return [f"Rows: {span} of {_code(lin['source'])} up to {lin['as_of']}{since}, labels matured "
            "by then.", ""]


def card_sample(lin: dict) -> list[str]:
    """A negative sample's rate and what it kept (nothing without one)."""
    sample = lin.get("sample")
    if not sample:
        return []
    before, after = sample["rows_before"], sample["rows_after"]
    return [f"Negative sample (`sample: {sample['setting']}`): every positive and "
            f"{sample['rate']:.4g} of the negatives (seed {sample['seed']}), "
            f"{after['negative']:,} of {before['negative']:,} negative rows kept and "
            f"{after['positive']:,} positives. Each kept negative weighs "
            f"{sample['negative_weight']:.4g}: metrics, costs and gates are in the "
            "population's units, and scores are corrected back to its prevalence.", ""]


def card_data(meta: dict) -> list[str]:
    fp = meta["fingerprints"]
    train_neg = fp["train_rows"] - fp["train_positives"]
    test_neg = fp["test_rows"] - fp["test_positives"]
    prevalence = fp["train_positives"] / fp["train_rows"] if fp["train_rows"] else float("nan")
    kept = " kept by the negative sample" if (meta.get("lineage") or {}).get("sample") else ""
    lines = ["## Training data", "",
             f"Training prevalence {prevalence:.4%} (positives / rows of the training part"
             f"{kept}).",
             "", *card_window(meta.get("lineage") or {}),
             *card_sample(meta.get("lineage") or {})]
    lines += _table(["part", "rows", "positive rows", "negative rows"], [
        ["train", fp["train_rows"], fp["train_positives"], train_neg],
        ["test", fp["test_rows"], fp["test_positives"], test_neg]])
    lines += ["", f"Exact duplicate rows found in both parts: "
              f"{fp.get('duplicate_rows_across_parts', 0)}.", "", "### Features", ""]
    rows = [[f["name"], f["kind"], f["dtype"], "yes" if f.get("nullable") else "no",
             "" if f.get("categories") is None else len(f["categories"])]
            for f in meta["schema"]["features"]]
    lines += _table(["feature", "kind", "dtype", "may be missing", "categories"], rows)
    return lines


def card_how(meta: dict) -> list[str]:
    costs, cal, strategy = meta["config"]["costs"], meta.get("calibration", {}), meta["strategy"]
    calibrated_text = ("a calibrated probability (sigmoid map)" if meta.get("calibrated")
                       else "a model score in [0, 1], not calibrated")
    return [
        "## How it decides",
        f"- Strategy: `{strategy['name']}` chosen by {meta['config']['split']['n_folds']}-fold "
        f"stratified CV on the training part (CV normalised cost {strategy['cv_cost']:.4f} "
        f"± {strategy['cv_cost_std']:.4f}).",
        f"- Final model: {strategy.get('final_model', 'refitted on the training part')}.",
        f"- Judged on {meta.get('evidence', {}).get('description', 'the test part')}.",
        *card_search(strategy.get("search")),
        f"- Decision threshold **{meta['threshold']:.4f}**, chosen to minimise "
        f"{cost_text(costs)} on out-of-fold training scores; test rows never influenced it.",
        f"- The score is {calibrated_text}: test Brier {cal.get('brier', float('nan')):.4f}, "
        f"against {cal.get('brier_of_prevalence', float('nan')):.4f} for always predicting "
        "the prevalence.",
    ]


def miss_cost(costs: dict) -> str:
    """What a missed positive costs, as a config's ``costs`` section says: the name of the
    column holding each row's cost (``funded_amnt``), else the fixed ``fn_cost``."""
    return costs.get("fn_cost_column") or f"{costs['fn_cost']:g}"


def cost_text(costs: dict) -> str:
    """The costs a config's ``costs`` section describes, in words."""
    fn = (f"the row's {_code(miss_cost(costs))}" if costs.get("fn_cost_column")
          else miss_cost(costs))
    text = f"{fn}·FN + {costs['fp_cost']:g}·FP"
    if costs.get("max_alert_rate") is not None:
        text += f" with at most {costs['max_alert_rate'] * 1000:g} alerts per 1,000 rows"
    if costs.get("min_recall") is not None:
        text += f" and recall at least {costs['min_recall']:g}"
    return text


def card_search(search: dict | None) -> list[str]:
    if not search:
        return []
    plan = search["plan"]
    lines = [f"- Search: {search['fits']} fold fits, planned before any fit "
             + (f"(every candidate on all {plan['folds']} folds)." if not plan["screen_folds"]
                else f"(racing: every candidate on {plan['screen_folds']} folds, then at most "
                     f"{plan['finalists']} on all {plan['folds']}); {len(search['dropped'])} "
                     "candidates dropped after screening.")]
    if search.get("stopped_early"):
        lines.append(f"- **The search was cut short by {search['stopped_early']}**: some "
                     "candidates were not finished, so another run may choose differently.")
    return lines


def card_leaderboard(meta: dict) -> list[str]:
    board = meta.get("leaderboard") or []
    lines = ["## Leaderboard", "", "Candidates by cross-validated normalised cost (lower is "
             "better; each fold judged at a threshold chosen on the other folds).", ""]
    rows = [[r.get("candidate"), r.get("family"), r.get("cv_cost"), r.get("cv_cost_std"),
             r.get("pr_auc"), r.get("threshold"), r.get("status")]
            for r in board[:LEADERBOARD_ROWS]]
    if rows:
        lines += _table(["candidate", "family", "CV cost", "± std", "PR AUC", "threshold",
                         "status"], rows)
    if len(board) > LEADERBOARD_ROWS:
        lines += ["", f"… and {len(board) - LEADERBOARD_ROWS} more in `metadata.json`."]
    return lines


def card_performance(meta: dict) -> list[str]:
    m = meta["metrics"]
    nested = meta.get("evidence", {}).get("kind") == "nested_cv"
    title = "Out-of-fold performance (nested cross-validation)" if nested else \
        "Test-set performance"
    lines = [f"## {title}", "", "| metric | chosen threshold | threshold 0.5 |",
             "|---|---:|---:|"]
    for row in metric_table(m).itertuples():
        lines.append(f"| {row.metric} | {row.chosen:.4g} | {row.at_0_5:.4g} |")
    lines += ["", f"Confusion at the chosen threshold: {m['at_threshold']['confusion_matrix']}."]
    return lines


def card_calibration(meta: dict) -> list[str]:
    cal, strategy = meta.get("calibration") or {}, meta["strategy"]
    lines = ["## Calibration", ""]
    if strategy.get("oof_brier") is not None:
        lines.append(f"- Out-of-fold Brier score of the raw scores: {strategy['oof_brier']:.5f}")
    if strategy.get("oof_brier_calibrated") is not None:
        lines.append(f"- Cross-validated Brier score after sigmoid calibration: "
                     f"{strategy['oof_brier_calibrated']:.5f} ("
                     + ("applied" if meta.get("calibrated") else "not applied") + ")")
    if cal:
        lines.append(f"- Test part: Brier {cal['brier']:.5f} (always predicting the prevalence "
                     f"{cal['prevalence']:.4f}: {cal['brier_of_prevalence']:.5f}); mean score "
                     f"{cal['mean_score']:.4f}.")
        lines += ["", "Reliability on the test part (equal-count bins):", ""]
        lines += _table(["bin", "mean score", "observed rate"], [
            [i, float(p["mean_score"]), float(p["observed_rate"])]
            for i, p in enumerate(cal.get("reliability", []), start=1)])
    return lines


def card_gates(verdict: dict) -> list[str]:
    lines = [f"## Gates: {verdict.get('status', '?')}", "",
             "| gate | passed | value | limit | detail |", "|---|---|---:|---:|---|"]
    for g in verdict.get("gates", []):
        lines.append(f"| {g['gate']} | {'✅ yes' if g['passed'] else '❌ NO'} "
                     f"| {_fmt4(g['value'])} | {_fmt4(g['limit'])} | {g['detail']} |")
    return lines


def card_plots(meta: dict) -> list[str]:
    plots = meta.get("plots") or []
    lines = ["## Plots", ""]
    for name in plots:
        lines += [f"![{CAPTIONS.get(name, name)}]({name})", ""]
    return lines + ([] if plots else ["No plot could be drawn for this version."])


def card_reproduce(meta: dict) -> list[str]:
    fp, libs = meta["fingerprints"], meta.get("libraries") or {}
    lines = ["## Reproducibility", "",
             f"Split fingerprints (sha256 of the rows of each part): train `{fp['train']}`, "
             f"test `{fp['test']}`, whole table `{fp['data']}`; seed {meta['config']['seed']}.",
             "", "Library versions:", ""]
    lines += _table(["library", "version"], [[k, v] for k, v in libs.items()])
    lines += ["", "Load it from Python (a scikit-learn classifier deciding at the threshold):",
              "", "```python", "from tasks.serving.registered_model import load_model",
              f"model = load_model(\"<registry>\", \"{meta['config']['name']}\", "
              "version=\"{version}\")", "model.predict(batch)  # labels, at the cost threshold",
              "```"]
    return lines


def model_card(meta: dict) -> str:
    """A model card a person can read, from a version's metadata (``{version}`` is filled
    in by the registry)."""
    sections = [card_intro(meta), card_use(meta), card_data(meta), card_how(meta),
                card_performance(meta), card_calibration(meta), card_leaderboard(meta),
                card_gates(meta.get("verdict", {})), card_plots(meta), card_reproduce(meta)]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"

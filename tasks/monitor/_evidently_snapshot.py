"""Shortcuts through evidently's undocumented snapshot and report layouts, and why.

* :func:`drift_summary`: reads evidently's snapshot dictionary, whose layout is not documented.
* :func:`check_report_html`: checks the data script of a saved HTML report.

Each shortcut here names the versions it was checked against (``CHECKED_AGAINST``);
``tests/unit/test_library_internals.py`` holds its upgrade test, which fails loudly when the
library stops doing what it relies on. After a dependency upgrade: run those tests,
re-measure if one fails, and update ``CHECKED_AGAINST``.
"""

from __future__ import annotations

CHECKED_AGAINST = {"evidently": "0.7"}


# -- evidently: the snapshot's dictionary ----------------------------------------------------
def drift_summary(snapshot_dict: dict) -> dict:
    """Drifted columns and their scores from a data-drift snapshot's ``dict()``.

    Why: evidently 0.7 offers the per-column drift scores and test outcomes only inside the
    snapshot's dictionary, whose layout is not a documented interface.

    Relies on: ``metrics[*].config.type`` ending in ``DriftedColumnsCount`` (value ``share``)
    or ``ValueDrift`` (config ``column``, ``method``, ``threshold``; value = the score), and
    ``tests[*].metric_config.metric_id`` / ``status`` (evidently 0.7).

    Raises:
        RuntimeError: the snapshot holds no metric of the layout above (evidently changed).
    """
    columns, drifted, share = {}, [], None
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        kind = config.get("type", "")
        if kind.endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
        elif kind.endswith("ValueDrift"):
            columns[metric["id"]] = {"column": config["column"], "method": config.get("method"),
                                     "threshold": config.get("threshold"),
                                     "score": metric["value"], "drifted": False}
    if share is None and not columns:
        raise RuntimeError("the evidently snapshot has no DriftedColumnsCount or ValueDrift "
                           "metric in the layout tasks/monitor/_evidently_snapshot.py expects; "
                           "evidently's snapshot format changed: update drift_summary")
    for test in snapshot_dict.get("tests", []):
        metric_id = test.get("metric_config", {}).get("metric_id")
        if metric_id in columns:
            columns[metric_id]["drifted"] = test.get("status") == "FAIL"
            if columns[metric_id]["drifted"]:
                drifted.append(columns[metric_id]["column"])
    return {"drifted_columns": drifted, "drift_share": share,
            "columns": sorted(columns.values(), key=lambda c: c["column"])}


# -- evidently: the data script of a saved HTML report ------------------------------------------
REPORT_DATA_MARKER = "\n    var additional_graphs_"


def check_report_html(text: str) -> None:
    """Refuse a saved evidently HTML report whose inline data script could be closed early.

    Why: evidently 0.7 writes the report's data with ``json.dumps`` straight into a
    ``<script>`` element (``legacy/utils/dashboard.py::file_html_template``), so a column name
    or category holding ``</script>`` would end the script and run its own. rareflow escapes
    names and values before evidently sees them (:func:`tasks.monitor.reports.html_safe_frame`);
    this
    checks the result.

    Relies on: the data block ``<script>\\n    var <id> = {...};\\n    var
    additional_graphs_<id> = {...};\\n</script>`` appearing once.

    Raises:
        RuntimeError: the data block is not found (evidently changed its template), or it
            holds ``</script`` or ``<!--`` (an unescaped value reached it).
    """
    marker = text.find(REPORT_DATA_MARKER)
    start = text.rfind("<script>", 0, marker)
    end = text.find("\n</script>", marker)
    if marker < 0 or start < 0 or end < 0:
        raise RuntimeError("the evidently HTML report has no data script in the layout "
                           "tasks/monitor/_evidently_snapshot.py expects; evidently's template "
                           "changed: update check_report_html")
    block = text[start + len("<script>"):end].lower()
    if "</script" in block or "<!--" in block:
        raise RuntimeError("an evidently HTML report holds an unescaped '</script' or '<!--' "
                           "in its data script; the report was not kept")

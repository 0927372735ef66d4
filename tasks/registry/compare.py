"""Versions side by side (``rareflow models compare``): what each was trained on and how,
its threshold, test metrics and gates, from the versions' metadata."""

from __future__ import annotations

import pandas as pd

from schemas.errors import RegistryError
from tasks.judge.metrics import HEADLINE
from tasks.registry.model_card import miss_cost

GATE_MARK = {True: "pass", False: "FAIL"}


def _get(meta: dict, *keys, default=None):
    for key in keys:
        if not isinstance(meta, dict) or key not in meta:
            return default
        meta = meta[key]
    return meta


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def version_column(meta: dict, *, champion: str | None) -> dict[str, str]:
    """One version's figures by row label."""
    at = _get(meta, "metrics", "at_threshold", default={}) or {}
    fp = meta.get("fingerprints") or {}
    rows = {
        "champion": "*" if meta.get("version") == champion else "",
        "status": _get(meta, "verdict", "status"),
        "registered_at": meta.get("registered_at"),
        "data": _get(meta, "config", "data"),
        "rows (train / test)": f"{fp.get('train_rows', '?')} / {fp.get('test_rows', '?')}",
        "positives (train / test)": f"{fp.get('train_positives', '?')} / "
                                    f"{fp.get('test_positives', '?')}",
        "costs (fn / fp)": (f"{miss_cost(meta['costs'])} / "
                            f"{_fmt(_get(meta, 'costs', 'fp_cost'))}" if meta.get("costs")
                            else ""),
        "strategy": _get(meta, "strategy", "name"),
        "calibrated": meta.get("calibrated"),
        "cv_cost": _get(meta, "strategy", "cv_cost"),
        "threshold": meta.get("threshold"),
    }
    for name in HEADLINE:
        value = _get(meta, "metrics", name) if name in ("pr_auc", "roc_auc") else at.get(name)
        rows[f"test {name}"] = value
    for gate in _get(meta, "verdict", "gates", default=[]) or []:
        rows[f"gate {gate['gate']}"] = (f"{GATE_MARK[bool(gate['passed'])]} "
                                        f"{_fmt(gate.get('value'))}").strip()
    rows["compared with"] = meta.get("compared_with")
    rows["rareflow"] = meta.get("rareflow_version") or meta.get("rareflow_layout")
    return {k: _fmt(v) for k, v in rows.items()}


def compare_versions(metas: list[dict], *, champion: str | None = None) -> pd.DataFrame:
    """A table with one column per version and one row per figure (rows any version has)."""
    columns = {meta["version"]: version_column(meta, champion=champion) for meta in metas}
    labels = list(dict.fromkeys(label for col in columns.values() for label in col))
    return pd.DataFrame({v: [col.get(label, "") for label in labels]
                         for v, col in columns.items()}, index=pd.Index(labels))


def version_summaries(registry) -> pd.DataFrame:
    """One row per version of a registry: verdict, signature and key metrics."""
    champion = (registry.champion() or {}).get("version")
    rows = []
    for version in registry.version_ids():
        try:
            meta = registry.metadata(version)
        except RegistryError as exc:
            rows.append({"version": version, "status": f"unreadable: {exc}"})
            continue
        test = meta.get("metrics", {})
        at = test.get("at_threshold", {})
        rows.append({
            "version": version,
            "champion": "*" if version == champion else "",
            "status": registry.log.status(version, meta.get("verdict", {}).get("status")),
            **dict(zip(("signature", "problem"), registry.files(version).check(), strict=True)),
            "strategy": meta.get("strategy", {}).get("name", "?"),
            "threshold": at.get("threshold"),
            "recall": at.get("recall"),
            "pr_auc": test.get("pr_auc"),
            "normalised_cost": at.get("normalised_cost"),
            "registered_at": meta.get("registered_at"),
        })
    return pd.DataFrame(rows)

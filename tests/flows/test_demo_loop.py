"""`rareflow demo` runs the served loop: ingest → train on a window and promote → score each
arrival into a scored source → monitor what was served → recall drift → retrain from the drift
payload, the candidate shadowing the champion → promoted on live matured rows."""

from __future__ import annotations

import pytest

from tasks.registry.store import Registry

pytestmark = pytest.mark.slow


def test_demo_runs_the_loop_and_retrains_on_fresh_partitions(prefect_harness, tmp_path,
                                                            monkeypatch):
    from flows.cli import run_training
    from flows.demo_loop import DEMO_NAME, run_demo, week_end

    monkeypatch.chdir(tmp_path)  # the demo writes ./rareflow.yaml for the README's commands
    said: list[str] = []
    status = run_demo(tmp_path, rows=50_400, registry=None, time_budget_s=60,
                      train=run_training, say=said.append)
    text = "\n".join(said)
    assert status == 0, text
    assert "flagged for review" in text  # the new weeks were scored as they arrived
    scored = tmp_path / "scored"
    assert (scored / "_rareflow_scored.json").is_file() and any(scored.rglob("*.parquet"))
    assert (tmp_path / "rareflow.yaml").is_file()
    assert "NO DRIFT demo v0001" in text  # the first check, before the drift's labels matured
    assert "\nDRIFT demo v0001" in text  # the second check sees the drift in what was served
    registry = Registry(tmp_path / "registry", DEMO_NAME)
    assert registry.version_ids() == ["v0001", "v0002"]
    first, retrained = registry.metadata("v0001"), registry.metadata("v0002")
    assert first["lineage"]["as_of"] == week_end(7)
    assert retrained["lineage"]["as_of"] == week_end(11)  # the check's time, from the payload
    first_files = {f["path"] for f in first["lineage"]["files"]}
    fresh = [f["path"] for f in retrained["lineage"]["files"] if f["path"] not in first_files]
    # the retraining read partitions that landed after the first model: weeks 7 and later
    assert fresh and all(p.split("/")[0] >= "date=" + week_end(7)[:10] for p in fresh)
    assert retrained["verdict"]["status"] == "refused"  # gates.shadow_first: it shadowed first
    pointer = registry.champion()
    assert pointer["version"] == "v0002", text  # promoted on live matured rows
    assert pointer["history_entry"]["evidence"] == "shadow"
    assert "promoted on live evidence (evidence: shadow)" in text

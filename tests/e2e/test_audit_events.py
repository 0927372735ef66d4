"""Champion moves made by hand reach a real Prefect server as events, like the flow's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tasks.registry.store import Registry

from .conftest import ROOT, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "audited"


def rareflow(server, *args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("rareflow")
    command = [str(script)] if script.is_file() else [
        sys.executable, "-c", "from flows.cli import main; main()"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**server.env, "PYTHONPATH": str(ROOT)})


def test_manual_promote_and_rollback_emit_events(prefect_server, tmp_path):
    """Check that `models promote` and `models rollback` emit rareflow.model.promoted and
    rareflow.model.rolled-back to the server, with actor, reason and previous champion, and
    that the history holds the same moves."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    reg = Registry(tmp_path / "registry", NAME)
    v1 = reg.register({"m": 1}, {"verdict": {"status": "passed"}})
    v2 = reg.register({"m": 2}, {"verdict": {"status": "passed"}})
    common = ["--registry", str(reg.root), "--name", NAME]
    for args in (["promote", v1, "--reason", "go live"], ["promote", v2],
                 ["rollback", "--reason", "v2 scores too slowly"]):
        done = rareflow(prefect_server, "models", *args, *common)
        assert done.returncode == 0, done.stdout + done.stderr
    wanted = EventFilter(event=EventNameFilter(prefix=["rareflow.model."]),
                         resource=EventResourceFilter(id=[f"rareflow.model.{NAME}"]))

    def arrived():
        with prefect_server.client() as client:
            events = client.read_events(filter=wanted, limit=50).events
        return events if len(events) >= 3 else None

    events = sorted(wait_until(arrived, timeout=60, interval=1, what="the three events"),
                    key=lambda e: e.occurred)
    assert [(e.event, e.payload["version"], e.payload["previous"]) for e in events] == [
        ("rareflow.model.promoted", v1, None), ("rareflow.model.promoted", v2, v1),
        ("rareflow.model.rolled-back", v1, v2)]
    assert events[0].payload["reason"] == "go live" and events[0].payload["manual"]
    assert events[2].payload["reason"] == "v2 scores too slowly"
    assert all("@" in e.payload["actor"] for e in events)
    assert [e.payload["event_id"] for e in events] == [h["event_id"] for h in reg.history()]

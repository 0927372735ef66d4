"""Manual approval against a real Prefect server: `rareflow train` with `gates.approval:
manual` registers the candidate as pending and runs the approval flow in-process, which pauses;
a person approves or rejects it through the API (or the UI's Resume form, shown in a real
browser), and the decision is recorded in the registry's history.

Set RAREFLOW_UPDATE_SCREENSHOT=1 to refresh docs/ui-approval.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from schemas.errors import EXIT_OK, EXIT_REJECTED
from tasks.registry.store import Registry

from .conftest import FAST_TRAINING, ROOT, tail, wait_until
from .test_ui_browser import browser  # noqa: F401 - the headless chromium fixture

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT = ROOT / "docs" / "ui-approval.png"
NAME = "approved"


def start_training(server, e2e_data, tmp_path: Path, registry: Path) -> tuple:
    """`rareflow train --config` with manual approval, as a console-script subprocess."""
    config = {"data": str(e2e_data["train"]), "label": "is_fraud", "positive": "1",
              "registry": str(registry), "name": NAME, **FAST_TRAINING}
    config["gates"] = {**config["gates"], "approval": "manual", "approval_timeout_s": 600}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    script = Path(sys.executable).with_name("rareflow")
    command = [str(script)] if script.is_file() else [
        sys.executable, "-c", "from flows.cli import main; main()"]
    log = tmp_path / "train.log"
    out = open(log, "wb")  # noqa: SIM115 - closed by finish()
    proc = subprocess.Popen([*command, "train", "--config", str(path)], cwd=ROOT,
                            env={**server.env, "PYTHONPATH": str(ROOT)}, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, out, log


def finish(proc, out, log, timeout: float = 300) -> tuple[int, str]:
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"rareflow train did not finish:\n{tail(log)}")
    finally:
        out.close()
    return code, log.read_text(errors="replace")


def paused_run(server, registry: Path, proc, log):
    """Wait until the approval run of this registry is Paused; return it."""
    def find():
        if proc.poll() is not None:
            pytest.fail(f"rareflow train exited early ({proc.returncode}):\n{tail(log)}")
        with server.client() as client:
            for run in client.read_flow_runs():
                params = run.parameters or {}
                if params.get("registry") == str(registry) and params.get("version") \
                        and run.state and run.state.is_paused():
                    return run
        return None

    return wait_until(find, timeout=400, interval=2, what="the approval run to pause",
                      log=log)


@pytest.mark.parametrize("approve, reason, code, status", [
    (True, "metrics reviewed by the fraud team", EXIT_OK, "passed"),
    (False, "wait for the holiday data", EXIT_REJECTED, "rejected"),
])
def test_approval_through_the_api(prefect_server, e2e_data, tmp_path, approve, reason, code,
                                  status):
    """Check that the paused approval run `rareflow train` starts, resumed through the API
    with approve/reason, promotes (or rejects) the pending candidate, with the decision and
    reason in its verdict and history; the training run itself never paused."""
    from prefect.flow_runs import resume_flow_run

    from tasks.registry.approval import HOW_UI, current_verdict

    registry = tmp_path / "registry"
    proc, out, log = start_training(prefect_server, e2e_data, tmp_path, registry)
    try:
        run = paused_run(prefect_server, registry, proc, log)
        reg = Registry(registry, NAME)
        assert reg.log.status("v0001", "pending") == "pending" and reg.champion() is None
        resume_flow_run(run.id, run_input={"approve": approve, "reason": reason})
    finally:
        exit_code, output = finish(proc, out, log)
    assert exit_code == code, output
    verdict = current_verdict(reg, "v0001")
    gate = verdict["gates"][-1]
    assert (verdict["status"], gate["gate"], gate["passed"]) == (status, "manual_approval",
                                                                 approve)
    assert reason in gate["detail"] and verdict["approval"]["reason"] == reason
    assert (reg.champion() or {}).get("version") == ("v0001" if approve else None)
    last = reg.history()[-1]
    assert (last["version"], last["status"], last["how"], last["reason"]) == (
        "v0001", status, HOW_UI, reason)
    with prefect_server.client() as client:
        assert client.read_flow_run(run.id).state.is_completed()
        training = [r for r in client.read_flow_runs()
                    if ((r.parameters or {}).get("config") or {}).get("registry") == str(registry)]
        assert [r.state.name for r in training] == ["AwaitingApproval"]
        states = client.read_flow_run_states(training[0].id)
    assert not any(s.is_paused() for s in states)


def test_ui_shows_the_approval_form(prefect_server, e2e_data, tmp_path, browser):  # noqa: F811
    """Check that the UI shows the paused run with a Resume form holding the gate table,
    approve and reason; then approve it through the API."""
    from prefect.flow_runs import resume_flow_run

    registry = tmp_path / "registry"
    proc, out, log = start_training(prefect_server, e2e_data, tmp_path, registry)
    try:
        run = paused_run(prefect_server, registry, proc, log)
        browser.call("Page.navigate", url=f"{prefect_server.url}/runs/flow-run/{run.id}")
        browser.wait_for_text(run.name, "Paused")
        clicked = wait_until(lambda: browser.js(
            "(() => { const b = [...document.querySelectorAll('button')]"
            ".find(b => b.textContent.trim() === 'Resume'); if (!b) return false;"
            " b.click(); return true; })()"), timeout=60, interval=1,
            what="the Resume button")
        assert clicked
        text = browser.wait_for_text("Approve the new", "min_recall", "manual", "Reason",
                                     timeout=90)
        assert "Every gate passed" in text
        time.sleep(1)  # let the modal finish its transition before the picture
        shot = browser.screenshot(tmp_path / "ui-approval.png")
        assert shot.stat().st_size > 10_000
        if os.environ.get("RAREFLOW_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, SCREENSHOT)
        resume_flow_run(run.id, run_input={"approve": True, "reason": "seen in the UI"})
    finally:
        exit_code, output = finish(proc, out, log)
    assert exit_code == EXIT_OK, output

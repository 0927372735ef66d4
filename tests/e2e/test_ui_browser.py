"""The Prefect UI in a real browser: headless Debian chromium opens a finished training run.

Chromium is driven over the DevTools protocol (a websocket; ``websockets`` comes with Prefect),
so the test can wait for the page's JavaScript to render, open the Artifacts tab, read the page
text and take a screenshot. Set RAREFLOW_UPDATE_SCREENSHOT=1 to refresh docs/ui-flow-run.png.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT, tail, wait_until

SCREENSHOT = ROOT / "docs" / "ui-flow-run.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1250",
]
ARTIFACT_KEYS = ("test-metrics", "gate-verdict", "strategy-leaderboard")


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


class Browser:
    """One headless chromium with a fresh profile, driven through its DevTools websocket."""

    def __init__(self, executable: str, workdir: Path):
        from websockets.sync.client import connect

        self.profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=workdir))
        self.log = workdir / "chromium.log"
        self._log = open(self.log, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        wait_until(lambda: port_file.is_file() and port_file.read_text().strip(), timeout=60,
                   interval=0.2, what="chromium's DevTools port", log=self.log)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self._ids = itertools.count(1)

    def call(self, method: str, **params):
        """Send one DevTools command and return its result (events in between are ignored)."""
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method} failed: {msg['error']}")
                return msg["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def text(self) -> str:
        """The rendered page's visible text (after its JavaScript ran)."""
        return self.js("document.body ? document.body.innerText : ''") or ""

    def scroll_to_bottom(self) -> None:
        """Scroll the page and every scrollable box to its end (the log list is virtual: only
        the rows in view are on the page)."""
        self.js("(() => { window.scrollTo(0, document.body.scrollHeight);"
                " for (const el of document.querySelectorAll('*')) {"
                "  if (el.scrollHeight > el.clientHeight + 10) el.scrollTop = el.scrollHeight; }"
                " })()")

    def wait_for_text(self, *needles: str, timeout: float = 60, scroll: bool = False) -> str:
        def found():
            if scroll:
                self.scroll_to_bottom()
            text = self.text()
            return text if all(n in text for n in needles) else None

        try:
            return wait_until(found, timeout=timeout, interval=0.5,
                              what=f"the page to show {needles}")
        except BaseException:
            print("--- the page's text ---\n" + self.text()[-4000:])
            raise

    def click_tab(self, label: str) -> bool:
        """Click the page tab with this exact label; True when one was found."""
        return bool(self.js(
            "(() => { const tabs = [...document.querySelectorAll('.p-tab')]"
            f".filter(t => t.textContent.trim() === {json.dumps(label)});"
            " if (!tabs.length) return false; tabs[0].click(); return true; })()"))

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser(tmp_path):
    """Headless chromium; the test is skipped when chromium is not installed."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (.ci/needs-e2e.sh installs Debian's chromium)")
    b = Browser(executable, tmp_path)
    try:
        yield b
    except Exception:
        print(tail(b.log))
        raise
    finally:
        b.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_flow_run_page_shows_run_and_artifacts(prefect_server, trained_run, browser, tmp_path):
    """Check that the UI's flow-run page of a finished training run shows it and its artifacts."""
    run = trained_run["run"]
    browser.call("Page.navigate", url=f"{prefect_server.url}/runs/flow-run/{run.id}")
    text = browser.wait_for_text(run.name, "Completed", "rareflow-train", "retrain")
    # the run's own log line, "Promoted e2e v0001", near the end of its logs
    browser.wait_for_text("Promoted e2e", scroll=True)
    assert browser.click_tab("Artifacts"), "no Artifacts tab on the flow-run page"
    text = browser.wait_for_text(*ARTIFACT_KEYS)
    assert "Gate verdict: passed" in text
    shot = browser.screenshot(tmp_path / "ui-flow-run.png")
    assert shot.stat().st_size > 10_000
    if os.environ.get("RAREFLOW_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)

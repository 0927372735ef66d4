"""The plots and the evidently report in a real browser: headless chromium opens the Prefect UI
of a finished training run and of a monitoring run and checks that the images actually render
(naturalWidth > 0) and that the report link opens the evidently report (served by
`rareflow reports serve`). RAREFLOW_UPDATE_SCREENSHOT=1 refreshes the screenshots in docs/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from .conftest import MODEL, ROOT, VENV_BIN, Proc, free_port, tail, wait_until
from .test_ui_browser import Browser, chromium_path

SHOTS = {"training": ROOT / "docs" / "ui-training-plots.png",
         "run": ROOT / "docs" / "ui-training-run-artifacts.png",
         "monitoring": ROOT / "docs" / "ui-monitoring-plots.png",
         "report": ROOT / "docs" / "ui-evidently-report.png"}
IMAGES = "[...document.images].filter(i => (i.src || '').startsWith('data:image/png'))"


@pytest.fixture
def chromium(tmp_path):
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


def keep(shot, key: str) -> None:
    if os.environ.get("RAREFLOW_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SHOTS[key])


def rendered_images(browser: Browser, count: int, timeout: float = 60) -> list:
    """Wait until ``count`` data-URI images have loaded with a real size; return their sizes."""
    def loaded():
        sizes = browser.js(f"{IMAGES}.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        good = [s for s in sizes or [] if s[0] and s[1] > 0 and s[2] > 0]
        return good if len(good) >= count else None

    return wait_until(loaded, timeout=timeout, interval=0.5,
                      what=f"{count} PNG images to render in the page")


def open_artifact_card(browser: Browser, key: str) -> str:
    """On a run page's Artifacts tab, click the card of artifact ``key``; return the URL."""
    browser.wait_for_text(key)
    clicked = browser.js(
        "(() => { const all = [...document.querySelectorAll('a, [role=link], .p-card, div')]"
        f".filter(e => e.textContent.trim().includes({json.dumps(key)}));"
        " const el = all.length ? all[all.length - 1] : null;"
        " if (!el) return false; el.click(); return true; })()")
    assert clicked, f"no artifact card {key!r} on the page"
    return wait_until(lambda: (url := browser.js("location.href")) and "/artifacts/artifact/"
                      in url and url, timeout=30, interval=0.5,
                      what=f"the artifact page of {key!r}")


@pytest.mark.e2e
@pytest.mark.slow
def test_training_plots_render_in_the_ui(prefect_server, trained_run, chromium, tmp_path):
    """Check that the training run's Artifacts tab leads to its plots artifact, whose four
    PNG plots actually render in chromium, and that the gate table shows pass markers."""
    run = trained_run["run"]
    chromium.call("Page.navigate", url=f"{prefect_server.url}/runs/flow-run/{run.id}")
    chromium.wait_for_text(run.name, "rareflow-train")
    assert chromium.click_tab("Artifacts"), "no Artifacts tab on the flow-run page"
    chromium.wait_for_text("model-plots", "gate-verdict", "strategy-search-progress")
    keep(chromium.screenshot(tmp_path / "run.png"), "run")
    open_artifact_card(chromium, "model-plots")
    sizes = rendered_images(chromium, 4)
    assert all(w >= 300 for _, w, _ in sizes), sizes
    text = chromium.wait_for_text("Precision-recall curve", "Expected cost vs threshold")
    assert "Reliability" in text and "Score histograms" in text
    shot = chromium.screenshot(tmp_path / "training.png")
    assert shot.stat().st_size > 30_000
    keep(shot, "training")


def monitor_with_reports_server(prefect_server, e2e_data, port: int):
    """`rareflow monitor` against the e2e server with report links to the reports server."""
    env = {**prefect_server.env, "RAREFLOW_REPORTS_URL": f"http://127.0.0.1:{port}"}
    done = subprocess.run(
        [str(VENV_BIN / "rareflow"), "monitor", "--data", str(e2e_data["arrived"]),
         "--registry", str(e2e_data["registry"]), "--name", MODEL, "--min-positives", "5"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL)
    assert done.returncode in (0, 4, 5), done.stdout[-2000:] + done.stderr[-3000:]
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with prefect_server.client() as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["rareflow-monitor"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
    assert runs, "the monitoring run is not on the server"
    return runs[0]


@pytest.mark.e2e
@pytest.mark.slow
def test_monitoring_plots_and_report_link_open_from_the_ui(prefect_server, trained_run,
                                                           e2e_data, chromium, tmp_path):
    """Check that a monitoring run's plots render in chromium and that its report link, an
    http URL on `rareflow reports serve`, opens the evidently report (no file:// link)."""
    port = free_port()
    server = Proc("reports", [str(VENV_BIN / "rareflow"), "reports", "serve", "--registry",
                              str(e2e_data["registry"]), "--port", str(port)],
                  env=prefect_server.env, cwd=ROOT, log=prefect_server.logs / "reports.log")
    try:
        wait_until(lambda: "Serving" in server.log.read_text(errors="replace"), timeout=60,
                   what="rareflow reports serve to listen", log=server.log)
        run = monitor_with_reports_server(prefect_server, e2e_data, port)
        chromium.call("Page.navigate", url=f"{prefect_server.url}/runs/flow-run/{run.id}")
        chromium.wait_for_text(run.name, "rareflow-monitor")
        assert chromium.click_tab("Artifacts")
        chromium.wait_for_text(f"monitor-plots-{MODEL}", f"monitor-report-{MODEL}")
        open_artifact_card(chromium, f"monitor-plots-{MODEL}")
        rendered_images(chromium, 2)
        chromium.wait_for_text("Minority recall over time", "Reference (test part at training)")
        keep(chromium.screenshot(tmp_path / "monitoring.png"), "monitoring")
        chromium.call("Page.navigate", url=f"{prefect_server.url}/runs/flow-run/{run.id}")
        chromium.wait_for_text(run.name)
        assert chromium.click_tab("Artifacts")
        open_artifact_card(chromium, f"monitor-report-{MODEL}")
        href = wait_until(lambda: chromium.js(
            f"(() => {{ const a = [...document.querySelectorAll('a')].find(a => "
            f"a.href.startsWith('http://127.0.0.1:{port}/')); return a ? a.href : null }})()"),
            timeout=30, interval=0.5, what="the report link on the artifact page")
        assert href.endswith(".html") and "file://" not in href
        chromium.call("Page.navigate", url=href)
        time.sleep(1)
        text = chromium.wait_for_text("Recall", timeout=90)
        assert "Precision" in text
        keep(chromium.screenshot(tmp_path / "report.png"), "report")
    finally:
        server.stop()

"""The reports server serves monitoring reports only: no symlink, no other registry file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tasks.monitor.reports_server import make_server, report_parts

ROOT = Path(__file__).resolve().parents[2]
RUN = "m/versions/v0001/reports/monitor-1"
SECRET = "the-signing-key-0123456789abcdef"


@pytest.fixture()
def registry(tmp_path):
    """A registry folder with one report, the files a version holds, and a key beside it."""
    reg = tmp_path / "registry"
    run = reg / RUN
    run.mkdir(parents=True)
    (run / "quality.html").write_text("<html><script>var report = 1;</script></html>")
    (run / "summary.json").write_text('{"verdict": "no drift"}')
    version = reg / "m" / "versions" / "v0001"
    for name in ("model.joblib", "reference.parquet", "metadata.json", "model_card.md"):
        (version / name).write_text(f"{name} {SECRET}")
    key = tmp_path / "signing.key"
    key.write_text(SECRET)
    return reg, key


@pytest.fixture()
def served(registry):
    """The registry behind a running reports server: (base URL, registry, key)."""
    reg, key = registry
    server = make_server(reg, port=0)
    # a short poll: shutdown() waits for the loop's next poll (0.5 s by default, per test)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", reg, key
    server.shutdown()
    server.server_close()


def test_a_report_is_served_sandboxed(served):
    """Check that a report is served with a sandboxing CSP and nosniff, and JSON beside it."""
    base, _, _ = served
    page = httpx.get(f"{base}/{RUN}/quality.html", timeout=10)
    assert page.status_code == 200 and "var report" in page.text
    assert page.headers["content-security-policy"] == "sandbox allow-scripts"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{base}/{RUN}/summary.json", timeout=10).json() == {"verdict": "no drift"}
    assert httpx.head(f"{base}/{RUN}/quality.html", timeout=10).status_code == 200


def _plant(reg: Path, key: Path, how: str) -> str:
    """Plant what an attacker who can write the registry would; return the path to ask for."""
    run = reg / RUN
    if how == "symlink to the key":
        (run / "k.html").symlink_to(key)
        return f"{RUN}/k.html"
    if how == "symlink to /proc/self/environ":
        (run / "env.json").symlink_to("/proc/self/environ")
        return f"{RUN}/env.json"
    if how == "symlinked run folder":
        outside = key.parent / "outside"
        outside.mkdir()
        (outside / "k.html").write_text(SECRET)
        (reg / "m" / "versions" / "v0001" / "reports" / "evil").symlink_to(outside)
        return "m/versions/v0001/reports/evil/k.html"
    if how == "symlinked version folder":
        (reg / "m" / "versions" / "v0002").symlink_to(key.parent)
        (key.parent / "reports" / "r").mkdir(parents=True)
        (key.parent / "reports" / "r" / "k.html").write_text(SECRET)
        return "m/versions/v0002/reports/r/k.html"
    if how == "hard link to a file":
        os.link(key, run / "hard.html")
        return f"{RUN}/hard.html"
    return how  # a plain path to ask for


@pytest.mark.parametrize("how", [
    "symlink to the key",
    "symlink to /proc/self/environ",
    "symlinked run folder",
    "symlinked version folder",
    "hard link to a file",
    "m/versions/v0001/model.joblib",
    "m/versions/v0001/reference.parquet",
    "m/versions/v0001/metadata.json",
    "m/versions/v0001/model_card.md",
    f"{RUN}/",
    "m/versions/v0001/reports/",
    f"{RUN}/../../model.joblib",
    f"{RUN}/%2e%2e/%2e%2e/model.joblib",
    "m/versions/v0001/reports/monitor-1/..%2f..%2fmodel.joblib",
    "",
])
def test_nothing_but_a_report_is_served(served, how):
    """Check that symlinks, hard links, other registry files, listings and traversal get 404
    and never the key's bytes."""
    base, reg, key = served
    path = _plant(reg, key, how)
    answer = httpx.get(f"{base}/{path}", timeout=10)
    assert answer.status_code == 404, how
    assert SECRET not in answer.text


@pytest.mark.parametrize("path, ok", [
    (f"/{RUN}/quality.html", True),
    (f"/{RUN}/quality.html?x=1", True),
    (f"/{RUN}/model.joblib", False),
    ("/m/versions/v0001/reports/quality.html", False),
    ("/m/other/v0001/reports/r/quality.html", False),
    (f"/{RUN}/a\\b.html", False),
])
def test_report_parts_follow_the_layout(path, ok):
    """Check that only <name>/versions/<v>/reports/<run>/<report file> paths are accepted."""
    assert (report_parts(path) is not None) is ok


@pytest.mark.slow
def test_the_command_refuses_the_key_symlink(registry):
    """Check that `rareflow reports serve`, as users start it, serves a report but not a
    symlink to the key planted in the reports folder."""
    reg, key = registry
    (reg / RUN / "k.html").symlink_to(key)
    rareflow = str(Path(sys.executable).with_name("rareflow"))
    proc = subprocess.Popen(
        [rareflow, "reports", "serve", "--registry", str(reg), "--port", "0"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        base = re.search(r"(http://127\.0\.0\.1:\d+)", line).group(1)
        assert httpx.get(f"{base}/{RUN}/quality.html", timeout=10).status_code == 200
        stolen = httpx.get(f"{base}/{RUN}/k.html", timeout=10)
        assert stolen.status_code == 404 and SECRET not in stolen.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)

#!/usr/bin/env bash
# What tests/e2e needs beyond the Python environment (uv sync): Debian's chromium, for the
# Prefect UI test (tests/e2e/test_ui_browser.py drives it headless over the DevTools protocol).
# The server, worker and deployment tests need nothing else: prefect is in the venv.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
chromium --version

#!/usr/bin/env bash
# What tests/e2e needs beyond the Python environment (uv sync): Debian's chromium, for the
# Prefect UI test (tests/e2e/test_ui_browser.py drives it headless over the DevTools protocol),
# and Debian's postgresql, for the loop test against a PostgreSQL-backed Prefect server
# (tests/e2e/test_loop_postgres.py starts and stops its own cluster on loopback; the server's
# asyncpg driver comes with prefect in the venv); and Azurite, Microsoft's Azure Storage
# emulator, from the npm registry at the version .ci/azurite/package-lock.json pins, for the
# az:// registry tests (tests/e2e/azure_server.py starts it on loopback).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
chromium --version
ls /usr/lib/postgresql/*/bin/initdb
npm ci --prefix .ci/azurite --no-audit --no-fund
.ci/azurite/node_modules/.bin/azurite-blob --version

"""End-to-end tests: a real Prefect server on loopback (a package, so fixtures scope to it)."""

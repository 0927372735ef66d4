"""Prefect deployments of rareflow's flows: prefect.yaml (work pool) and serve.py (one process)."""

"""Serve rareflow's deployments from one local process: no work pool and no worker needed.

The deployments, schedules, triggers and parameters are read from ``deployments/prefect.yaml``,
so ``prefect deploy`` and this script always offer the same set. From the repository root, with
``PREFECT_API_URL`` pointing at a running server (``prefect server start``)::

    python -m deployments.serve                     # every deployment in prefect.yaml
    python -m deployments.serve --name retrain      # only some of them

Runs execute as subprocesses of this process, in the repository root. Stopping it (Ctrl-C)
pauses the schedules; the event triggers stay registered on the server.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = Path(__file__).resolve().with_name("prefect.yaml")

logger = logging.getLogger(__name__)


def load_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """Read the deployment entries of a prefect.yaml, with ``{{ $ENV }}`` values filled in.

    Args:
        path: The prefect.yaml to read.

    Returns:
        One dict per deployment, as written in the file (YAML anchors expanded).
    """
    from tasks.lean import fill_env_templates

    doc = yaml.safe_load(Path(path).read_text())
    specs = (doc or {}).get("deployments") or []
    if not specs:
        raise ValueError(f"{path} must list deployments under `deployments:`; found none.")
    # The same environment-variable pass `prefect deploy` makes; event templates stay as they are.
    return fill_env_templates(specs, os.environ)


def schedule_from_spec(spec: dict[str, Any]):
    """Turn one prefect.yaml schedule entry (cron, interval or rrule) into a Prefect schedule."""
    from prefect.schedules import Cron, Interval, RRule

    common = {k: spec[k] for k in ("timezone", "active", "parameters", "slug") if k in spec}
    if "cron" in spec:
        return Cron(spec["cron"], day_or=spec.get("day_or", True), **common)
    if "interval" in spec:
        return Interval(spec["interval"], **common)
    if "rrule" in spec:
        return RRule(spec["rrule"], **common)
    raise ValueError(f"A schedule needs one of cron, interval or rrule; got keys {sorted(spec)}.")


def build_deployments(
    path: Path = PREFECT_YAML, *, names: list[str] | None = None
) -> list:
    """Build one RunnerDeployment per prefect.yaml entry, ready for ``prefect.serve``.

    Args:
        path: The prefect.yaml to read.
        names: Deployment names to keep (default: all).

    Returns:
        RunnerDeployments with the file's parameters, schedules, triggers, tags, description,
        concurrency limit and parameter-schema enforcement (work pools do not apply here).
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.events.schemas.deployment_triggers import DeploymentTriggerTypes
    from prefect.flows import load_flow_from_entrypoint

    specs = load_specs(path)
    known = [s.get("name") for s in specs]
    if names:
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"Deployment names must be among {known}; got unknown {unknown}.")
        specs = [s for s in specs if s.get("name") in names]

    trigger_adapter = TypeAdapter(DeploymentTriggerTypes)
    deployments = []
    for spec in specs:
        file, _, func = spec["entrypoint"].rpartition(":")
        source = ROOT / file
        if not source.is_file():
            raise FileNotFoundError(
                f"Deployment {spec['name']!r} needs its flow file {source}, which does not exist; "
                "update the checkout or pick deployments with --name."
            )
        flow = load_flow_from_entrypoint(f"{source}:{func}", use_placeholder_flow=False)
        limit = spec.get("concurrency_limit")
        if isinstance(limit, dict):
            limit = ConcurrencyLimitConfig(**{k: v for k, v in limit.items() if v is not None})
        deployments.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=spec.get("parameters"),
                schedules=[schedule_from_spec(s) for s in spec.get("schedules") or []],
                triggers=[trigger_adapter.validate_python(t) for t in spec.get("triggers") or []],
                concurrency_limit=limit,
                enforce_parameter_schema=spec.get("enforce_parameter_schema", True),
            )
        )
        logger.info("Prepared deployment %s/%s", flow.name, spec["name"])
    return deployments


def main(argv: list[str] | None = None) -> None:
    """Serve the deployments until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefect-file", type=Path, default=PREFECT_YAML,
                        help="prefect.yaml to read (default: deployments/prefect.yaml).")
    parser.add_argument("--name", action="append", dest="names",
                        help="Serve only this deployment (repeatable; default: all).")
    parser.add_argument("--limit", type=int, default=None,
                        help="Most flow runs executing at once (default: no limit).")
    args = parser.parse_args(argv)

    from prefect import serve

    # Runs start in the repository root, as with a worker's set_working_directory pull step, and
    # plain-code log records reach the UI as with the work pool's job variables.
    os.chdir(ROOT)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks,flows,schemas")
    serve(*build_deployments(args.prefect_file, names=args.names), limit=args.limit)


if __name__ == "__main__":
    main()

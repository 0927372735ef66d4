"""Serve rareflow's deployments from one local process: no work pool and no worker needed.

The deployments, schedules, triggers and parameters are read from ``deployments/prefect.yaml``,
so ``prefect deploy`` and this script always offer the same set. From the repository root, with
``PREFECT_API_URL`` pointing at a running server (``prefect server start``)::

    python -m deployments.serve                     # every deployment in prefect.yaml
    python -m deployments.serve --name retrain      # only some of them

Runs execute as subprocesses of this process, in the repository root. Stopping it (Ctrl-C)
pauses the schedules; the event triggers stay registered on the server.

Deployments of the same names made by ``prefect deploy`` (for a work pool) would be taken
over half-way: their runs would fail here (they carry the pool's pull steps, not this
process's code) while their automations kept firing. So the script refuses to start beside
them and names them; ``--replace`` deletes them, and their automations, first::

    python -m deployments.serve --replace
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
    from tasks.runtime._prefect_templates import fill_env_templates

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


def pool_deployments(client, deployments: list) -> list:
    """Deployments on the server with the same names as ``deployments`` that run on a work
    pool (made by ``prefect deploy``)."""
    from prefect.exceptions import ObjectNotFound

    found = []
    for dep in deployments:
        try:
            existing = client.read_deployment_by_name(f"{dep.flow_name}/{dep.name}")
        except ObjectNotFound:
            continue
        if existing.work_pool_name:
            found.append(existing)
    return found


def remove_deployments(client, deployments: list) -> None:
    """Delete deployments and the automations their triggers made (none left dangling)."""
    for dep in deployments:
        client.delete_resource_owned_automations(f"prefect.deployment.{dep.id}")
        client.delete_deployment(dep.id)
        logger.info("Deleted deployment %s (work pool %s) and its automations", dep.name,
                    dep.work_pool_name)


def check_clashes(deployments: list, *, replace: bool) -> None:
    """Refuse to serve beside ``prefect deploy``'s deployments of the same names, or (with
    ``replace``) delete them first.

    Raises:
        SystemExit: there are such deployments and ``replace`` is off.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        clashes = pool_deployments(client, deployments)
        if clashes and not replace:
            names = ", ".join(f"{d.name} (work pool {d.work_pool_name})" for d in clashes)
            raise SystemExit(
                f"deployments {names} already exist on this server, made by `prefect deploy` "
                "for a work pool; serving the same names here would break their runs and "
                "leave their automations behind. Rerun with --replace to delete them (and "
                "their automations) first, or stop using the work pool's deployments.")
        remove_deployments(client, clashes)


def main(argv: list[str] | None = None) -> None:
    """Serve the deployments until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefect-file", type=Path, default=PREFECT_YAML,
                        help="prefect.yaml to read (default: deployments/prefect.yaml).")
    parser.add_argument("--name", action="append", dest="names",
                        help="Serve only this deployment (repeatable; default: all).")
    parser.add_argument("--limit", type=int, default=None,
                        help="Most flow runs executing at once (default: no limit).")
    parser.add_argument("--replace", action="store_true",
                        help="Delete deployments of the same names made by `prefect deploy` "
                             "(and their automations) before serving.")
    args = parser.parse_args(argv)

    from prefect import serve

    # Runs start in the repository root, as with a worker's set_working_directory pull step, and
    # plain-code log records reach the UI as with the work pool's job variables.
    os.chdir(ROOT)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks,flows,schemas")
    deployments = build_deployments(args.prefect_file, names=args.names)
    check_clashes(deployments, replace=args.replace)
    serve(*deployments, limit=args.limit)


if __name__ == "__main__":
    main()

"""The versions that decided a scored source's rows, read from the registry (verified) for
judging each on its own rows (:mod:`tasks.monitor.served`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.decision.costs import DecisionCosts
from tasks.monitor.served import VersionInfo
from tasks.registry.monitor_state import trained_as_of
from tasks.registry.store import Registry
from tasks.runtime.io_retries import IO_RETRIES


def version_infos(registry: Registry, versions: list[str]) -> dict[str, VersionInfo]:
    """Each version's schema, threshold, costs and reference, in the order given.

    Raises:
        RegistryError: a version is unknown to this model or fails its signature.
    """
    out = {}
    for version in versions:
        model, meta = registry.load(version)
        out[version] = VersionInfo(model.schema, model.threshold,
                                   DecisionCosts.from_meta(meta.get("costs")),
                                   registry.reference(version), trained_as_of(meta))
    return out


def main_version(registry: Registry, versions: list[str]) -> str:
    """The version judged in full (reports, plots, drift event): the champion when it decided
    rows, else the last version that did."""
    champion = (registry.champion() or {}).get("version")
    return champion if champion in versions else versions[-1]


version_infos_task = task(version_infos, name="load-served-versions", cache_policy=NO_CACHE,
                          **IO_RETRIES)

"""Where monitoring writes a model's reports and plots: in the registry folder on local disk;
on object storage, in a local working folder that holds the model's earlier monitoring
summaries (for the plots over time) and whose new report folder is uploaded afterwards,
under ``<name>/versions/<version>/reports/`` (outside every version's signed manifest, as
on disk)."""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import weakref
from pathlib import Path

from tasks.registry.store import Registry
from tasks.runtime.object_store import StorePath

logger = logging.getLogger(__name__)

SUMMARY = "summary.json"
_WORKDIRS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # one per registry object


def on_object_storage(registry: Registry) -> bool:
    return isinstance(registry.root, StorePath)


def model_workdir(registry: Registry) -> Path:
    """The folder the model's monitoring reads and writes (``<registry>/<name>`` on disk)."""
    if not on_object_storage(registry):
        return registry.dir
    if registry in _WORKDIRS:
        return _WORKDIRS[registry]
    folder = Path(tempfile.mkdtemp(prefix="rareflow-monitor-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # uploaded by keep_reports
    prefix = f"{registry.name}/"
    for key in registry.store.list(f"{prefix}versions/"):
        if key.endswith(f"/{SUMMARY}") and "/reports/monitor-" in key:
            target = folder / key[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(registry.store.read(key) or b"{}")
    _WORKDIRS[registry] = folder
    return folder


def reports_dir(registry: Registry, version: str) -> Path:
    """Where a monitoring run of ``version`` makes its report folder."""
    return model_workdir(registry) / "versions" / version / "reports"


def keep_reports(registry: Registry, result: dict) -> dict:
    """Upload the run's report folder to object storage (nothing to do on disk); the
    result's report paths then name the uploaded objects."""
    if not on_object_storage(registry):
        return result
    workdir = model_workdir(registry)
    folder = Path(result["reports"]["folder"])
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{registry.name}/{path.relative_to(workdir).as_posix()}"
            registry.store.write(key, path.read_bytes())
    remote = registry.store.where(f"{registry.name}/{folder.relative_to(workdir).as_posix()}")
    logger.info("Monitoring reports uploaded to %s", remote)
    reports = {k: v.replace(str(folder), remote) if isinstance(v, str) else v
               for k, v in result["reports"].items()}
    verdict = str(result.get("verdict", "")).replace(str(folder), remote)
    return {**result, "reports": reports, **({"verdict": verdict} if "verdict" in result else {})}

"""Signing a registry with the key (``rareflow models sign``): versions that releases which
did not sign wrote, and the upgrade of a registry written before identities existed to signed
records (:mod:`tasks.registry.signed_records`): identity, version signatures covering it,
the champion pointer, history and monitoring state. Everything is checked as it was written
before it is signed again; the lines returned say what was signed.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from schemas.errors import RegistryError
from tasks.registry import signing
from tasks.registry.champion import ChampionLog
from tasks.registry.monitor_state import STATE_FILE, read_state, write_state
from tasks.registry.signed_records import create_identity, read_identity, rewrite_history
from tasks.registry.store import Registry
from tasks.registry.versions import VersionFiles, lost_signatures
from tasks.runtime.durable_files import dumps, write_bytes_atomic
from tasks.runtime.object_store import StorePath
from tasks.runtime.object_store_api import is_remote

logger = logging.getLogger(__name__)


def sign_unsigned(reg: Registry, *, force_reason: str | None = None) -> list[tuple[str, str]]:
    """Sign the versions that releases which did not sign wrote, after checking the sha256s
    their metadata records (sign only a registry you trust); a version whose signature was
    removed (:func:`tasks.registry.versions.lost_signatures`) needs ``force_reason``, recorded in
    history. Returns (version, outcome) for every version."""
    if reg.key is None:
        raise RegistryError(f"no signing key is configured: {signing.NO_KEY_HELP}")
    with reg.lock():
        files = [reg.files(v) for v in reg.version_ids()]
        lost = lost_signatures(files, force_reason=force_reason)
        out = [(f.version, f.sign_checked()) for f in files]
        for version in lost:
            reg.log.note(version, action="sign", reason=force_reason, status=None, forced=True)
        return out


def model_names(root: Path) -> list[str]:
    """The models under a registry root (folders holding versions or a pointer)."""
    if not Path(root).is_dir():
        return []
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and (
        (p / "versions").is_dir() or (p / "champion.json").is_file()))


def upgrade_registry(root: str | Path, key) -> list[str]:
    """Give a registry written before identities existed its identity and sign every model's
    records under it; nothing to do (an empty list) for a registry that has one."""
    if isinstance(root, StorePath) or is_remote(root):
        raise RegistryError(f"registry {str(root)!r} is on object storage, where every "
                            "registry is created signed: `models sign` upgrades local "
                            "registries only")
    root = Path(root)
    if key is None:
        raise RegistryError(f"no signing key is configured: {signing.NO_KEY_HELP}")
    if read_identity(root, key) is not None:
        return []
    regs = [Registry(root, name, key=key) for name in model_names(root)]
    with contextlib.ExitStack() as locks:  # every model locked while its records change
        for reg in regs:
            locks.enter_context(reg.lock())
        legacy = {reg.name: _legacy_read(reg) for reg in regs}  # checked before any change
        said = [f"registry {root}: identity {create_identity(root, key)} created"]
        for reg in regs:
            reg.trust.forget_identity()
            said += _seal_model(reg, *legacy[reg.name])
    return said


def _legacy_read(reg: Registry) -> tuple[dict, list[dict], dict | None, dict | None]:
    """What a legacy model holds, each part checked as it was written: its signed versions
    (signatures without an identity), history entries, pointer and monitoring state."""
    signed = {}
    for version in reg.version_ids():
        files = VersionFiles(reg.version_dir(version), name=reg.name, version=version,
                             key=reg.key)
        if files.signed():
            files.verify()
            signed[version] = files.manifest()
    raw = ChampionLog(reg.dir)  # no trust: the records as written
    pointer = raw.champion()
    if pointer is not None:
        VersionFiles(reg.version_dir(pointer["version"]), name=reg.name,
                     version=pointer["version"], key=reg.key).verify()
    state_path = reg.dir / STATE_FILE
    state = read_state(reg.dir) if state_path.is_file() else None
    return signed, raw.history(), pointer, state


def _seal_model(reg: Registry, signed: dict, history: list[dict], pointer: dict | None,
                state: dict | None) -> list[str]:
    """Sign a legacy model's checked records under the registry's new identity (a version's
    new signature covers the manifest its old one verified, not the files as they are now).
    The caller holds the model's lock."""
    said = []
    for version, manifest in signed.items():
        document = signing.sign(reg.key, name=reg.name, version=version, files=manifest,
                                registry=reg.trust.identity)
        write_bytes_atomic(reg.version_dir(version) / signing.SIGNATURE_FILE,
                           dumps(document).encode())
    if signed:
        said.append(f"{reg.name} {', '.join(signed)}: signed for this registry")
    if pointer is not None and pointer.get("event_id") not in {
            h.get("event_id") for h in history}:
        history = [*history, pointer["history_entry"]]
    if history:
        count = rewrite_history(reg.trust, reg.history_path, history)
        said.append(f"{reg.name} history: {count} entries signed in a chain")
    if pointer is not None:
        entry = next(h for h in reg.log.history() if h["event_id"] == pointer["event_id"])
        reg.log.write_pointer(entry)
        said.append(f"{reg.name} champion pointer ({pointer['version']}): signed")
    if state is not None:
        write_state(reg.dir, state, trust=reg.trust)
        said.append(f"{reg.name} monitoring state: signed")
    return said

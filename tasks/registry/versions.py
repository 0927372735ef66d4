"""One registry version's folder: writing its files, signing them, reading them verified.

Every read that leads to unpickling (or to trusting metadata) goes through
:meth:`VersionFiles.read`: the signature and each file's sha256 are checked on the very bytes
that are then used, so a file swapped between the check and the use is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from schemas.errors import IntegrityError, RegistryError
from tasks.decision.served_classifier import RareflowClassifier, from_stored, retrain_hint, writer
from tasks.registry import signing
from tasks.registry._tree_bytes import reproducible_pickling
from tasks.registry.class_paths import old_class_paths
from tasks.runtime.durable_files import (
    dumps,
    fsync_file,
    sha256_file,
    write_bytes_atomic,
    write_json,
)

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
CARD_FILE = "model_card.md"
REFERENCE_FILE = "reference.parquet"
TRAIN_ROWS_FILE = "train_rows.npy"
REPORTS_DIR = "reports"


def registration_id(metadata: dict, run_id: str) -> str:
    """Names one registration of a flow run, so a retried register task finds the version
    it wrote."""
    return hashlib.sha256((dumps(metadata, indent=None) + str(run_id)).encode()).hexdigest()


def check_file_name(name: str) -> str:
    """A version's extra file name: one plain name, not one of the registry's own files."""
    own = (MODEL_FILE, METADATA_FILE, CARD_FILE, REFERENCE_FILE, TRAIN_ROWS_FILE,
           signing.SIGNATURE_FILE)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or ".." in name or name in own:
        raise RegistryError(f"a version's extra file needs a plain name of letters, digits, "
                            f"'_', '-' or '.' that is not a registry file; got {name!r}")
    return name


def write_files(folder: Path, *, model, meta: dict, reference: pd.DataFrame | None,
                card: str | None, train_rows: np.ndarray | None,
                extra: dict[str, bytes] | None = None) -> None:
    """Write a version's files into an empty ``folder`` (``meta`` gets their sha256s);
    ``extra``: more files (e.g. plots) by plain file name."""
    model_path = folder / MODEL_FILE
    # the same model always gives the same bytes; the model itself is not touched
    with open(model_path, "wb") as fh, reproducible_pickling():
        joblib.dump(model, fh, compress=3)
        fh.flush()
        os.fsync(fh.fileno())
    files = {MODEL_FILE: sha256_file(model_path)}
    if reference is not None:
        reference.to_parquet(folder / REFERENCE_FILE, index=False)
        files[REFERENCE_FILE] = sha256_file(folder / REFERENCE_FILE)
    if train_rows is not None:
        np.save(folder / TRAIN_ROWS_FILE, np.asarray(train_rows, dtype=np.uint64),
                allow_pickle=False)
        files[TRAIN_ROWS_FILE] = sha256_file(folder / TRAIN_ROWS_FILE)
    for file_name, content in (extra or {}).items():
        (folder / check_file_name(file_name)).write_bytes(content)
        files[file_name] = sha256_file(folder / file_name)
    (folder / REPORTS_DIR).mkdir()
    if card is not None:
        (folder / CARD_FILE).write_text(card.replace("{version}", meta["version"]),
                                        encoding="utf-8")
    write_json(folder / METADATA_FILE, {**meta, "sha256": files[MODEL_FILE], "files": files})
    for path in folder.iterdir():
        if path.is_file():
            fsync_file(path)


class VersionFiles:
    """The files of one version folder, read only after their signature is checked."""

    def __init__(self, folder: Path, *, name: str, version: str,
                 key: signing.SigningKey | None, registry_id: str | None = None):
        self.folder, self.name, self.version, self.key = Path(folder), name, version, key
        self.registry_id = registry_id  # the registry's identity, which signatures cover
        self.where = f"{name} {version}"

    def sign(self) -> None:
        """Write ``signature.json`` over every file directly in the folder."""
        if self.key is None:
            logger.warning("%s is written unsigned (%s=1 and no signing key)", self.where,
                           signing.ALLOW_UNSIGNED_ENV)
            return
        manifest = {p.name: sha256_file(p) for p in sorted(self.folder.iterdir())
                    if p.is_file() and p.name != signing.SIGNATURE_FILE}
        document = signing.sign(self.key, name=self.name, version=self.version, files=manifest,
                                registry=self.registry_id)
        write_bytes_atomic(self.folder / signing.SIGNATURE_FILE, dumps(document).encode())

    def signed(self) -> bool:
        return (self.folder / signing.SIGNATURE_FILE).is_file()

    def manifest(self) -> dict[str, str] | None:
        """The signed manifest (None: unsigned, and the operator allows unsigned versions)."""
        document = signing.read_signature(self.folder, where=self.where)
        if document is None:
            if not signing.allow_unsigned():
                raise signing.refuse_unsigned(self.where)
            signing.unsigned_warning(self.where)
            return None
        if self.key is None:
            wanted = document.get("key_id") if isinstance(document, dict) else None
            raise RegistryError(f"{self.where} is signed (key id {wanted}) but no signing key "
                                "is configured to check it: "
                                f"{signing.key_hint(self.folder, wanted)}")
        manifest = signing.check_signature(document, self.key, name=self.name,
                                           version=self.version, where=self.where,
                                           registry=self.registry_id, folder=self.folder)
        for required in (MODEL_FILE, METADATA_FILE):
            if required not in manifest:
                raise IntegrityError(f"{self.where}: {signing.SIGNATURE_FILE} does not cover "
                                     f"{required}: refusing to load the version")
        return manifest

    def parse_metadata(self, data: bytes) -> dict:
        try:
            return json.loads(data.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"metadata of {self.where} is corrupt: {exc}") from exc

    def read(self, names: tuple[str, ...] = ()) -> dict[str, bytes]:
        """metadata.json and ``names`` as bytes, each checked against its signed sha256 (or,
        for an allowed unsigned version, against the sha256 its metadata records)."""
        manifest = self.manifest()
        blobs = {}
        for name in dict.fromkeys((METADATA_FILE, *names)):
            path = self.folder / name
            if not path.is_file():
                raise IntegrityError(f"{self.where}: {name} is missing")
            blobs[name] = path.read_bytes()
        if manifest is None:  # unsigned, allowed: the recorded sha256s catch accidents
            meta = self.parse_metadata(blobs[METADATA_FILE])
            recorded = {**meta.get("files", {}), MODEL_FILE: meta.get("sha256"),
                        METADATA_FILE: hashlib.sha256(blobs[METADATA_FILE]).hexdigest()}
        else:
            recorded = manifest
        signing.check_files({name: (data, recorded.get(name)) for name, data in blobs.items()},
                            where=self.where, what="recorded" if manifest is None else "signed")
        return blobs

    def verify(self) -> dict:
        """Check the signature and every file it covers; return the metadata."""
        manifest = self.manifest()
        if manifest is None:
            names = (MODEL_FILE, *self.parse_metadata(
                (self.folder / METADATA_FILE).read_bytes()).get("files", {}))
        else:
            names = tuple(manifest)
        return self.parse_metadata(self.read(names)[METADATA_FILE])

    def check(self) -> tuple[str, str | None]:
        """'ok', 'unsigned', 'no key' or 'INVALID', and what failed: the signature and the
        sha256 of every file it covers, model.joblib's bytes included (hashed, never
        unpickled), as :meth:`verify` checks them."""
        try:
            if signing.read_signature(self.folder, where=self.where) is None:
                return "unsigned", None
            if self.key is None:
                return "no key", None
            self.verify()
        except (RegistryError, OSError) as exc:
            return "INVALID", str(exc)
        return "ok", None

    def state(self) -> str:
        """'ok', 'unsigned', 'no key' or 'INVALID' (see :meth:`check`)."""
        return self.check()[0]

    def sign_checked(self) -> str:
        """Sign an unsigned version after checking the sha256s its metadata records."""
        if self.signed():
            self.verify()
            return "already signed"
        meta = self.parse_metadata((self.folder / METADATA_FILE).read_bytes())
        recorded = {**meta.get("files", {}), MODEL_FILE: meta.get("sha256")}
        for name, expected in recorded.items():
            path = self.folder / name
            if not path.is_file():
                raise IntegrityError(f"{self.where}: {name} is missing: not signing it")
            signing.check_file(name, path.read_bytes(), expected, where=self.where)
        self.sign()
        return "signed"


def lost_signatures(versions: list[VersionFiles], *, force_reason: str | None) -> list[str]:
    """The unsigned versions, of one model's versions oldest first, that a release that signs
    wrote: their metadata names the rareflow release that wrote them (every such release
    signs), or they are newer than a signed version. Their signature was removed.

    Raises:
        IntegrityError: there are such versions and no ``force_reason`` (nothing is signed).
    """
    lost, seen_signed = [], False
    for files in versions:
        if files.signed():
            seen_signed = True
            continue
        meta = files.parse_metadata((files.folder / METADATA_FILE).read_bytes())
        if seen_signed or meta.get("rareflow_version"):
            lost.append(files.version)
    if lost and not (force_reason and force_reason.strip()):
        raise IntegrityError(
            f"{versions[0].name} {', '.join(lost)}: written by a release that signs, but the "
            "signature was removed, so the files may be forged; nothing was signed (inspect "
            "them, or sign anyway with `rareflow models sign --force --reason ...`, recorded "
            "in history)")
    return lost


def load_stored(path: Path, meta: dict) -> RareflowClassifier:
    """Unpickle a version's model file (checksum already verified) as the served classifier.

    Raises:
        RegistryError: the file names classes this rareflow no longer has, or holds
            something it cannot serve; the message names the rareflow that wrote it.
    """
    try:
        with old_class_paths():
            obj = joblib.load(path)
    except (AttributeError, ImportError, TypeError) as exc:
        raise RegistryError(
            f"{meta.get('name')} {meta.get('version')}: model.joblib cannot be loaded by this "
            f"rareflow ({type(exc).__name__}: {exc}); it was written by {writer(meta)}: "
            f"{retrain_hint(meta)}") from exc
    return from_stored(obj, meta)

"""Signed registry versions: an HMAC-SHA256 over a manifest of every file of a version.

A sha256 beside a file catches accidents (a truncated copy, a flipped bit), not someone who
can write the registry: they can replace ``model.joblib`` and its recorded sha256 together.
The signature closes that gap for anyone without the key. ``signature.json`` in the version
folder lists every file of the version (``model.joblib``, ``metadata.json``, the reference
table, the model card, the training-row fingerprints) with its sha256, and an HMAC-SHA256 of
that manifest (with the model name and version id, so a signed version cannot be passed off
as another) under a secret key. Loading checks the HMAC and each file's sha256 *before*
anything is unpickled.

The key comes from, in this order: ``RAREFLOW_SIGNING_KEY`` (the key itself),
``RAREFLOW_SIGNING_KEY_FILE`` (a file holding it), ``RAREFLOW_SIGNING_KEY_BLOCK`` (the name
of a Prefect Secret block), else the user's key file ``signing.key`` in their config folder
(:func:`tasks.runtime.user_dirs.config_dir`), which the first ``rareflow train`` or
``rareflow demo`` with no key creates (:func:`ensure_key`), never inside a registry. Unsigned
versions (written by rareflow 0.1, or with no key) load only when
``RAREFLOW_ALLOW_UNSIGNED=1``, with a warning each time; ``rareflow models sign`` signs them
after checking their recorded sha256s.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import IntegrityError, RegistryError
from tasks.runtime.user_dirs import config_dir, private_dir

logger = logging.getLogger(__name__)

KEY_ENV = "RAREFLOW_SIGNING_KEY"
KEY_FILE_ENV = "RAREFLOW_SIGNING_KEY_FILE"
KEY_BLOCK_ENV = "RAREFLOW_SIGNING_KEY_BLOCK"
ALLOW_UNSIGNED_ENV = "RAREFLOW_ALLOW_UNSIGNED"
SIGNATURE_FILE = "signature.json"
ALGORITHM = "HMAC-SHA256"
FORMAT = 1
FORMAT_WITH_REGISTRY = 2  # the signature also covers the registry's identity
FORMATS = (FORMAT, FORMAT_WITH_REGISTRY)
MIN_KEY_CHARS = 32
KEY_FILE_NAME = "signing.key"
MAX_KEY_FILE_BYTES = 4096
NO_KEY_HELP = (f"set {KEY_FILE_ENV} (or {KEY_ENV}, or {KEY_BLOCK_ENV} naming a Prefect Secret "
               "block) to the key this registry is signed with; with none set, a first "
               "`rareflow train` or `rareflow demo` creates one in the user's config folder")


@dataclass(frozen=True)
class SigningKey:
    """A secret key and where it came from (never the key itself in messages)."""

    secret: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        """A short public name of the key: tells keys apart without revealing them."""
        return hashlib.sha256(b"rareflow-key-id:" + self.secret).hexdigest()[:16]


def generate_key() -> str:
    """A new random key: 64 hex characters (256 bits)."""
    return secrets.token_hex(32)


def write_key_file(path: Path, key: str) -> Path:
    """Write a key to a new file only its owner can read (refuses to overwrite one)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise RegistryError(f"{str(path)!r} already exists: not overwriting a key") from exc
    except OSError as exc:
        raise RegistryError(f"cannot write the key file {str(path)!r}: {exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    return path


def user_key_path(env: Mapping[str, str] | None = None) -> Path | None:
    """Where the user's own key lives: ``signing.key`` in their rareflow config folder."""
    folder = config_dir(env)
    return folder / KEY_FILE_NAME if folder else None


def _checked(text: str, source: str) -> SigningKey:
    text = text.strip()
    if len(text) < MIN_KEY_CHARS:
        raise RegistryError(f"the signing key from {source} has {len(text)} characters; use at "
                            f"least {MIN_KEY_CHARS} (`rareflow keygen` makes one)")
    return SigningKey(text.encode("utf-8"), source)


def _key_from_block(name: str) -> SigningKey:
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except Exception as exc:
        raise RegistryError(f"cannot read the Prefect Secret block {name!r} named by "
                            f"{KEY_BLOCK_ENV}: {type(exc).__name__}: {exc}") from exc
    return _checked(str(value), f"Prefect Secret block {name!r}")


def signing_key(env: Mapping[str, str] | None = None) -> SigningKey | None:
    """The configured key, or None when none is configured.

    Raises:
        RegistryError: a key is configured but cannot be read or is too short.
    """
    env = os.environ if env is None else env
    if env.get(KEY_ENV):
        return _checked(env[KEY_ENV], KEY_ENV)
    if env.get(KEY_FILE_ENV):
        path = Path(env[KEY_FILE_ENV]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RegistryError(f"cannot read the signing key file {str(path)!r} named by "
                                f"{KEY_FILE_ENV}: {exc.strerror or exc}") from exc
        return _checked(text, f"file {str(path)!r}")
    if env.get(KEY_BLOCK_ENV):
        return _key_from_block(env[KEY_BLOCK_ENV])
    path = user_key_path(env)
    if path is not None and path.is_file():
        try:
            return _checked(path.read_text(encoding="utf-8"), f"the user key file {str(path)!r}")
        except OSError as exc:
            raise RegistryError(f"cannot read the user key file {str(path)!r}: "
                                f"{exc.strerror or exc}; fix its permissions or set "
                                f"{KEY_FILE_ENV}") from exc
    return None


def ensure_key(env: Mapping[str, str] | None = None) -> tuple[SigningKey | None, Path | None]:
    """The configured key, or a new one written to the user's key file when none is
    configured; returns (key, path of the file just created, or None).

    Nothing is created when ``RAREFLOW_ALLOW_UNSIGNED=1`` asks for unsigned versions (key
    None then). The file is created atomically (a private temporary file hard-linked into
    place), so two first runs at once end up with the same key.

    Raises:
        RegistryError: a configured key is unreadable, or the key file cannot be written.
    """
    env = os.environ if env is None else env
    key = signing_key(env)
    if key is not None or allow_unsigned(env):
        return key, None
    path = user_key_path(env)
    if path is None:
        raise RegistryError(f"no signing key is configured and there is no home folder to keep "
                            f"one in: {NO_KEY_HELP}")
    try:
        private_dir(path.parent)
        temporary = write_key_file(path.parent / f".{KEY_FILE_NAME}.{secrets.token_hex(8)}",
                                   generate_key())
        try:
            os.link(temporary, path)
            created = path
        except FileExistsError:  # another first run won: use its key
            created = None
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as exc:
        raise RegistryError(f"cannot create the signing key file {str(path)!r} "
                            f"({exc.strerror or exc}): {NO_KEY_HELP}") from exc
    return signing_key(env), created


def allow_unsigned(env: Mapping[str, str] | None = None) -> bool:
    """Whether the operator opted in to unsigned versions (``RAREFLOW_ALLOW_UNSIGNED=1``)."""
    env = os.environ if env is None else env
    return env.get(ALLOW_UNSIGNED_ENV, "").strip().lower() in ("1", "true", "yes")


def _message(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(key: SigningKey, *, name: str, version: str, files: Mapping[str, str],
         registry: str | None = None) -> dict:
    """The signature document of a version whose files have these sha256s (covering the
    registry's identity when it has one: :mod:`tasks.registry.signed_records`)."""
    body = {"format": FORMAT, "algorithm": ALGORITHM, "key_id": key.key_id, "name": name,
            "version": version, "files": dict(sorted(files.items()))}
    if registry is not None:
        body.update(format=FORMAT_WITH_REGISTRY, registry=registry)
    mac = hmac.new(key.secret, _message(body), hashlib.sha256).hexdigest()
    return {**body, "signature": mac}


def check_registry(document: dict, registry: str | None, *, where: str) -> None:
    """Refuse a signature made for another registry than ``registry`` (None: one without an
    identity), or made before this registry had one."""
    signed_for = document.get("registry")
    if signed_for is None and registry is not None:
        raise IntegrityError(f"{where}: {SIGNATURE_FILE} does not cover this registry's identity "
                             "(copied from another registry, or signed before this one had an "
                             "identity): refusing to load the version")
    if signed_for is not None and signed_for != registry:
        raise IntegrityError(f"{where}: {SIGNATURE_FILE} was made for another registry "
                             f"({signed_for}; this one is {registry or 'without an identity'}): "
                             "refusing to load the version")


def _file_key_id(path: Path) -> str | None:
    """The public id of the key a file holds (None: unreadable or not a key)."""
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            return None
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return SigningKey(text.encode("utf-8"), str(path)).key_id if len(text) >= MIN_KEY_CHARS \
        else None


def key_files_near(folder: Path, *, cwd: Path | None = None,
                   env: Mapping[str, str] | None = None) -> list[Path]:
    """Key files someone may have meant for a version folder: ``signing.key`` in it and in
    up to five folders above it (the registry and the folder holding it, e.g. a
    ``rareflow-demo/`` of an older demo), in the working folder and its ``rareflow-demo/``,
    and the user's key file; the ones that exist, each once."""
    cwd = Path.cwd() if cwd is None else cwd
    places = [cwd, cwd / "rareflow-demo"]
    if isinstance(folder, (str, Path)):  # not an object store's folder
        folder = Path(folder).absolute()
        places = [folder, *list(folder.parents)[:5], *places]
    found = [p / KEY_FILE_NAME for p in places] + [user_key_path(env)]
    out: list[Path] = []
    for path in found:
        if path is not None and path.is_file() and path.resolve() not in \
                {p.resolve() for p in out}:
            out.append(path)
    return out


def key_hint(folder: Path, wanted_id: str | None, *, env: Mapping[str, str] | None = None,
             cwd: Path | None = None) -> str:
    """What to do when a version's key is not the one in use: the nearby key file with the
    id it was signed with, if one exists (never the key itself)."""
    candidates = key_files_near(folder, cwd=cwd, env=env)
    for path in candidates:
        if wanted_id and _file_key_id(path) == wanted_id:
            return f"the key file {str(path)!r} has that id: set {KEY_FILE_ENV}={path}"
    looked = (f" (no key file found nearby has it: {', '.join(map(str, candidates))})"
              if candidates else "")
    return f"set {KEY_FILE_ENV} (or {KEY_ENV}, or {KEY_BLOCK_ENV}) to the key it was signed " \
           f"with{looked}"


def check_signature(document, key: SigningKey, *, name: str, version: str,
                    where: str, registry: str | None = None,
                    folder: Path | None = None) -> dict[str, str]:
    """Check a signature document's HMAC; return its manifest (file name -> sha256).

    Raises:
        IntegrityError: the document is malformed, made with another key or for another
            registry, or forged.
    """
    fields = ("format", "algorithm", "key_id", "name", "version", "files", "signature")
    if not isinstance(document, dict) or any(f not in document for f in fields) \
            or not isinstance(document["files"], dict):
        raise IntegrityError(f"{where}: {SIGNATURE_FILE} is not a rareflow signature: "
                             "refusing to load the version")
    if document["algorithm"] != ALGORITHM or document["format"] not in FORMATS:
        raise IntegrityError(f"{where}: {SIGNATURE_FILE} uses {document['algorithm']!r} "
                             f"format {document['format']!r}; expected {ALGORITHM} format "
                             f"{FORMATS}")
    check_registry(document, registry, where=where)
    body = {k: document[k] for k in (*fields, "registry") if k != "signature" and k in document}
    body["name"], body["version"] = name, version  # a signature is only valid where it was made
    expected = hmac.new(key.secret, _message(body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(document["signature"])):
        if document["key_id"] != key.key_id:
            hint = key_hint(folder, str(document["key_id"])) if folder is not None else \
                f"set {KEY_FILE_ENV} to the key it was signed with"
            raise IntegrityError(f"{where}: signed with another key (id {document['key_id']}) "
                                 f"than the one in use (id {key.key_id}, from {key.source}); "
                                 f"refusing to load the version: {hint}")
        raise IntegrityError(f"{where}: {SIGNATURE_FILE} is invalid: its signature does not "
                             "match its content: the version was altered after it was signed, "
                             "or copied from another name or version; refusing to load the "
                             "version")
    return dict(document["files"])


def read_signature(folder: Path, *, where: str):
    """The parsed ``signature.json`` of a version folder, or None when it has none."""
    path = folder / SIGNATURE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{where}: {SIGNATURE_FILE} is unreadable ({exc}): refusing to "
                             "load the version") from exc


def check_file(name: str, data: bytes, expected: str | None, *, where: str) -> None:
    """Compare bytes read from a version's file with the sha256 its manifest records."""
    check_files({name: (data, expected)}, where=where)


def check_files(files: Mapping[str, tuple[bytes, str | None]], *, where: str,
                what: str = "signed") -> None:
    """Compare each file's bytes with its recorded sha256; one error naming every mismatch.

    Raises:
        IntegrityError: a file is not covered by the manifest, or differs from it.
    """
    uncovered = [name for name, (_, expected) in files.items() if expected is None]
    if uncovered:
        raise IntegrityError(f"{where}: {', '.join(uncovered)} not covered by the version's "
                             "signature: refusing to load it")
    changed = {}
    for name, (data, expected) in files.items():
        actual = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(actual, str(expected)):
            changed[name] = (str(expected), actual)
    if changed:
        names = " and ".join(changed)
        first = next(iter(changed.values()))
        raise IntegrityError(
            f"{where}: {names} {'does' if len(changed) == 1 else 'do'} not match "
            f"{'its' if len(changed) == 1 else 'their'} {what} sha256 (expected "
            f"{first[0][:12]}…, found {first[1][:12]}…); changed or truncated since: refusing "
            "to load the version")


def unsigned_warning(where: str) -> None:
    logger.warning("%s is unsigned: accepted only because %s=1 (its sha256s catch accidents, "
                   "not tampering); sign it with `rareflow models sign`", where,
                   ALLOW_UNSIGNED_ENV)


def refuse_unsigned(where: str) -> IntegrityError:
    return IntegrityError(
        f"{where} has no {SIGNATURE_FILE}: refusing to load an unsigned version; sign it with "
        f"`rareflow models sign` after checking where it came from, or set "
        f"{ALLOW_UNSIGNED_ENV}=1 to accept unsigned versions")

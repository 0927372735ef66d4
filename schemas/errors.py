"""Errors every layer raises; each maps to a documented exit status of the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line starts faster without importing pandas for a hint
    import pandas as pd

# Exit statuses (documented in the README).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_REJECTED = 3
EXIT_DRIFT = 4
EXIT_CANNOT_JUDGE = 5
EXIT_REGISTRY = 6


class RareflowError(Exception):
    """Base class of the errors rareflow reports as one line, without a traceback."""

    exit_code = EXIT_INTERNAL


class DataError(RareflowError):
    """The input data cannot be used: unreadable file, wrong columns, bad labels."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(RareflowError):
    """A parameter or configuration file is invalid."""

    exit_code = EXIT_BAD_INPUT


class ValidationFailed(DataError):
    """Validation found failures; ``failures`` holds every one of them as a table."""

    def __init__(self, message: str, failures: pd.DataFrame):
        super().__init__(message)
        self.failures = failures


class RegistryError(RareflowError):
    """The registry is missing something asked for, or a name is not allowed."""

    exit_code = EXIT_REGISTRY


class IntegrityError(RegistryError):
    """A stored artifact does not match its recorded checksum."""


class StorageError(RegistryError):
    """The disk (or the storage under the registry or an output) refused a write: full,
    over quota, or read-only. Not transient: retrying does not help."""


STORAGE_ERRNOS = {"ENOSPC": "no space left", "EDQUOT": "disk quota exceeded",
                  "EROFS": "the file system is read-only", "EFBIG": "the file is too large"}


def storage_error(exc: BaseException, path=None) -> StorageError | None:
    """The one-line StorageError an OSError of a full or read-only disk stands for, naming
    ``path`` (else the error's file); None for any other error."""
    import errno

    if isinstance(exc, StorageError):
        return exc
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    reason = STORAGE_ERRNOS.get(errno.errorcode.get(exc.errno, ""))
    if reason is None:
        return None
    path = path or exc.filename
    where = f" writing {str(path)!r}" if path else ""
    return StorageError(f"storage error{where}: {reason}; nothing was kept from this write: "
                        "free space (or write elsewhere) and run the command again")

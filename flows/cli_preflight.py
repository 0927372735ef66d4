"""What a command that signs versions (``train``, ``demo``) says and checks before any work:
which file or variable chose the model and registry, the signing key (made on a first run in
the user's config folder), and the training preflight."""

from __future__ import annotations

from pathlib import Path

from flows.cli_config import project_origin
from schemas.config import TrainingConfig


def ensure_signing_key(say, *, registry: str | None = None, name: str | None = None) -> None:
    """The signing key a run that signs needs: the configured one, or one made now in the
    user's config folder (said in one line). Never inside a registry.

    No key is made for a model that already has versions (``registry``, ``name``): they were
    signed with another key, which a new one could not verify; the preflight then says which
    key file nearby has their key id."""
    from tasks.registry.open_registry import open_registry
    from tasks.registry.signing import allow_unsigned, ensure_key, signing_key

    if registry is not None and signing_key() is None and not allow_unsigned() \
            and open_registry(registry, name).version_ids():
        return
    _, created = ensure_key()
    if created is not None:
        say(f"No signing key was configured: made one in {created} (mode 0600, this user "
            "only); every rareflow command finds it there. Back it up: models signed with it "
            "load only with it")


def before_training(config: TrainingConfig, *, config_file: Path | None, flags: dict,
                    say) -> None:
    """What ``rareflow train`` says and checks before any work: where the model and registry
    came from (unless from flags), the signing key (made on a first run), and the preflight
    (:func:`tasks.registry.preflight.preflight`), which refuses a champion that could not judge the
    new table, naming what chose that model."""
    origin = project_origin(config_file, flags)
    if origin is not None:
        say(f"Model {config.name!r} in registry {config.registry!r} (from {origin}; "
            "--name/--registry choose another)")
    from tasks.registry.preflight import preflight
    from tasks.runtime.object_store_api import configured_storage

    with configured_storage(config.storage_options):
        ensure_signing_key(say, registry=config.registry, name=config.name)
        preflight(config, chosen_by=origin or "--registry and --name")

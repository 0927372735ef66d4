"""Where a command's settings come from, in one place: flags > ``--config`` file >
``RAREFLOW_*`` variables > ``./rareflow.yaml`` > the config model's defaults.

Each source is a layer (what it says, and the phrase that names it); the layers merge into
the mapping the config model validates, and the same layers say which file or variable chose
the model (``rareflow train``'s first line). Only ``registry`` and ``name`` come from the
variables and the project file.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel

from schemas.config import NAME_ENV, PROJECT_FILE, REGISTRY_ENV, TrainingConfig
from schemas.errors import ConfigError
from schemas.yaml_files import load_yaml_file, merge

PROJECT_KEYS = {"registry": REGISTRY_ENV, "name": NAME_ENV}
DEFAULT_REGISTRY = TrainingConfig.model_fields["registry"].default
DEFAULT_NAME = TrainingConfig.model_fields["name"].default
DEFAULT = "the default"  # where a setting no layer gives comes from


# -- where a field sits in a config model ------------------------------------------------------
def leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """The dotted path of every leaf field of a config model."""
    out = []
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out += leaf_paths(sub, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def field_paths(model: type[BaseModel]) -> dict[str, str]:
    """Every leaf field by its name (when no other leaf has it) and by its dotted path."""
    paths = leaf_paths(model)
    short: dict[str, list[str]] = {}
    for path in paths:
        short.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    return {**{name: found[0] for name, found in short.items() if len(found) == 1},
            **{path: path for path in paths}}


def field_info(model: type[BaseModel], name: str):
    """A field's info by its (unique) name or its dotted path."""
    try:
        path = field_paths(model)[name].split(".")
    except KeyError:
        raise KeyError(f"{model.__name__} has no field {name!r} (or it is not unique: give "
                       "its dotted path)") from None
    for part in path[:-1]:
        model = model.model_fields[part].annotation
    return model.model_fields[path[-1]]


# -- the sources -------------------------------------------------------------------------------
def load_config_file(path: Path | None) -> dict:
    """Read a YAML (or JSON) file of settings (capped: :mod:`schemas.yaml_files`)."""
    if path is None:
        return {}
    data = load_yaml_file(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings")
    return data


def project_layers(*, cwd: Path | None = None, env: dict | None = None) -> list[tuple]:
    """``./rareflow.yaml``, then each ``RAREFLOW_REGISTRY`` / ``RAREFLOW_NAME`` that is set,
    as (phrase naming the source, settings), lowest precedence first.

    Raises:
        ConfigError: the project file holds anything but ``registry`` and ``name``.
    """
    layers = []
    path = Path(cwd or Path.cwd()) / PROJECT_FILE
    if path.is_file():
        found = load_config_file(path)
        unknown = sorted(set(found) - set(PROJECT_KEYS))
        if unknown:
            raise ConfigError(f"{PROJECT_FILE} holds the project's defaults "
                              f"{sorted(PROJECT_KEYS)} only; got {unknown}: move them to a "
                              "--config file")
        layers.append((str(path), found))
    env = os.environ if env is None else env
    layers += [(f"${var}", {key: env[var]}) for key, var in PROJECT_KEYS.items() if env.get(var)]
    return layers


def project_sources(*, cwd: Path | None = None, env: dict | None = None) -> dict:
    """``registry`` and ``name`` from ``./rareflow.yaml``, overridden by ``RAREFLOW_REGISTRY``
    and ``RAREFLOW_NAME``, each as (value, where it came from)."""
    return {key: (value, where) for where, values in project_layers(cwd=cwd, env=env)
            for key, value in values.items()}


def project_defaults(*, cwd: Path | None = None, env: dict | None = None) -> dict:
    """``registry`` and ``name`` every command starts from (see :func:`project_sources`)."""
    return {key: value for key, (value, _) in project_sources(cwd=cwd, env=env).items()}


def flag_layer(model: type[BaseModel], flags: dict) -> dict:
    """Flags (by field name or dotted path; None: not given) as nested settings."""
    paths, nested = field_paths(model), {}
    for name, value in flags.items():
        if value is None:
            continue
        target, keys = nested, paths[name].split(".")
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return nested


def config_layers(model: type[BaseModel], config_file: Path | None, flags: dict, *,
                  cwd: Path | None = None, env: dict | None = None) -> list[tuple]:
    """Every source of a command's settings as (phrase naming it, settings), lowest
    precedence first: project file, variables, ``--config`` file, flags. A command whose
    config has no ``registry`` (``ingest``) takes only the ``name`` of the project ones."""
    layers = [(where, {k: v for k, v in values.items() if k in model.model_fields})
              for where, values in project_layers(cwd=cwd, env=env)]
    if config_file is not None:
        from_file = load_config_file(config_file)
        if "schema_model" in from_file:
            from_file["schema_model"] = resolve_schema_model(from_file["schema_model"],
                                                             config_file)
        layers.append((f"--config {config_file}", from_file))
    layers.append(("flags", flag_layer(model, flags)))
    return layers


def build_config(model: type[BaseModel], config_file: Path | None, flags: dict, *,
                 cwd: Path | None = None, env: dict | None = None):
    """The command's config: every layer of :func:`config_layers` merged (flags win, then the
    config file, then ``RAREFLOW_*`` variables, then ``rareflow.yaml``), then validated."""
    data: dict = {}
    for _, values in config_layers(model, config_file, flags, cwd=cwd, env=env):
        data = merge(data, values)
    return model.model_validate(data)


def chosen_by(model: type[BaseModel], config_file: Path | None, flags: dict, key: str, *,
              cwd: Path | None = None, env: dict | None = None) -> str:
    """The phrase naming the source that gave top-level setting ``key``."""
    where = DEFAULT
    for source, values in config_layers(model, config_file, flags, cwd=cwd, env=env):
        if key in values:
            where = f"--{key}" if source == "flags" else source
    return where


def project_origin(config_file: Path | None, flags: dict, *, cwd: Path | None = None,
                   env: dict | None = None) -> str | None:
    """Where a command's ``registry`` and ``name`` came from, when not both from flags: the
    config file, ``$RAREFLOW_*``, ``./rareflow.yaml`` or the defaults (one phrase)."""
    if all(flags.get(key) is not None for key in PROJECT_KEYS):
        return None
    where = {key: chosen_by(TrainingConfig, config_file, flags, key, cwd=cwd, env=env)
             for key in PROJECT_KEYS}
    if where["registry"] == where["name"]:
        return where["name"]
    return f"registry from {where['registry']}, name from {where['name']}"


def remember_project(registry: str, name: str, *, cwd: Path | None = None) -> str:
    """Write ``./rareflow.yaml`` with this registry and name unless one exists; say which.

    Commands run in this folder then default to that model (``rareflow models show v0001``).
    """
    path = Path(cwd or Path.cwd()) / PROJECT_FILE
    if path.exists():
        return (f"{PROJECT_FILE} exists: left as it is (set {REGISTRY_ENV}={registry} "
                f"{NAME_ENV}={name} to use this model by default)")
    path.write_text(yaml.safe_dump({"registry": str(registry), "name": name},
                                   sort_keys=False), encoding="utf-8")
    return (f"Wrote {PROJECT_FILE} (registry {registry}, name {name}): rareflow commands run "
            "here now use this model unless --registry/--name say otherwise")


def resolve_schema_model(spec: str | None, config_file: Path | None) -> str | None:
    """A ``module:Class`` schema_model found beside the config file, as ``/path/module.py:Class``
    (the command line does not put the config file's folder, or the working directory, on the
    import path); other specs are returned as they are."""
    if not spec or config_file is None or ":" not in spec:
        return spec
    module, _, cls = spec.partition(":")
    candidate = Path(config_file).resolve().parent / (module.replace(".", "/") + ".py")
    return f"{candidate}:{cls}" if not module.endswith(".py") and candidate.is_file() else spec

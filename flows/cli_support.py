"""What every `rareflow` command shares: options drawn from the config schema, config files
merged with flags, and errors reported as one line with their documented exit status."""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel, ValidationError

from schemas.config import (
    NAME_ENV,
    PROJECT_FILE,
    REGISTRY_ENV,
    ScoringConfig,
    TrainingConfig,
)
from schemas.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    ConfigError,
    RareflowError,
    ValidationFailed,
    storage_error,
)
from schemas.yaml_files import load_yaml_file

PREFECT_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks,flows,schemas",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


@dataclass
class CliState:
    """One invocation's settings: ``--debug``, and errors kept to print last (``main``)."""

    debug: bool = False
    defer_errors: bool = False
    deferred: list[str] = field(default_factory=list)

    def say_error(self, text: str) -> None:
        if self.defer_errors:
            self.deferred.append(text)
        else:
            typer.secho(text, fg=typer.colors.RED, err=True)

    def flush(self) -> None:
        for text in self.deferred:
            typer.secho(text, fg=typer.colors.RED, err=True)
        self.deferred.clear()


RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine",
               "prefect.flow_engine")


class _QuietExpectedErrors(logging.Filter):
    """Keep errors rareflow reports itself in one line (at the end) off the terminal.

    Prefect logs such an error three or four times (the task run failed, the task's final
    state, the flow run failed, the flow's final state), each with the whole message: this
    filter, on the terminal's handlers, drops the records that carry it or repeat its text.
    The API's handler (a real server's UI) still gets them.
    """

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(RUN_LOGGERS):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RareflowError):
            text = str(exc)
            self.seen.update({text, repr(text)[1:-1]})
            return False
        message = record.getMessage()
        if any(f"exception {name}: " in message or f"exception: {name}: " in message
               for name in _error_names(RareflowError)):  # a final state's message
            return False
        return not any(text in message for text in self.seen)


def _error_names(cls: type) -> set[str]:
    """The names of ``cls`` and its subclasses (as Prefect's state messages print them)."""
    return {cls.__name__}.union(*(_error_names(sub) for sub in cls.__subclasses__()))


class _TerminalFilterInstaller(logging.Filter):
    """On the run loggers: puts :class:`_QuietExpectedErrors` on the root logger's handlers
    (the terminal), once Prefect has configured them, before the first record reaches them."""

    def __init__(self, quiet: _QuietExpectedErrors):
        super().__init__()
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.logging.handlers import PrefectConsoleHandler

        for handler in logging.getLogger().handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.addFilter(self.quiet)  # once: addFilter skips a filter it has
        return True


_TERMINAL_FILTER = _TerminalFilterInstaller(_QuietExpectedErrors())


def setup(state: CliState) -> None:
    """Prefect's environment for a command-line run (its own Prefect home unless the user
    points at a server: :func:`tasks.runtime._temporary_server.private_prefect_home`), and expected
    errors printed once."""
    from tasks.runtime._temporary_server import use_private_prefect_home

    for key, value in PREFECT_ENV.items():
        os.environ.setdefault(key, value)
    use_private_prefect_home()
    if not state.debug:
        for name in RUN_LOGGERS:
            logging.getLogger(name).addFilter(_TERMINAL_FILTER)


class FlowServer:
    """The Prefect server a command's flows use: Prefect's temporary one, started when the
    command starts (so it boots while the command imports), unless PREFECT_API_URL is set.

    Call :meth:`activate` right before the first flow: it waits until the server answers and
    points Prefect at it for the rest of the process; the server stops at exit, after
    Prefect has sent its last logs and events. If it does not come up, Prefect starts its
    own as usual.
    """

    def __init__(self):
        from tasks.runtime._temporary_server import start_temporary_server

        self.server = start_temporary_server()
        self.active, self.settings = False, None
        if self.server is not None:
            atexit.register(self.server.stop)

    def activate(self) -> None:
        if self.server is None or self.active:
            return
        from prefect.settings import get_current_settings

        settings = get_current_settings()
        if settings.api.url or not settings.server.ephemeral.enabled:  # e.g. from a profile
            self.server.stop()
            self.server = None
            return
        timeout = settings.server.ephemeral.startup_timeout_seconds
        if not self.server.ready(timeout):
            logging.getLogger(__name__).warning(
                "Prefect's temporary server did not start on port %d; Prefect starts its own",
                self.server.port)
            self.server.stop()
            self.server = None
            return
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

        # kept (a dropped generator context would exit): in force for the rest of the process;
        # no UI URL: "View at <url>" would name a server that stops with the command
        self.settings = temporary_settings(updates={PREFECT_API_URL: self.server.api_url,
                                                    PREFECT_UI_URL: ""})
        self.settings.__enter__()
        self.active = True


# -- errors --------------------------------------------------------------------------------------
def pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration: " + "; ".join(parts)


def _fail(state: CliState, exc: Exception, code: int) -> int:
    if state.debug:
        raise exc
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    state.say_error(f"error: {text}")
    return code


def run_reported(state: CliState, fn, *args, **kwargs) -> int:
    """Run a command; expected errors become one line and their exit status."""
    try:
        return fn(*args, **kwargs)
    except ValidationFailed as exc:
        typer.echo(exc.failures.to_string(index=False), err=True)
        return _fail(state, exc, exc.exit_code)
    except RareflowError as exc:
        return _fail(state, exc, exc.exit_code)
    except ValidationError as exc:
        return _fail(state, ConfigError(pydantic_message(exc)), EXIT_BAD_INPUT)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as exc:  # an unexpected failure: say so, keep the traceback for --debug
        if (full := storage_error(exc)) is not None:
            return _fail(state, full, full.exit_code)
        if state.debug:
            raise
        text = " ".join(str(exc).split())
        state.say_error(f"internal error: {type(exc).__name__}: {text} (rerun with --debug "
                        "for the traceback)")
        return EXIT_INTERNAL


def reported(fn):
    """Make ``fn`` (returning an exit status) a command that exits with it.

    The command receives typer's context (added to its signature if ``fn`` does not ask for
    it) to find this invocation's :class:`CliState`.
    """
    signature = inspect.signature(fn, eval_str=True)
    wants_ctx = "ctx" in signature.parameters
    params = list(signature.parameters.values())
    if not wants_ctx:
        params.insert(0, inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           annotation=typer.Context))

    @functools.wraps(fn)
    def command(*args, ctx: typer.Context, **kwargs):
        obj = ctx.find_root().obj
        state = obj if isinstance(obj, CliState) else CliState()
        if wants_ctx:
            kwargs["ctx"] = ctx
        raise typer.Exit(run_reported(state, fn, *args, **kwargs))

    command.__signature__ = signature.replace(parameters=params)
    return command


# -- options from the config schema ------------------------------------------------------------
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


PROJECT_KEYS = {"registry": REGISTRY_ENV, "name": NAME_ENV}


def option_help(model: type[BaseModel], name: str) -> str:
    """Config field ``name``'s description, with its default (or that it is required)."""
    info = field_info(model, name)
    value = None if info.is_required() else info.get_default(call_default_factory=True)
    default = ("(required: here or in --config)" if info.is_required()
               else "" if value is None else f"(default: {value})")
    if name in PROJECT_KEYS:
        default = (f"(default: ${PROJECT_KEYS[name]}, else `{name}` in ./{PROJECT_FILE}, "
                   f"else {value})")
    return " ".join(p for p in (info.description or "", default) if p)


def option(model: type[BaseModel], name: str, *flags: str) -> Any:
    """A typer option (default None: not given) for config field ``name``."""
    return typer.Option(None, *flags, help=option_help(model, name), show_default=False)


def shared_option(model: type[BaseModel], name: str, *flags: str) -> Any:
    """The same, for ``Annotated`` option types several commands share."""
    return typer.Option(*flags, help=option_help(model, name), show_default=False)


ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="YAML file of settings (flags override it).", show_default=False)]
RegistryDir = Annotated[str | None, shared_option(ScoringConfig, "registry", "--registry")]
ModelName = Annotated[str | None, shared_option(ScoringConfig, "name", "--name")]
Version = Annotated[str | None, shared_option(ScoringConfig, "version", "--version")]
DEFAULT_REGISTRY = TrainingConfig.model_fields["registry"].default
DEFAULT_NAME = TrainingConfig.model_fields["name"].default


def load_config_file(path: Path | None) -> dict:
    """Read a YAML (or JSON) file of settings (capped: :mod:`schemas.yaml_files`)."""
    if path is None:
        return {}
    data = load_yaml_file(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings")
    return data


def project_sources(*, cwd: Path | None = None, env: dict | None = None) -> dict:
    """``registry`` and ``name`` from ``./rareflow.yaml``, overridden by ``RAREFLOW_REGISTRY``
    and ``RAREFLOW_NAME``, each as (value, where it came from).

    Raises:
        ConfigError: the project file holds anything else.
    """
    out: dict = {}
    path = Path(cwd or Path.cwd()) / PROJECT_FILE
    if path.is_file():
        found = load_config_file(path)
        unknown = sorted(set(found) - set(PROJECT_KEYS))
        if unknown:
            raise ConfigError(f"{PROJECT_FILE} holds the project's defaults "
                              f"{sorted(PROJECT_KEYS)} only; got {unknown}: move them to a "
                              "--config file")
        out = {key: (value, str(path)) for key, value in found.items()}
    env = os.environ if env is None else env
    out.update({key: (env[var], f"${var}") for key, var in PROJECT_KEYS.items()
                if env.get(var)})
    return out


def project_defaults(*, cwd: Path | None = None, env: dict | None = None) -> dict:
    """``registry`` and ``name`` from ``./rareflow.yaml``, overridden by ``RAREFLOW_REGISTRY``
    and ``RAREFLOW_NAME``: the defaults every command starts from (see
    :func:`project_sources`)."""
    return {key: value for key, (value, _) in project_sources(cwd=cwd, env=env).items()}


def project_origin(config_file: Path | None, flags: dict) -> str | None:
    """Where a command's ``registry`` and ``name`` came from, when not both from flags: the
    config file, ``$RAREFLOW_*``, ``./rareflow.yaml`` or the defaults (one phrase)."""
    if all(flags.get(key) is not None for key in PROJECT_KEYS):
        return None
    from_file = load_config_file(config_file)
    project = project_sources()
    where = {}
    for key in PROJECT_KEYS:
        where[key] = (f"--{key}" if flags.get(key) is not None
                      else f"--config {config_file}" if key in from_file
                      else project[key][1] if key in project else "the default")
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


def build_config(model: type[BaseModel], config_file: Path | None, flags: dict):
    """Merge the project defaults, a config file and command-line flags (flags win, then the
    config file, then ``RAREFLOW_*`` variables, then ``rareflow.yaml``; None: not given).

    A command whose config has no ``registry`` (``ingest``) takes only the ``name`` of the
    project defaults."""
    defaults = {k: v for k, v in project_defaults().items() if k in model.model_fields}
    data = {**defaults, **load_config_file(config_file)}
    if "schema_model" in data:
        data["schema_model"] = resolve_schema_model(data["schema_model"], config_file)
    paths = field_paths(model)
    for name, value in flags.items():
        if value is None:
            continue
        target, keys = data, paths[name].split(".")
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return model.model_validate(data)


def parse_class_weight(text: str | None):
    """``--class-weight``: none, balanced, auto, or a mapping like '{0: 1, 1: 50}'."""
    if text is None:
        return None
    text = text.strip()
    if text in ("auto", "none", "balanced"):
        return text
    problem = ConfigError(f"--class-weight must be none, balanced, auto or a mapping like "
                          f"'{{0: 1, 1: 50}}'; got {text!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise problem from exc
    if not isinstance(value, dict):
        raise problem
    return value


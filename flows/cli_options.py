"""Command-line options drawn from the config models: every leaf field of a command's model is
a flag, its help the field's description and default, so a field added to a model gets its
flag without editing the command.

A flag is ``--<field>`` (underscores as dashes; fields of nested sections too), or
``--<field>-<suffix>`` for a section given a suffix (``--min-recall-gate``), or a name a
command keeps from earlier releases (:class:`FlagNames`). A flag's value reaches the command
under the field's dotted path (:func:`config_flags`); None means not given, so the layers below
the flags (:mod:`flows.cli_config`) decide.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel

from flows.cli_config import PROJECT_KEYS, field_info, leaf_paths
from schemas.config import PROJECT_FILE
from schemas.errors import ConfigError
from schemas.scoring import ScoringConfig

SEPARATOR = "__"  # a flag's parameter name: the field's dotted path, dots replaced


@dataclass(frozen=True)
class FlagNames:
    """The flags of one command: a flag per leaf field of ``model``; ``suffixes`` by section
    (``{"gates": "gate"}``: ``--min-recall-gate``); ``renames`` by dotted path, for flags named
    otherwise (``{"split.n_folds": "--folds"}``; ``--on/--off`` pairs for booleans);
    ``parsers`` by dotted path, for text the model does not take as it is (a mapping)."""

    model: type[BaseModel]
    suffixes: dict[str, str] = field(default_factory=dict)
    renames: dict[str, str] = field(default_factory=dict)
    parsers: dict[str, typing.Callable] = field(default_factory=dict)

    def flag(self, path: str) -> str:
        """The flag declaration of the field at ``path``."""
        if path in self.renames:
            return self.renames[path]
        section, _, name = path.rpartition(".")
        flag = "--" + name.replace("_", "-")
        if section in self.suffixes:
            flag += "-" + self.suffixes[section]
        if flag_type(field_info(self.model, path).annotation) is bool:
            flag += f"/--no-{flag[2:]}"
        return flag

    def parameters(self) -> list[inspect.Parameter]:
        """A typer option per leaf field (default None: not given), in the model's order, as
        keyword parameters named by the field's dotted path (dots as ``__``).

        Raises:
            ValueError: two fields would have the same flag (rename one in ``renames``).
        """
        out, seen = [], {}
        for path in leaf_paths(self.model):
            decl = self.flag(path)
            for name in decl.split("/"):
                if name in seen:
                    raise ValueError(f"{self.model.__name__}: {path} and {seen[name]} both "
                                     f"have flag {name}: give one a name in FlagNames.renames")
                seen[name] = path
            section = path.rpartition(".")[0]
            option = typer.Option(None, decl, help=option_help(self.model, path),
                                  show_default=False,
                                  rich_help_panel=f"{section.capitalize()} options"
                                  if section else None)
            out.append(inspect.Parameter(
                path.replace(".", SEPARATOR), inspect.Parameter.KEYWORD_ONLY, default=option,
                annotation=flag_type(field_info(self.model, path).annotation)))
        return out


def flag_type(annotation) -> type:
    """What a field's flag is parsed as: int, float or bool (also when optional), else text
    (choices and the rest: the config model validates them)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else str
    return annotation if annotation in (int, float, bool) else str


def config_flags(names: FlagNames):
    """Give a typer command a flag per field of ``names.model`` after its own parameters.

    The command receives them as ``flags``: the fields by dotted path, None when not given
    (the layers below the flags then decide), text parsed by ``names.parsers``."""
    params = names.parameters()
    paths = {p.name: p.name.replace(SEPARATOR, ".") for p in params}

    def wrap(fn):
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "flags"]

        @functools.wraps(fn)
        def command(*args, **kwargs):
            flags = {path: kwargs.pop(name) for name, path in paths.items()}
            for path, parse in names.parsers.items():
                flags[path] = parse(flags[path])
            return fn(*args, flags=flags, **kwargs)

        command.__signature__ = signature.replace(parameters=[*own, *params])
        return command

    return wrap


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


def option_help(model: type[BaseModel], name: str) -> str:
    """Config field ``name``'s description, with its default (or that it is required)."""
    info = field_info(model, name)
    value = None if info.is_required() else info.get_default(call_default_factory=True)
    default = ("(required: here or in --config)" if info.is_required()
               else "" if value is None else f"(default: {value})")
    if choices := literal_choices(info.annotation):
        default = f"(one of: {', '.join(choices)}{'; ' + default[1:] if default else ')'}"
    if name in PROJECT_KEYS:
        default = (f"(default: ${PROJECT_KEYS[name]}, else `{name}` in ./{PROJECT_FILE}, "
                   f"else {value})")
    return " ".join(p for p in (info.description or "", default) if p)


def literal_choices(annotation) -> tuple[str, ...]:
    """The values a field of choices takes (also when optional), else ()."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    return ()


def option(model: type[BaseModel], name: str, *flags: str) -> Any:
    """A typer option (default None: not given) for config field ``name``, for a command
    whose parameters are not a config model (``deploy init``)."""
    return typer.Option(None, *flags, help=option_help(model, name), show_default=False)


def shared_option(model: type[BaseModel], name: str, *flags: str) -> Any:
    """The same, for ``Annotated`` option types several commands share."""
    return typer.Option(*flags, help=option_help(model, name), show_default=False)


ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="YAML file of settings (flags override it).", show_default=False)]
RegistryDir = Annotated[str | None, shared_option(ScoringConfig, "registry", "--registry")]
ModelName = Annotated[str | None, shared_option(ScoringConfig, "name", "--name")]

"""Command-line options drawn from a whole config section: one ``--<field>-<suffix>`` flag per
field, e.g. every field of ``Gates`` as ``--min-recall-gate``, ``--max-normalised-cost-gate``,
..., so a field added to the section gets its flag (and its help, from the field) without
editing the command."""

from __future__ import annotations

import functools
import inspect
import typing

from pydantic import BaseModel

from flows.cli_support import option

SEPARATOR = "__"  # a flag's parameter name: <section>__<field> (its dotted path, dots replaced)


def flag_type(annotation) -> type:
    """What typer parses a field's flag as (choices and the rest as text: the config model
    validates them)."""
    return annotation if annotation in (int, float, bool) else str


def section_fields(model: type[BaseModel], section: str) -> dict[str, typing.Any]:
    """The fields of ``model``'s section ``section`` (a nested config model)."""
    return model.model_fields[section].annotation.model_fields


def section_options(model: type[BaseModel], section: str, *, suffix: str):
    """Add an option per field of ``model.<section>`` to a typer command.

    The values reach the command's ``ctx.params`` under the field's dotted path
    (``gates.min_recall``), the form ``build_config`` takes (None: not given).
    """
    params = [
        inspect.Parameter(f"{section}{SEPARATOR}{name}", inspect.Parameter.KEYWORD_ONLY,
                          default=option(model, f"{section}.{name}",
                                         f"--{name.replace('_', '-')}-{suffix}"),
                          annotation=flag_type(info.annotation))
        for name, info in section_fields(model, section).items()]

    def wrap(fn):
        signature = inspect.signature(fn, eval_str=True)

        @functools.wraps(fn)
        def command(*args, **kwargs):
            ctx = kwargs.get("ctx")
            for p in params:
                kwargs.pop(p.name, None)
                if ctx is not None and p.name in ctx.params:
                    ctx.params[p.name.replace(SEPARATOR, ".")] = ctx.params.pop(p.name)
            return fn(*args, **kwargs)

        command.__signature__ = signature.replace(
            parameters=[*signature.parameters.values(), *params])
        return command

    return wrap

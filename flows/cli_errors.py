"""Errors of a `rareflow` command as one line with their documented exit status
(``schemas/errors.py``), and the invocation's state that says how (``--debug``: the traceback;
errors kept to print last)."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import typer
from pydantic import ValidationError

from schemas.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    ConfigError,
    RareflowError,
    ValidationFailed,
    storage_error,
)


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


def pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        shown = "" if "storage_options" in err["loc"] else f" (got {err.get('input')!r})"
        parts.append(f"{where}: {err['msg']}{shown}")  # storage options: never echoed
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

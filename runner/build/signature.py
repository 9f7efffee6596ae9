"""Why a function cannot be served, on one line: which parameter of which function, and its type.

Turning a function into a tool, resource or prompt builds a pydantic model of its
parameters and that model's JSON Schema. When a parameter's type has no schema
(a socket, a lock, an arbitrary class), pydantic says so in several lines with a
URL and without the parameter's name. This finds the parameter by trying each one
alone, and says what to use instead.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver.exceptions import InvalidSignature
from mcp.server.mcpserver.resolve import find_resolved_parameters
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from pydantic import ConfigDict, PydanticUserError, create_model

ARBITRARY = ConfigDict(arbitrary_types_allowed=True)  # as the SDK builds its argument models
SCHEMABLE = "str, int, float, bool, a list or dict of those, a dataclass, a TypedDict or a pydantic model"


def registration_error(fn: Callable[..., Any], exc: Exception) -> str:
    """One line for why `fn` could not be registered."""
    name = getattr(fn, "__name__", repr(fn))
    if isinstance(exc, PydanticUserError):
        culprit = unschemable_parameter(fn)
        if culprit is not None:
            param, annotation = culprit
            return (
                f"parameter {param!r} of {name}() has type {type_name(annotation)}, which has no JSON Schema "
                f"(use {SCHEMABLE})"
            )
    if isinstance(exc, InvalidSignature) and exc.__cause__ is not None:
        cause = exc.__cause__
        return f"cannot read the type annotations of {name}(): {type(cause).__name__}: {first_line(str(cause))}"
    return first_line(str(exc))


def unschemable_parameter(fn: Callable[..., Any]) -> tuple[str, Any] | None:
    """The first parameter whose type annotation has no JSON Schema, with that annotation."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
        parameters = inspect.signature(fn).parameters
    except Exception:  # annotations that do not evaluate are reported by the caller's other branch
        return None
    skip = {find_context_parameter(fn), *_resolved(fn)}  # filled by the SDK, never part of the schema
    for param in parameters:
        if param in skip or param not in hints:
            continue
        model = create_model(
            "Parameter", __config__=ConfigDict(arbitrary_types_allowed=True), value=(hints[param], ...)
        )
        try:
            model.model_json_schema()
        except PydanticUserError:
            return param, hints[param]
    return None


def _resolved(fn: Callable[..., Any]) -> list[str]:
    """The parameters filled by resolvers (`Annotated[T, Resolve(...)]`): their types need no JSON Schema."""
    try:
        return list(find_resolved_parameters(fn))
    except Exception:  # a misplaced Resolve: the SDK's own message says so
        return []


def type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        if annotation.__module__ == "builtins":
            return annotation.__qualname__
        return f"{annotation.__module__}.{annotation.__qualname__}"
    return repr(annotation).replace("typing.", "")


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text

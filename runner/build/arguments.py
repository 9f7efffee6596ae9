"""A client's bad arguments are the client's error: INVALID_PARAMS naming the argument.

The SDK renders a prompt, or reads a resource template, by calling the user's
function through pydantic's `validate_call`. A missing, unknown or ill-typed
argument therefore surfaces as a `ValueError` or an "unexpected" resource
error: the client sees "Internal server error" and the log gets an ERROR
traceback, as if the server were broken. These checks run first, against the
same argument model the SDK derives from the function, so a client mistake is
answered with JSON-RPC INVALID_PARAMS that names the argument, and is logged
at INFO, in both protocol generations.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.resources import ResourceTemplate
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import BaseModel, ValidationError

logger = logging.getLogger("runner")

# The argument model of each served function, built once. Weak keys: a reload that
# replaces a function must not keep the old one (and its module) alive here.
_models: weakref.WeakKeyDictionary[Callable[..., Any], type[BaseModel]] = weakref.WeakKeyDictionary()


def check_prompt_arguments(prompt: Prompt, arguments: Mapping[str, Any] | None) -> None:
    """Raise INVALID_PARAMS for a missing, unknown or ill-typed prompt argument."""
    given = dict(arguments or {})
    what = f"prompt {prompt.name!r}"
    declared = [arg.name for arg in prompt.arguments or []]
    for arg in prompt.arguments or []:
        if arg.required and arg.name not in given:
            _reject(arg.name, f"{what}: missing required argument {arg.name!r}")
    for name in given:
        if name not in declared:
            expected = ", ".join(repr(n) for n in declared) or "none"
            _reject(name, f"{what}: unknown argument {name!r} (it takes: {expected})")
    _validate(what, prompt.fn, prompt.context_kwarg, given)


def check_template_arguments(template: ResourceTemplate, params: Mapping[str, Any]) -> None:
    """Raise INVALID_PARAMS when a URI's parts do not fit the template function's parameter types."""
    _validate(f"resource template {template.uri_template!r}", template.fn, template.context_kwarg, dict(params))


def _validate(what: str, fn: Callable[..., Any], context_kwarg: str | None, given: dict[str, Any]) -> None:
    model = _models.get(fn)
    if model is None:
        model = func_metadata(
            fn, skip_names=[context_kwarg] if context_kwarg else [], structured_output=False
        ).arg_model
        _models[fn] = model
    try:
        model.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "arguments"
        if first["type"] == "missing":
            _reject(name, f"{what}: missing required argument {name!r}")
        # The message, never the value: the value is the caller's data.
        _reject(name, f"{what}: invalid argument {name!r}: {first['msg']}")


def _reject(argument: str, message: str) -> NoReturn:
    logger.info("rejected a client's arguments: %s", message)
    raise MCPError(code=INVALID_PARAMS, message=message, data={"argument": argument})

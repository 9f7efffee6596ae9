"""Bind tool parameters to claims of the caller's verified token (`bind: {user: sub}`).

The bound parameters vanish from the tool's input schema (the model never
sees them) and are filled from the token on every call, so a model can never
supply or override them. Any other code can read the token itself with the
SDK's `get_access_token()`: subject, client_id, scopes and all claims.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver.exceptions import ToolError


class BindError(ValueError):
    """A `bind:` that does not fit the function."""


def claim_value(name: str) -> Any:
    """A claim of the current caller's token; `scope` is the list of scopes; dotted names reach into objects."""
    token = get_access_token()
    if token is None:
        raise ToolError("this tool needs an authenticated caller")
    if name == "scope":
        return list(token.scopes)
    value: Any = token.claims or {}
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ToolError(f"the access token has no {name!r} claim")
        value = value[part]
    return value


def bind_claims(fn: Callable[..., Any], bind: Mapping[str, str]) -> Callable[..., Any]:
    """`fn` with the parameters in `bind` removed from its signature and filled from token claims."""
    signature = inspect.signature(fn, eval_str=True)
    unknown = [param for param in bind if param not in signature.parameters]
    if unknown:
        names = ", ".join(repr(p) for p in unknown)
        noun = "parameter" if len(unknown) == 1 else "parameters"
        raise BindError(f"bind names {noun} {names} that {fn.__name__}() does not take")
    hints = {k: v for k, v in typing.get_type_hints(fn, include_extras=True).items() if k not in bind}

    def claims() -> dict[str, Any]:
        return {param: claim_value(claim) for param, claim in bind.items()}

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **{**kwargs, **claims()})

        wrapper = async_wrapper
    else:

        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **{**kwargs, **claims()})

        wrapper = sync_wrapper
    functools.update_wrapper(wrapper, fn)
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined,union-attr]
        parameters=[p for name, p in signature.parameters.items() if name not in bind]
    )
    wrapper.__annotations__ = hints
    return wrapper

"""Prompts and resource templates that ask the user, with the SDK's resolver API.

The SDK fills `Annotated[T, Resolve(fn)]` parameters of *tools* only: the resolver
returns `Elicit`, `Sample` or `ListRoots`, and the SDK asks the client (a real
server-to-client request for a handshake-era client, an `InputRequiredResult` with
`requestState` for a 2026-07-28 one). A prompt or a resource template with such a
parameter would instead list it as an argument the client must send.

`asking(fn)` gives prompts and templates the same: it returns an async function
whose signature has the resolved parameters removed and the SDK's `Context` added,
and which resolves them with the SDK's own `resolve_arguments` before calling
`fn` (or answers the round's `InputRequiredResult`, which the SDK passes through
for prompts and templates). A function without resolved parameters is returned as is.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import build_resolver_plans, find_resolved_parameters, resolve_arguments
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from mcp_types import InputRequiredResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

CONTEXT = "mcp_runner_context"  # the added parameter's name, when the function takes no Context of its own


def asking(fn: Callable[..., Any], *, static: bool = False) -> Callable[..., Any]:
    """`fn`, or a wrapper that resolves its `Resolve(...)` parameters first (see the module docstring).

    `static`: `fn` serves a static resource, which the SDK cannot let ask (a ValueError saying so).
    """
    resolved = find_resolved_parameters(fn)
    if not resolved:
        return fn
    if static:
        names = ", ".join(repr(name) for name in resolved)
        raise ValueError(
            f"a static resource cannot ask (Resolve(...) in {names}): give its URI a {{parameter}} to make it "
            "a template, or ask in a tool"
        )
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    own_context = find_context_parameter(fn)
    context_name = own_context or CONTEXT
    kept = [p for name, p in signature.parameters.items() if name not in resolved and name != own_context]
    plans = build_resolver_plans(resolved, {p.name for p in kept})

    async def resolving(**kwargs: Any) -> Any:
        context = kwargs.pop(context_name)
        answers = await resolve_arguments(resolved, plans, kwargs, context)
        if isinstance(answers, InputRequiredResult):
            return answers  # this round's questions; the body runs once every answer is in
        call = {**kwargs, **answers}
        if own_context is not None:
            call[own_context] = context
        result = fn(**call)
        return await result if inspect.isawaitable(result) else result

    functools.update_wrapper(resolving, fn)
    del resolving.__wrapped__  # type: ignore[attr-defined]  # the signature below is the one to read
    context_param = inspect.Parameter(context_name, inspect.Parameter.KEYWORD_ONLY, annotation=Context)
    resolving.__signature__ = signature.replace(parameters=[*kept, context_param])  # type: ignore[attr-defined]
    resolving.__annotations__ = {
        **{p.name: hints[p.name] for p in kept if p.name in hints},
        context_name: Context,
        **({"return": hints["return"]} if "return" in hints else {}),
    }
    return resolving


def rounds_need_a_modern_client(result: Any, context: Any, name: str) -> None:
    """A tool that answers `input_required` itself, called by a handshake-era client: a tool error saying so.

    Such a client cannot take that answer (the SDK would refuse it with "Handler returned an invalid
    result"); a resolver asks it with real server-to-client requests instead (docs/asking.md).
    """
    version = getattr(context, "protocol_version", None)
    if isinstance(result, InputRequiredResult) and version is not None and version not in MODERN_PROTOCOL_VERSIONS:
        raise ToolError(
            f"tool {name!r} answers with input_required, which needs a 2026-07-28 client (this one speaks {version})"
        )

"""An upstream's form schema reaches a 2026-07-28 client with the top-level title and description it was sent with.

Why: on 2026-07-28 the SDK shapes every `tools/call` result against the protocol version's surface
(`ServerRunner._serialize`), whose `requestedSchema` names only `$schema`, `type`, `properties` and
`required`, and drops every other key. An upstream's question asked in rounds (rounds.py) is such a
result, so its form lost the top-level `title` and `description` a 2025-11-25 client, asked on the
call's stream, does see. The spec's schema leaves a requestedSchema open to more keys; `title` and
`description` are the JSON Schema annotations a client shows above the form.

So the round that asks notes the question's annotations (`note`), and this server middleware, outside
the SDK's shaping, puts them back into the wire result it returns. Only those two keys, only strings,
only onto an elicitation form of an `input_required` result: the spec's own keys stay as the SDK
validated them, and other keys the spec does not name are dropped, as the SDK does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import mcp_types as types

ANNOTATIONS = ("title", "description")  # the top-level keys put back, each only when a string

# The annotations of the questions the current tools/call round asks, by input request key.
_ASKED: ContextVar[dict[str, dict[str, str]] | None] = ContextVar("runner_upstream_form_annotations", default=None)


def note(key: str, request: types.InputRequest) -> None:
    """The round asks `request` under `key`: keep its form's top-level annotations for `restore`."""
    asked = _ASKED.get()
    if asked is None or not isinstance(request, types.ElicitRequest):
        return
    schema = getattr(request.params, "requested_schema", None)
    if isinstance(schema, dict):
        kept = {name: value for name in ANNOTATIONS if isinstance(value := schema.get(name), str)}
        if kept:
            asked[key] = kept


async def restore(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Server middleware: a tools/call round's wire result gets back the annotations its questions were noted with."""
    if ctx.method != "tools/call":
        return await call_next(ctx)
    asked: dict[str, dict[str, str]] = {}
    token = _ASKED.set(asked)
    try:
        result = await call_next(ctx)
    finally:
        _ASKED.reset(token)
    if asked and isinstance(result, dict) and result.get("resultType") == "input_required":
        requests = result.get("inputRequests")
        for key, kept in asked.items():
            request = requests.get(key) if isinstance(requests, dict) else None
            params = request.get("params") if isinstance(request, dict) else None
            schema = params.get("requestedSchema") if isinstance(params, dict) else None
            if isinstance(schema, dict):
                schema.update(kept)
    return result

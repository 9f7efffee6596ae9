"""A multi-round call (2026-07-28 `input_required`) and a reload between its rounds.

A 2026-07-28 client answers a tool's (prompt's, template's) questions by calling it
again with `inputResponses` and the `requestState` the server gave it. A reload may
land between two rounds. The SDK's seal on `requestState` belongs to the server
object, which a reload keeps (`FastMCPSignInWrapper.adopt`), so the next round is
accepted; if the function and its resolvers are unchanged, the call simply goes on.

If they changed, the answers were given to questions of the old code: going on would
hand them to code that never asked them. So each round's `requestState` carries a
fingerprint of the function and its resolvers (their source, or their bytecode when
there is no source), and a round whose fingerprint is not the served one's fails
with a clear error (-32602) asking the client to call again. The fingerprint is put
in and taken out inside the SDK's seal, so the client never sees it unsealed and
the function never sees it at all.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import marshal
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from mcp.server.mcpserver.resolve import find_resolved_parameters
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

# The methods whose results may ask (`input_required`), and the param that names the target.
TARGETS = {"tools/call": ("tool", "name"), "prompts/get": ("prompt", "name"), "resources/read": ("resource", "uri")}


def fingerprint(fn: Callable[..., Any]) -> str:
    """A digest of `fn`'s code and of every resolver it depends on (transitively)."""
    digest = hashlib.sha256()
    seen: set[int] = set()

    def add(function: Callable[..., Any]) -> None:
        if id(function) in seen:
            return
        seen.add(id(function))
        digest.update(_code(function))
        try:
            resolved = find_resolved_parameters(function)
        except Exception:  # the SDK reports a bad signature when it registers the function
            return
        for marker, _ in resolved.values():
            add(marker.fn)

    add(fn)
    return digest.hexdigest()[:16]


def _code(function: Callable[..., Any]) -> bytes:
    try:
        return inspect.getsource(function).encode()
    except (OSError, TypeError):
        code = getattr(function, "__code__", None) or getattr(type(function).__call__, "__code__", None)
        return marshal.dumps(code) if code is not None else repr(function).encode()


class RoundPins:
    """Server middleware, inside the SDK's `requestState` seal: see the module docstring.

    `current(kind, target)` is the served fingerprint of a tool/prompt (by name) or resource (by URI).
    """

    def __init__(self, current: Callable[[str, str], str | None]) -> None:
        self.current = current

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Any]) -> Any:
        if ctx.method not in TARGETS or not isinstance(ctx.params, Mapping):
            return await call_next(ctx)
        kind, key = TARGETS[ctx.method]
        target = str(ctx.params.get(key))
        pin = self.current(kind, target)
        state = ctx.params.get("requestState")
        if isinstance(state, str):
            ctx = replace(ctx, params={**ctx.params, "requestState": self._unpin(state, pin, kind, target)})
        result = await call_next(ctx)
        return self._pin(result, pin)

    @staticmethod
    def _unpin(state: str, pin: str | None, kind: str, target: str) -> str:
        try:
            pinned = json.loads(state)
            theirs, inner = pinned["runner_pin"], pinned["state"]
        except (ValueError, KeyError, TypeError):
            return state  # not pinned (no fingerprint was known): the SDK reads it as it is
        if theirs != pin:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"{kind} {target!r} changed (the server reloaded it) between the rounds of this call, so "
                "the answers given were to the old code's questions: call it again from the start",
            )
        return str(inner)

    @staticmethod
    def _pin(result: Any, pin: str | None) -> Any:
        if pin is None:
            return result
        if isinstance(result, Mapping):
            state = result.get("requestState")
            if result.get("resultType") == "input_required" and isinstance(state, str):
                return {**result, "requestState": json.dumps({"runner_pin": pin, "state": state})}
            return result
        state = getattr(result, "request_state", None)
        if getattr(result, "result_type", None) == "input_required" and isinstance(state, str):
            return result.model_copy(update={"request_state": json.dumps({"runner_pin": pin, "state": state})})
        return result

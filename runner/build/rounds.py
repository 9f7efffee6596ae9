"""A multi-round call (2026-07-28 `input_required`) and a reload between its rounds.

A 2026-07-28 client answers a tool's (prompt's, template's) questions by calling it
again with `inputResponses` and the `requestState` the server gave it. A reload may
land between two rounds. The SDK's seal on `requestState` belongs to the server
object, which a reload keeps (`FastMCPSignInWrapper.adopt`), so the next round is
accepted; if the tool is unchanged (as defined below), the call simply goes on.

If they changed, the answers were given to questions of the old code: going on would
hand them to code that never asked them. So each round's `requestState` carries a
fingerprint of the function and its resolvers (their bytecode, names and constants)
and of the source of the user modules they are made of (runner/build/made_of.py: their
modules, the modules of the types they name, and what those import), the same in every
process with the same files, and a round whose fingerprint is not the served one's
fails with a clear error (-32602) asking the client to call again. The fingerprint is put
in and taken out inside the SDK's seal, so the client never sees it unsealed and
the function never sees it at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import types
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from runner.build.made_of import UNREADABLE, functions_of, source_digest

# The methods whose results may ask (`input_required`), and the param that names the target.
TARGETS = {"tools/call": ("tool", "name"), "prompts/get": ("prompt", "name"), "resources/read": ("resource", "uri")}


def fingerprint(fn: Callable[..., Any]) -> str:
    """A digest of `fn`'s code, every resolver's (transitively), and the user modules they are made of
    (runner/build/made_of.py); kept per function object."""
    try:
        known = _fingerprints.get(fn)
    except TypeError:  # not weakly referenceable: computed each time
        known = None
    if known is not None:
        return known
    digest = hashlib.sha256()
    for function in functions_of(fn):
        digest.update(_code(function))
    try:
        digest.update(source_digest(fn).encode())
    except Exception:  # what it is made of cannot be told: a pin that matches no other process or build
        digest.update(UNREADABLE.encode() + str(id(fn)).encode())
    pin = digest.hexdigest()[:16]
    with contextlib.suppress(TypeError):
        _fingerprints[fn] = pin
    return pin


# Weak keys: a reload that replaces a function must not keep the old one (and its module) alive here.
_fingerprints: weakref.WeakKeyDictionary[Callable[..., Any], str] = weakref.WeakKeyDictionary()


def _code(function: Callable[..., Any]) -> bytes:
    """The function's bytecode, names and constants: what it does, not where its lines are.

    Not its source: the file may already hold the next version when this is first asked, and
    not `marshal` of the code object, whose line numbers move with any edit above the function.
    The same on every replica (no hash-ordered or address-bearing parts), so a round may land on any.
    """
    call = getattr(type(function), "__call__", None)  # noqa: B004 - a callable object's code is its __call__'s
    code = getattr(function, "__code__", None) or getattr(call, "__code__", None)
    if code is None:
        return f"{type(function).__module__}.{type(function).__qualname__}".encode()
    defaults = (getattr(function, "__defaults__", None), getattr(function, "__kwdefaults__", None))
    return _code_bytes(code) + stable(defaults).encode()


def _code_bytes(code: types.CodeType) -> bytes:
    parts = [code.co_code, repr((code.co_names, code.co_varnames, code.co_freevars)).encode()]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if isinstance(const, types.CodeType) else stable(const).encode())
    return b"\0".join(parts)


def stable(value: Any) -> str:
    """`repr`, with sets sorted (their order follows string hashing, which differs per process)."""
    if isinstance(value, frozenset | set):
        return "{" + ",".join(sorted(stable(item) for item in value)) + "}"
    if isinstance(value, tuple | list):
        return "(" + ",".join(stable(item) for item in value) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(sorted(f"{stable(k)}:{stable(v)}" for k, v in value.items())) + "}"
    if value is None or isinstance(value, str | bytes | int | float | complex | bool):
        return repr(value)
    return f"<{type(value).__module__}.{type(value).__qualname__}>"  # an object default: its type only


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
        state = ctx.params.get("requestState")
        if isinstance(state, str):
            pin = self.current(kind, target)
            ctx = replace(ctx, params={**ctx.params, "requestState": self._unpin(state, pin, kind, target)})
        result = await call_next(ctx)
        return self._pin(result, lambda: self.current(kind, target))  # computed only for a round that asks

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
    def _pin(result: Any, current: Callable[[], str | None]) -> Any:
        if isinstance(result, Mapping):
            state = result.get("requestState")
            if result.get("resultType") == "input_required" and isinstance(state, str):
                pin = current()
                return result if pin is None else {**result, "requestState": _pinned(pin, state)}
            return result
        state = getattr(result, "request_state", None)
        if getattr(result, "result_type", None) == "input_required" and isinstance(state, str):
            pin = current()
            return result if pin is None else result.model_copy(update={"request_state": _pinned(pin, state)})
        return result


def _pinned(pin: str, state: str) -> str:
    return json.dumps({"runner_pin": pin, "state": state})

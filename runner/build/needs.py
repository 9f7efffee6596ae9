"""What a tool, prompt or resource needs from the client: `sampling`, `elicitation`, `roots` (SEP-2575).

A server must not rely on a capability the client did not declare: such a request
is refused with JSON-RPC -32021 (MissingRequiredClientCapability, HTTP 400 on
2026-07-28) whose `data.requiredCapabilities` names what is missing, before the
function runs. What an entry needs is the manifest's `requires_client:` plus what
its resolvers show: a resolver annotated to return only `Elicit[...]`, `Sample` or
`ListRoots` always asks, so its consumer needs that capability. A resolver that may
return a plain value instead (`-> Elicit[Name] | Name`) asks only sometimes (say,
only when the client can answer) and adds nothing.

The SDK checks again when a resolver actually asks; checking first, here, also
covers functions that ask without resolvers (`ctx.session.create_message`) and
refuses before any resolver runs.
"""

from __future__ import annotations

import contextlib
import types
import typing
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from mcp.server.mcpserver.resolve import Elicit, ListRoots, Sample, find_resolved_parameters
from mcp.shared.exceptions import MCPError
from mcp_types import MISSING_REQUIRED_CLIENT_CAPABILITY, ClientCapabilities

CAPABILITIES = ("sampling", "elicitation", "roots")


def inferred(fn: Callable[..., Any]) -> frozenset[str]:
    """The capabilities `fn`'s resolvers (and theirs, transitively) always ask for.

    Every build asks this of every entry: a function whose parameter annotations are evaluated and
    plain is answered without resolving its type hints (26 us a function otherwise), and an answer
    is kept per function object, which a reload that did not re-import its module hands back.
    """
    if not _may_resolve(fn):
        return frozenset()
    try:
        return _inferred[fn]
    except (KeyError, TypeError):  # not known yet, or not weakly referenceable
        pass
    needs = _walk(fn)
    with contextlib.suppress(TypeError):
        _inferred[fn] = needs
    return needs


_inferred: weakref.WeakKeyDictionary[Callable[..., Any], frozenset[str]] = weakref.WeakKeyDictionary()


def _may_resolve(fn: Callable[..., Any]) -> bool:
    """False when every parameter annotation of `fn` is evaluated and none is `Annotated[...]`.

    Text annotations (`from __future__ import annotations`) may name an alias of one: resolved.
    """
    target = fn if hasattr(fn, "__code__") else type(fn).__call__
    annotations = getattr(target, "__annotations__", None) or {}
    return any(
        isinstance(a, str) or typing.get_origin(a) is typing.Annotated
        for name, a in annotations.items()
        if name != "return"
    )


def _walk(fn: Callable[..., Any]) -> frozenset[str]:
    needs: set[str] = set()
    seen: set[int] = set()

    def walk(consumer: Callable[..., Any]) -> None:
        for marker, _ in find_resolved_parameters(consumer).values():
            resolver = marker.fn
            if id(resolver) in seen:
                continue
            seen.add(id(resolver))
            asked = _always_asks(resolver)
            if asked is not None:
                needs.add(asked)
            walk(resolver)

    walk(fn)
    return frozenset(needs)


def _always_asks(resolver: Callable[..., Any]) -> str | None:
    """The capability a resolver whose only return arm is a request marker asks for."""
    target = resolver if callable(resolver) and hasattr(resolver, "__code__") else type(resolver).__call__
    try:
        annotation = typing.get_type_hints(target).get("return")
    except Exception:
        return None
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    arms = typing.get_args(annotation) if union else (annotation,)
    if len(arms) != 1:
        return None
    arm = typing.get_origin(arms[0]) or arms[0]
    for kind, capability in ((Elicit, "elicitation"), (Sample, "sampling"), (ListRoots, "roots")):
        if isinstance(arm, type) and issubclass(arm, kind):
            return capability
    return None


def refuse_undeclared(needs: Iterable[str], declared: ClientCapabilities | None, what: str) -> None:
    """Raise -32021 naming every capability in `needs` the client did not declare."""
    missing = [c for c in CAPABILITIES if c in needs and getattr(declared, c, None) is None]
    if not missing:
        return
    names = ", ".join(missing)
    raise MCPError(
        code=MISSING_REQUIRED_CLIENT_CAPABILITY,
        message=f"{what} needs the client capability {names}, which this client did not declare",
        data={"requiredCapabilities": {name: {} for name in missing}},
    )

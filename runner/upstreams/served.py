"""What the manifest's upstream entries serve: names with the prefix, filters, scopes and overrides applied.

An upstream's tools and prompts are served as `<prefix><name>`, kept or dropped by `include`/`exclude`
on the upstream's own names; each needs the entry's `scopes` (on top of signin.scopes) and its
override's. Calls, prompt gets and resource reads are forwarded on the upstream's session (never a
new one): over HTTP as one POST each on its lean lane (lean.py), over stdio through the SDK's client;
the upstream's result is handed back as it is: content, structuredContent, isError. Resources and
templates keep their URIs.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.shared.exceptions import MCPError

from runner.manifest.model import Override, UpstreamEntry
from runner.upstreams import forward, lean
from runner.upstreams.connection import Connection, Unavailable, reason
from runner.upstreams.pool import Upstreams
from runner.upstreams.rounds import HeldCalls, HeldLimit, in_rounds

logger = logging.getLogger("runner")
T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """A served name's upstream: its entry, its connection, and the name the upstream knows it by."""

    entry: UpstreamEntry
    connection: Connection
    name: str

    @property
    def scopes(self) -> tuple[str, ...]:
        override = self.entry.overrides.get(self.entry.served_prefix + self.name)
        return (*self.entry.scopes, *(override.scopes if override else ()))


# The MCP rule for a tool name (SEP-986), for the served name: a third party's newline, escape or 100 KB name is not
# served, so that it never reaches a client that prints names (a terminal, a host's UI) or bloats every tools/list.
LAWFUL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _kept(entry: UpstreamEntry, name: str) -> bool:
    kept = (entry.include is None or name in entry.include) and name not in entry.exclude
    return kept and LAWFUL_NAME.fullmatch(entry.served_prefix + name) is not None


_unlawful: set[tuple[str, str]] = set()


def unlawful(entry: UpstreamEntry, name: str) -> None:
    """A name the upstream serves that breaks the rule: not served, and said once (escaped, cut)."""
    key = (entry.name, name[:200])
    if key not in _unlawful and len(_unlawful) < 1000:  # bounded: an upstream may invent names without end
        _unlawful.add(key)
        logger.warning(
            "upstream %r serves the name %r, which is not [A-Za-z0-9_.-]{1,128}: not served",
            entry.name,
            (entry.served_prefix + name)[:200],
        )


def _apply(item: Any, served: str, override: Override | None) -> Any:
    update: dict[str, Any] = {"name": served}
    if override is not None:
        for key in ("title", "description", "icons"):
            if getattr(override, key) is not None:
                update[key] = getattr(override, key)
        if override.meta is not None:
            update["meta"] = dict(override.meta)
        if override.annotations is not None and isinstance(item, types.Tool):
            given = override.annotations.model_dump(exclude_none=True)
            base = item.annotations.model_dump(exclude_none=True) if item.annotations else {}
            update["annotations"] = types.ToolAnnotations.model_validate({**base, **given})
    return item.model_copy(update=update)


class Mounted:
    """The upstream entries of one build, over the process's connections."""

    def __init__(self, pool: Upstreams, entries: Sequence[UpstreamEntry]) -> None:
        self.pool, self.entries = pool, list(entries)

    def _each(self) -> list[tuple[UpstreamEntry, Connection]]:
        found = []
        for entry in self.entries:
            connection = self.pool.get(entry.name)
            # Connected only: while connecting, its first listing is filled in before calls are let through.
            if connection is not None and connection.state == "connected":
                found.append((entry, connection))
        return found

    def tools(self, taken: Collection[str] = ()) -> list[tuple[types.Tool, Target]]:
        """The served tools; a name in `taken` (the manifest's own) or an earlier upstream's is left out (logged)."""
        return self._served("tools", {name: "the manifest's tools" for name in taken})

    def prompts(self, taken: Collection[str] = ()) -> list[tuple[types.Prompt, Target]]:
        return self._served("prompts", {name: "the manifest's prompts" for name in taken})

    def _served(self, kind: str, seen: dict[str, str]) -> list[tuple[Any, Target]]:
        out: list[tuple[Any, Target]] = []
        for entry, connection in self._each():
            for item in getattr(connection.listing, kind):
                if not _kept(entry, item.name):
                    if LAWFUL_NAME.fullmatch(entry.served_prefix + item.name) is None:
                        unlawful(entry, item.name)
                    continue
                served = entry.served_prefix + item.name
                target = Target(entry, connection, item.name)
                if served in seen:
                    collision(target, seen[served], served)
                    continue
                seen[served] = f"upstream {entry.name!r}"
                out.append((_apply(item, served, entry.overrides.get(served)), target))
        return out

    def serves(self, kind: str, served: str) -> bool:
        """Whether a connected upstream serves the tool or prompt named `served` now (cheap: no copies)."""
        for entry, connection in self._each():
            prefix = entry.served_prefix
            if served.startswith(prefix) and _kept(entry, name := served[len(prefix) :]):
                if any(item.name == name for item in getattr(connection.listing, kind)):
                    return True
        return False

    def resources(self, taken: set[str] | frozenset[str] = frozenset()) -> list[tuple[types.Resource, Target]]:
        """The upstreams' static resources; a URI in `taken` (the manifest's own) or an earlier upstream's is not."""
        return self._unique(
            [(r, Target(e, c, str(r.uri))) for e, c in self._each() for r in c.listing.resources], taken
        )

    def templates(self, taken: set[str] | frozenset[str] = frozenset()) -> list[tuple[types.ResourceTemplate, Target]]:
        found = [(t, Target(e, c, t.uri_template)) for e, c in self._each() for t in c.listing.templates]
        return self._unique(found, taken)

    def _unique(self, found: list[tuple[Any, Target]], taken: set[str] | frozenset[str]) -> list[tuple[Any, Target]]:
        kept: list[tuple[Any, Target]] = []
        seen = {uri: "the manifest's resources" for uri in taken}
        for item, target in found:
            other = seen.get(target.name)
            if other is None:
                seen[target.name] = f"upstream {target.entry.name!r}"
                kept.append((item, target))
            else:
                collision(target, other)
        return kept

    def tool(self, served: str) -> Target | None:
        """The target of a served tool name, also while its upstream is down (the call then fails naming it)."""
        for entry in self.entries:
            prefix = entry.served_prefix
            if served.startswith(prefix) and _kept(entry, name := served[len(prefix) :]):
                connection = self.pool.get(entry.name)
                if connection is None:
                    continue
                if connection.state == "connected":
                    if any(t.name == name for t in connection.listing.tools):
                        return Target(entry, connection, name)
                elif entry.served_prefix or entry.include is not None:  # down: the call says so, naming it
                    return Target(entry, connection, name)
        return None

    def prompt(self, served: str) -> Target | None:
        for item, target in self.prompts():
            if item.name == served:
                return target
        return None

    def resource_label(self, uri: str) -> str | None:
        """The upstream resource's URI, or the upstream template that matches `uri`; None when no upstream has it."""
        target = self.resource(uri)
        return None if target is None else target.name

    def resource(self, uri: str) -> Target | None:
        """The upstream that serves `uri`: one of its static resources, else the first template that matches."""
        for item, target in self.resources():
            if str(item.uri) == uri:
                return target
        from mcp.shared.uri_template import UriTemplate  # noqa: PLC0415 - only upstream templates need it

        for template, target in self.templates():
            try:
                if UriTemplate.parse(template.uri_template).match(uri) is not None:
                    return target
            except Exception:  # an upstream template the SDK cannot parse serves nothing here
                continue
        return None


_said: set[tuple[str, str, str]] = set()


def collision(target: Target, other: str, served: str | None = None) -> None:
    """A name or URI another entry serves already: left out, and said once (where, in the manifest)."""
    shown = served or target.name
    key = (target.entry.name, shown, other)
    if key not in _said:
        _said.add(key)
        where = target.entry.location or f"upstream {target.entry.name!r}"
        logger.error(
            "%s: upstream %r serves %r, which is served already by %s: not served from it",
            where,
            target.entry.name,
            shown,
            other,
        )


async def call_tool(
    target: Target,
    arguments: dict[str, Any],
    progress: Any = None,
    caller: Any = None,
    held: HeldCalls | None = None,
    bound: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> types.CallToolResult | types.InputRequiredResult:
    """The upstream's result as it is; an upstream that cannot answer is a tool error naming it.

    `progress(progress, total, message)` gets the upstream's progress notifications for this call;
    `caller`, the runner's Context of the call, gets its log messages and questions (forward.py). A
    2026-07-28 caller gets them through rounds of its call, the upstream call held in `held` (rounds.py).
    `bound()` is held for as long as the upstream call runs (the caller's slot, runner/http/busy.py): for a
    held call, across the rounds, since it keeps its connection to the upstream meanwhile; it raises at once
    when the caller has no slot left.
    """
    if held is not None and in_rounds(caller):
        try:
            served = target.entry.served_prefix + target.name
            return await held.call(
                served, caller, lambda progress: _within(bound, lambda: _call_tool(target, arguments, progress))
            )
        except HeldLimit as exc:
            return _failed(str(exc))
    token = forward.CALLER.set(caller)
    try:
        return await _within(bound, lambda: _call_tool(target, arguments, progress))
    finally:
        forward.CALLER.reset(token)


async def _within(bound: Callable[[], AbstractContextManager[Any]], call: Callable[[], Awaitable[T]]) -> T:
    with bound():
        return await call()


async def _call_tool(target: Target, arguments: dict[str, Any], progress: Any) -> types.CallToolResult:
    try:
        client = target.connection.client_or_raise()
        with target.connection.flights.hold(forward.CALLER.get()), anyio.fail_after(target.entry.timeout):
            if target.connection.lane is not None:  # HTTP: one POST (lean.py), not the SDK client's machinery
                params = {"name": target.name, "arguments": arguments}
                answer = await _lean(target, "tools/call", params, progress)
                result = types.CallToolResult.model_validate(answer)
            else:
                result = await client.session.call_tool(target.name, arguments, progress_callback=progress)
    except MCPError as exc:
        if exc.code == types.CONNECTION_CLOSED:  # the SDK's own: the connection went away (a crash, a refused message)
            return _failed(f"upstream {target.entry.name!r} failed: its connection closed during the call")
        raise  # the upstream's own protocol error (unknown tool, invalid params...), passed on
    except Unavailable as exc:
        return _failed(str(exc))
    except Exception as exc:
        return _failed(_why(target, exc))
    if not isinstance(result, types.CallToolResult):
        return _failed(f"upstream {target.entry.name!r} answered with a result this server cannot pass on")
    return result


async def _lean(target: Target, method: str, params: dict[str, Any], progress: Any = None) -> Any:
    """`method` on the upstream's lean lane; a session the upstream forgot is opened again, and asked once more."""
    lane = target.connection.lane
    assert lane is not None
    try:
        return await lean.request(lane, method, params, progress)
    except lean.Expired:  # the upstream never ran it: asking again on a new session is safe
        return await lean.request(await target.connection.renewed(lane), method, params, progress)


async def get_prompt(target: Target, arguments: dict[str, str] | None) -> types.GetPromptResult:
    lean_request = ("prompts/get", {"name": target.name, "arguments": arguments or {}})
    return await _ask(target, lambda s: s.get_prompt(target.name, arguments), types.GetPromptResult, lean_request)


async def read_resource(target: Target, uri: str) -> list[ReadResourceContents]:
    """The upstream's contents, in the shape the SDK's read handler serves (text as text, blobs as bytes)."""
    lean_request = ("resources/read", {"uri": uri})
    result = await _ask(target, lambda s: s.read_resource(uri), types.ReadResourceResult, lean_request)
    return [
        ReadResourceContents(
            content=base64.b64decode(item.blob) if isinstance(item, types.BlobResourceContents) else item.text,
            mime_type=item.mime_type,
            meta=item.meta,
        )
        for item in result.contents
    ]


async def _ask(
    target: Target,
    request: Callable[[Any], Awaitable[Any]],
    expected: type[T],
    lean_request: tuple[str, dict[str, Any]],
) -> T:
    """One request on the upstream's connection, bounded by its timeout; a failure is a JSON-RPC error naming it.

    On an HTTP upstream's lean lane, `lean_request` (method, params) is POSTed (lean.py); else
    `request(session)` asks through the SDK's client.
    """
    try:
        client = target.connection.client_or_raise()
    except Unavailable as exc:
        raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from None
    try:
        with target.connection.flights.hold(None), anyio.fail_after(target.entry.timeout):  # its messages: no caller
            if target.connection.lane is not None:
                result = expected.model_validate(await _lean(target, *lean_request))  # type: ignore[attr-defined]
            else:
                result = await request(client.session)
    except MCPError:
        raise  # the upstream's own protocol error, passed on
    except Exception as exc:
        raise MCPError(code=types.INTERNAL_ERROR, message=_why(target, exc)) from exc
    if not isinstance(result, expected):
        raise MCPError(code=types.INTERNAL_ERROR, message=f"upstream {target.entry.name!r}: unexpected result")
    return result


def _why(target: Target, exc: Exception) -> str:
    """What went wrong with a request to the upstream, naming it."""
    if isinstance(exc, TimeoutError):
        return f"upstream {target.entry.name!r} did not answer within {target.entry.timeout:g} s"
    return f"upstream {target.entry.name!r} failed: {reason(exc)}"


def _failed(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)

"""One trace per HTTP request, continuing the caller's: what joins the runner's spans and the SDK's.

Without it, `mcp-runner verify token` (opened by the bearer gate) and the
SDK's `tools/call add` (opened by its context-tier middleware) each start
a trace of their own, and a caller's W3C `traceparent` header is ignored.

`TraceRequests`, the outermost ASGI layer, extracts the caller's context
from the headers with the configured propagators (`OTEL_PROPAGATORS`; W3C
trace context and baggage by default) and makes it current for the request.
The SDK hands each message to its handler with the sender's context
(mcp/shared/_context_streams.py), so its request span is the caller's child.

The runner's own span in a request, the token verification, happens only on
a verified-token cache miss: a client's first request. Only then is the HTTP
request span `POST /mcp` opened (`open_request_span`, back-dated to the
request's arrival), and both the verification and the SDK's span become its
children. A steady call pays for no extra span: exporting one costs about as
much as the SDK's own (docs/performance.md).

A `traceparent` is client input on a request not yet authenticated: only
the OpenTelemetry propagator parses it (a malformed one is ignored, the
request is served as if it had none), it is never logged, and the span
records nothing the client chose: the method (else `_OTHER`), the route
only when it is the MCP path, and the response status.

An MCP request can carry its own context in `params._meta.traceparent`
(SEP-414). The SDK parents its request span there, as the OpenTelemetry
MCP conventions say, and that wins over the HTTP header for the MCP span.
The same conventions ask the server span to link the transport context;
`link_transport` adds that link when the two differ.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from opentelemetry import context, trace
from opentelemetry.propagate import extract, get_global_textmap
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanContext, SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.observe.tracing import tracer

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


class _Headers(Getter[list[tuple[bytes, bytes]]]):
    """Reads propagation fields from ASGI's raw header list (names arrive lower-cased)."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_GETTER = _Headers()
_NOTHING = context.Context()  # what a request without propagation headers continues: no trace


class _Request:
    """The request being served: where its span would go, and the span once opened."""

    __slots__ = ("scope", "route", "parent", "started", "status", "span", "attached")

    def __init__(self, scope: Scope, route: str, parent: context.Context) -> None:
        self.scope = scope
        self.route = route
        self.parent = parent
        self.started = time.time_ns()
        self.status = 0
        self.span: Span | None = None
        self.attached: object = None

    def open(self) -> None:
        method = self.scope["method"] if self.scope["method"] in _METHODS else "_OTHER"
        attributes: dict[str, Any] = {"http.request.method": method}
        name = method
        if self.scope["path"] == self.route:
            attributes["http.route"] = self.route
            name = f"{method} {self.route}"
        self.span = tracer.start_span(
            name, context=self.parent, kind=SpanKind.SERVER, attributes=attributes, start_time=self.started
        )
        self.attached = context.attach(trace.set_span_in_context(self.span, self.parent))

    def close(self) -> None:
        if self.span is None:
            return
        context.detach(self.attached)  # type: ignore[arg-type]
        if self.status:
            self.span.set_attribute("http.response.status_code", self.status)
            if self.status >= 500:
                self.span.set_status(StatusCode.ERROR)
        self.span.end()

    def context(self) -> SpanContext:
        """The span the MCP request's span would link: this request's, else the caller's."""
        span = self.span if self.span is not None else trace.get_current_span(self.parent)
        return span.get_span_context()


_REQUEST: ContextVar[_Request | None] = ContextVar("mcp_runner_traced_request", default=None)


class TraceRequests:
    """ASGI middleware: the caller's propagated context made current for the request it sends."""

    def __init__(self, app: ASGIApp, route: str = "/mcp") -> None:
        self.app = app
        self.route = route
        # The header names the configured propagators read: without any of them (the common case) there
        # is nothing to extract, and the propagators' ~6 us per request are skipped.
        self.fields = frozenset(name.lower().encode("latin-1") for name in get_global_textmap().fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if any(name in self.fields for name, _ in headers):
            parent = extract(headers, getter=_GETTER)  # an empty Context when nothing valid was sent
        else:
            parent = _NOTHING
        request = _Request(scope, self.route, parent)
        reset = _REQUEST.set(request)
        attached = context.attach(parent) if parent else None

        async def answered(message: Message) -> None:
            if message["type"] == "http.response.start":
                request.status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, answered)
        finally:
            request.close()
            if attached is not None:
                context.detach(attached)
            _REQUEST.reset(reset)


def open_request_span() -> None:
    """Open the current HTTP request's span, if there is a request and it has none yet; it becomes current."""
    request = _REQUEST.get()
    if request is not None and request.span is None:
        request.open()


async def link_transport(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Server middleware (inside the SDK's request span): link the HTTP request's span (or the caller's)
    when the MCP request's `_meta.traceparent` put the SDK span in another trace. Else a no-op: without a
    propagation field in `_meta` the SDK span is the request's child, in its trace, and nothing is looked up."""
    meta = ctx.meta
    request = _REQUEST.get()
    if meta and request is not None and any(key in meta for key in _meta_fields()):
        transport = request.context()
        span = trace.get_current_span()
        if transport.is_valid and span.get_span_context().trace_id != transport.trace_id:
            span.add_link(transport, {"mcp_runner.link": "http.request"})
    return await call_next(ctx)


@functools.cache
def _meta_fields() -> frozenset[str]:
    """The keys the configured propagators read (`traceparent`, ...), the SDK's `extract(meta)` among them."""
    return frozenset(get_global_textmap().fields)

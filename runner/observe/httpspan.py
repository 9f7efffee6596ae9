"""One server span per HTTP request, continuing the caller's trace: what joins the runner's spans and the SDK's.

Without it, `mcp-runner verify token` (opened by the bearer gate) and the
SDK's `tools/call add` (opened by its context-tier middleware) each start
a trace of their own, and a caller's W3C `traceparent` header is ignored.
`TraceRequests`, the outermost ASGI layer, opens `POST /mcp` as a child of
the context the configured propagators (`OTEL_PROPAGATORS`, W3C trace
context and baggage by default) extract from the headers, and makes it
current. Everything the request does runs inside it: the verification,
and the SDK's request span, since the SDK hands each message to its
handler with the sender's context (mcp/shared/_context_streams.py).

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

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.observe.tracing import tracer

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
# The HTTP request span of the request being served, for `link_transport`.
_REQUEST_SPAN: ContextVar[SpanContext | None] = ContextVar("mcp_runner_request_span", default=None)


class _Headers(Getter[list[tuple[bytes, bytes]]]):
    """Reads propagation fields from ASGI's raw header list (names arrive lower-cased)."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_GETTER = _Headers()


class TraceRequests:
    """ASGI middleware: a SERVER span per HTTP request, parented by the caller's propagated context."""

    def __init__(self, app: ASGIApp, route: str = "/mcp") -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        attributes: dict[str, Any] = {"http.request.method": method}
        name = method
        if scope["path"] == self.route:
            attributes["http.route"] = self.route
            name = f"{method} {self.route}"
        parent = extract(scope["headers"], getter=_GETTER)
        with tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes, record_exception=False
        ) as span:
            reset = _REQUEST_SPAN.set(span.get_span_context())

            async def answered(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(StatusCode.ERROR)
                await send(message)

            try:
                await self.app(scope, receive, answered)
            finally:
                _REQUEST_SPAN.reset(reset)


async def link_transport(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Server middleware (inside the SDK's request span): link the HTTP request span when the MCP
    request's `_meta.traceparent` put the SDK span in another trace. A no-op in the common case."""
    request = _REQUEST_SPAN.get()
    if request is not None:
        span = trace.get_current_span()
        if span.get_span_context().trace_id != request.trace_id:
            span.add_link(request, {"mcp_runner.link": "http.request"})
    return await call_next(ctx)

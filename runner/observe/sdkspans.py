"""The SDK's span per request, skipped while nothing records spans.

Why: `Server.middleware` starts with the SDK's `OpenTelemetryMiddleware`, which opens
a span for every request. With no tracer provider installed the span is a no-op, but
opening it is not free: the attributes, the context managers, the proxy tracer's
lookups are about 4.7% of the event loop thread on a handshake-era `tools/call`
(py-spy). The SDK documents dropping it from the list as the way to opt out.

When: `serve`, once the definition is built, puts `WhenRecording` in its place if no
tracer provider is installed yet (neither the runner's, `OTEL_EXPORTER_OTLP_*`, nor
anyone's: `opentelemetry-instrument`, user code at import). It runs the SDK's middleware
as soon as one is: a provider a user module installs later, say one a reload imports
for the first time, gets the SDK's spans from then on (within a second: it looks at most
once a second, so a request pays a clock read until then, and nothing after).

The class lives in a private module (`mcp.server._otel`), so it is recognised here by
its name, the one place that does; `tests/test_traces.py` fails if the SDK's default
list no longer holds a middleware of that name.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace

SDK_SPANS = "OpenTelemetryMiddleware"
LOOK_EVERY = 1.0  # seconds between looks for a provider: `recording` reads os.environ (~1.5 µs), a clock ~50 ns


def recording() -> bool:
    """Whether a tracer provider is installed (the API's proxy is what stands in for none)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


class WhenRecording:
    """The SDK's span middleware, run once a tracer provider is installed (a provider, once set, stays)."""

    def __init__(self, spans: Any) -> None:
        self.spans = spans
        self._on = False
        self._next_look = 0.0

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if not self._on:
            now = time.monotonic()
            if now < self._next_look:
                return await call_next(ctx)
            self._next_look = now + LOOK_EVERY
            if not recording():
                return await call_next(ctx)
            self._on = True
        return await self.spans(ctx, call_next)


def skip_while_idle(server: Any) -> bool:
    """Put the SDK's span middleware of `server` behind `WhenRecording` if nothing records spans yet; whether it did."""
    if recording():
        return False
    wrapped = [WhenRecording(m) if type(m).__name__ == SDK_SPANS else m for m in server.middleware]
    changed = any(isinstance(m, WhenRecording) for m in wrapped)
    server.middleware[:] = wrapped
    return changed

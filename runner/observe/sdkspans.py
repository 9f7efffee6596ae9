"""The SDK's span per request, dropped when nothing records spans.

Why: `Server.middleware` starts with the SDK's `OpenTelemetryMiddleware`, which opens
a span for every request. With no tracer provider installed the span is a no-op, but
opening it is not free: the attributes, the context managers, the proxy tracer's
lookups are about 4.7% of the event loop thread on a handshake-era `tools/call`
(py-spy). The SDK documents dropping it from the list as the way to opt out.

When: `serve` drops it once the definition is built (so a provider a user module
installs at import keeps it) and only if no tracer provider is installed, neither the
runner's (`OTEL_EXPORTER_OTLP_*`) nor anyone's (`opentelemetry-instrument`, user code).
A provider installed later, by a module a reload imports first, finds it gone: restart.

The class lives in a private module (`mcp.server._otel`), so it is recognised here by
its name, the one place that does; `tests/test_traces.py` fails if the SDK's default
list no longer holds a middleware of that name.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

SDK_SPANS = "OpenTelemetryMiddleware"


def recording() -> bool:
    """Whether a tracer provider is installed (the API's proxy is what stands in for none)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def drop_if_idle(server: Any) -> bool:
    """Remove the SDK's span middleware from `server` when nothing records spans; whether it did."""
    if recording():
        return False
    kept = [m for m in server.middleware if type(m).__name__ != SDK_SPANS]
    dropped = len(kept) < len(server.middleware)
    server.middleware[:] = kept
    return dropped

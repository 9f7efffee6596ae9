"""OpenTelemetry: the runner's own spans, and OTLP export configured from the standard `OTEL_*` variables.

The SDK already opens a span per MCP request through `opentelemetry-api`
(mcp/server/_otel.py); the runner adds `mcp-runner reload` and
`mcp-runner verify token`. Without a configured tracer provider all of them
are no-ops. `setup` installs one only when the optional extra is installed
(`pip install 'mcp-runner[otel]'`), an OTLP endpoint is named
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
`OTEL_SDK_DISABLED` is not true, `OTEL_TRACES_EXPORTER` is unset or `otlp`,
and nobody (say, `opentelemetry-instrument`) installed a provider already.
Otherwise it does nothing and says nothing. Everything else (headers,
service name, resource attributes, sampler, batch delays) is read by the
OpenTelemetry SDK itself from its documented variables.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace

tracer = trace.get_tracer("mcp-runner")

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
exporting = False  # set by `setup`: the runner installed the exporting provider, so HTTP requests get spans


def http_middleware(route: str) -> list[Any]:
    """The ASGI layer that keeps each HTTP request in one trace (the caller's, if it sent one), when spans
    are exported; else nothing, at no cost."""
    if not exporting:
        return []
    from starlette.middleware import Middleware

    from runner.observe.httpspan import TraceRequests

    return [Middleware(TraceRequests, route=route)]


def request_span() -> None:
    """Before the runner opens a span inside an HTTP request: open the request's own span, so that this
    one and the SDK's request span share its trace (runner/observe/httpspan.py). A no-op when not exporting."""
    if exporting:
        from runner.observe.httpspan import open_request_span

        open_request_span()


def setup() -> str | None:
    """Install an OTLP/HTTP exporting tracer provider; returns where spans go, or None."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "otlp":
        return None
    endpoint = next((os.environ[name] for name in reversed(ENDPOINTS) if os.environ.get(name)), None)
    if endpoint is None or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    try:
        provider = exporting_provider()
    except ImportError:  # the extra is not installed: tracing stays the no-op it always was
        return None
    trace.set_tracer_provider(provider)
    global exporting
    exporting = True
    return endpoint


def exporting_provider() -> Any:
    """The runner's tracer provider: OTLP/HTTP export in batches, as the `OTEL_*` variables configure it.

    Raises ImportError without the [otel] extra. Sampler, batch sizes and delays are the SDK's
    defaults unless its variables say otherwise: the export's CPU is in encoding each span, not in
    the number of POSTs (docs/performance.md), so larger batches would only lengthen the
    stretches for which the export thread holds the GIL.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from runner.version import RUNNER_VERSION

    attributes = {"service.version": RUNNER_VERSION}
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = "mcp-runner"  # else the variables name it

    class _Resource(Resource):
        """Hashed once. The OTLP encoder groups every span by its resource, and `Resource.__hash__`
        serialises all the attributes to JSON each time: about a tenth of the export's CPU per span."""

        def __init__(self, resource: Resource) -> None:
            super().__init__(resource.attributes, resource.schema_url)
            self._hash = super().__hash__()

        def __hash__(self) -> int:
            return self._hash

    provider = TracerProvider(resource=_Resource(Resource.create(attributes)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider

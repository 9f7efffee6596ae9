"""The CPU each observability part adds to one tools/call, measured in-process (steadier than end to end).

A tools/call on the observed server does, beyond the plain one: one counter increment and one
histogram observation; JSON instead of text formatting for its access line and its audit line;
the SDK's `tools/call` span, recorded by the OpenTelemetry SDK and exported in batches over
OTLP/HTTP (to a sink in this process, whose CPU counts too). The runner's `verify token` span is
made only when a token is really verified, not for the cached verification of a client's next
calls, so it is not part of a steady call. Each part is timed with `time.process_time` (every
thread of the process) over many repetitions; the best of 5 rounds is printed, in microseconds per call.

    python bench/observe_parts.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from observe import Sink  # noqa: E402  (python bench/observe_parts.py puts bench/ on the path)

from runner.observe import metrics, tracing  # noqa: E402
from runner.observe.access import _REQUEST  # noqa: E402
from runner.observe.logs import TEXT, JSONFormatter  # noqa: E402


def per_call(work: Callable[[], None], calls: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            work()
        best = min(best, time.process_time() - started)
    return best / calls * 1e6


def records() -> list[logging.LogRecord]:
    access = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/mcp", "1.1", 200), None,
    )  # fmt: skip
    audit = logging.LogRecord(
        "runner.audit", logging.INFO, __file__, 1, "%s",
        ('tool call "add" by "local-user" (client "mcp-runner-local"): ok in 1.0 ms',), None,
    )  # fmt: skip
    audit.fields = {  # type: ignore[attr-defined]
        "event": "audit", "kind": "tool", "name": "add", "outcome": "ok", "duration_ms": 1.0,
        "subject": "local-user", "client_id": "mcp-runner-local",
    }  # fmt: skip
    return [access, audit]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    n = args.calls

    metrics.enable()
    metric = per_call(lambda: metrics.call("tool", "add", "ok", 0.001), n)

    lines = records()
    _REQUEST.set(({"user": None}, time.perf_counter()))
    for name, formatter in (("text", logging.Formatter(TEXT)), ("json", JSONFormatter())):
        out = io.StringIO()
        handler = logging.StreamHandler(out)
        handler.setFormatter(formatter)
        cost = per_call(lambda h=handler: [h.handle(r) for r in lines] and None, n)
        if name == "text":
            text = cost
        else:
            json_ = cost

    from opentelemetry import trace

    noop = trace.get_tracer("bench")

    def span(tracer: trace.Tracer) -> Callable[[], None]:
        attributes = {
            "mcp.method.name": "tools/call", "mcp.protocol.version": "2026-07-28", "jsonrpc.request.id": "1",
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "add",
        }  # fmt: skip

        def one() -> None:
            with tracer.start_as_current_span("tools/call add", attributes=attributes):
                pass

        return one

    without = per_call(span(noop), n)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    def exported(provider: TracerProvider) -> float:
        recorded = span(provider.get_tracer("bench"))

        def batch() -> None:  # 500 calls, then every span exported: the export's CPU is counted, none dropped
            for _ in range(500):
                recorded()
            provider.force_flush()

        return per_call(batch, max(1, n // 500)) / 500

    defaults = TracerProvider()  # the SDK's defaults, as before the runner chose its own
    defaults.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint + "/v1/traces")))
    with_defaults = exported(defaults)
    defaults.shutdown()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    provider = tracing.exporting_provider()  # the provider `mcp-runner serve` installs
    with_export = exported(provider)
    provider.shutdown()
    os.environ.update(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.1")
    provider = tracing.exporting_provider()
    with_sampling = exported(provider)
    provider.shutdown()
    os.environ["OTEL_TRACES_SAMPLER_ARG"] = "0"
    provider = tracing.exporting_provider()
    sampled_out = exported(provider)
    provider.shutdown()
    sink.shutdown()

    print(f"metrics: counter + histogram          {metric:7.1f} us/call")
    print(f"logs: access + audit line, text        {text:7.1f} us/call")
    print(f"logs: access + audit line, json        {json_:7.1f} us/call  (+{json_ - text:.1f})")
    print(f"traces: 1 span, no provider (no-op)    {without:7.1f} us/call")
    print(f"traces: 1 span, SDK defaults + OTLP    {with_defaults:7.1f} us/call  (+{with_defaults - without:.1f})")
    print(f"traces: 1 span, the runner's provider  {with_export:7.1f} us/call  (+{with_export - without:.1f})")
    print(f"traces: same, 1 in 10 sampled          {with_sampling:7.1f} us/call  (+{with_sampling - without:.1f})")
    print(f"traces: same, a span not sampled       {sampled_out:7.1f} us/call  (+{sampled_out - without:.1f})")
    added = metric + (with_export - without)
    print(f"added per tools/call, metrics + every span exported: {added:.1f} us CPU (JSON logs: +{json_ - text:.1f})")
    added = metric + (with_sampling - without)
    print(f"added per tools/call, metrics + 1 in 10 sampled:     {added:.1f} us CPU")


if __name__ == "__main__":
    main()

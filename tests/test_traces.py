"""Spans leave the process over OTLP/HTTP; text-format audit lines; no extra, no change."""

from __future__ import annotations

import gzip
import sys
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from runner.observe import tracing
from tests.helpers import Issuer, JWKSServer, RunnerProcess, mcp_client
from tests.test_observe import wait_for, write_app

pytestmark = pytest.mark.anyio


class Receiver(ThreadingHTTPServer):
    """A minimal OTLP/HTTP trace receiver on loopback: decodes each ExportTraceServiceRequest it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["name"] == name]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource_spans in request.resource_spans:
            service = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    found.append({"name": span.name, "attributes": attributes, "resource": service})
        with self.server.lock:
            self.server.spans.extend(found)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer, receiver: Receiver
) -> Iterator[tuple[RunnerProcess, Issuer]]:
    """Text logs (the default), arguments logged, spans exported by the OTEL_* variables alone."""
    folder = tmp_path_factory.mktemp("traced")
    flags = ("--log-format", "text", "--log-arguments", "--metrics", "127.0.0.1:0")
    runner = RunnerProcess(folder / "observed.yaml", log=folder / "stderr.log", extra=flags)
    runner.env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    write_app(folder, jwks, runner)
    runner.start()
    yield runner, Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0])
    runner.stop()


async def test_tool_call_and_reload_spans_reach_the_receiver(
    traced: tuple[RunnerProcess, Issuer], receiver: Receiver
) -> None:
    runner, issuer = traced
    token = issuer.token()
    async with mcp_client(runner.url, token) as client:
        assert (await client.call_tool("add", {"a": 1, "b": 2})).is_error is False
    call = wait_for(lambda: receiver.named("tools/call add"), "the tool-call span")[0]
    assert call["attributes"]["gen_ai.tool.name"] == "add"
    assert call["attributes"]["mcp.method.name"] == "tools/call"
    assert call["resource"]["service.name"] == "mcp-runner"
    verified = wait_for(lambda: receiver.named("mcp-runner verify token"), "a verification span")
    assert any(s["attributes"]["mcp_runner.auth.outcome"] == "ok" for s in verified)

    tools = runner.manifest.parent / "tools.py"
    tools.write_text(tools.read_text() + "\n\ndef extra() -> str:\n    return 'new'\n")
    runner.manifest.write_text(runner.manifest.read_text().replace("tools:\n", "tools:\n  - function: tools:extra\n"))
    reload = wait_for(lambda: receiver.named("mcp-runner reload"), "the reload span")[0]
    assert reload["attributes"]["mcp_runner.reload.result"] == "ok"
    assert "+extra" in reload["attributes"]["mcp_runner.reload.changes"]
    assert reload["attributes"]["mcp_runner.reload.duration_ms"] > 0
    exported = repr(receiver.spans)
    assert token not in exported and "eyJ" not in exported


async def test_text_audit_lines_without_token(traced: tuple[RunnerProcess, Issuer]) -> None:
    runner, issuer = traced
    token, argument_token = issuer.token(), issuer.token(sub="arg")
    async with mcp_client(runner.url, token, mode="legacy") as client:
        await client.call_tool("echo", {"text": f"Bearer {argument_token}", "password": "hunter2"})
        await client.read_resource("note://n1")
    line = wait_for(
        lambda: [x for x in runner.logged().splitlines() if 'runner.audit: tool call "echo"' in x], "the audit line"
    )[0]
    assert 'by "user-1" (client "client-1"): ok in ' in line
    assert 'arguments={"text": "Bearer [redacted]", "password": "[redacted]"}' in line
    wait_for(lambda: 'resource read "note://n1" by "user-1"' in runner.logged(), "the resource audit line")
    logged = runner.logged()
    assert token not in logged and argument_token not in logged and "hunter2" not in logged
    # --metrics 127.0.0.1:0 took a free port, which the start-up block names
    url = next(line.split()[1] for line in logged.splitlines() if line.startswith("  metrics:"))
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/metrics")
    assert 'mcp_runner_calls_total{kind="tool",name="echo",outcome="ok"} 1.0' in httpx2.get(url).text


def test_without_the_extra_nothing_changes_and_nothing_warns(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The OpenTelemetry SDK and exporter made unimportable, as when the [otel] extra is not installed."""
    for name in [m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert tracing.setup() is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert warned == []
    assert capfd.readouterr() == ("", "")

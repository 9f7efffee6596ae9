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
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from runner.observe import tracing
from tests.helpers import Issuer, JWKSServer, RunnerProcess, edit_and_wait, loopback_get, mcp_client
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

    def in_trace(self, trace_id: str) -> dict[str, list[dict[str, Any]]]:
        """The spans of one trace, by name."""
        found: dict[str, list[dict[str, Any]]] = {}
        with self.lock:
            for span in self.spans:
                if span["trace"] == trace_id:
                    found.setdefault(span["name"], []).append(span)
        return found


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
                    links = [(link.trace_id.hex(), link.span_id.hex()) for link in span.links]
                    found.append(
                        {
                            "name": span.name,
                            "attributes": attributes,
                            "resource": service,
                            "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "links": links,
                        }
                    )
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


META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
    "Mcp-Name": "add",
}


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


CALLER_SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_callers_traceparent_holds_its_requests(
    traced: tuple[RunnerProcess, Issuer], receiver: Receiver, mode: str
) -> None:
    """Every span of every request an SDK client sends with a `traceparent` header is in the caller's trace."""
    runner, issuer = traced
    caller = "4bf92f3577b34da6a3ce929d0e0e4736" if mode == "legacy" else "0af7651916cd43dd8448eb211c80319c"
    headers = {
        "Authorization": f"Bearer {issuer.token(sub=f'trace-{mode}')}",
        "traceparent": f"00-{caller}-{CALLER_SPAN}-01",
    }
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(runner.url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
            assert (await client.call_tool("add", {"a": 1, "b": 2})).is_error is False

    def whole() -> dict[str, list[dict[str, Any]]] | None:  # the request span ends last: wait for it too
        spans = receiver.in_trace(caller)
        return spans if "tools/call add" in spans and "POST /mcp" in spans else None

    spans = wait_for(whole, "the tool call and the request span in the caller's trace")
    [request] = spans.pop("POST /mcp")  # only the request that verified the token has one
    assert request["parent"] == CALLER_SPAN and request["attributes"]["http.response.status_code"] == 200
    [verified] = spans.pop("mcp-runner verify token")
    assert verified["parent"] == request["id"]
    parents = [s["parent"] for found in spans.values() for s in found]  # the SDK's spans
    assert set(parents) == {CALLER_SPAN, request["id"]}, spans


async def test_one_request_one_trace_and_meta_wins_for_the_mcp_span(
    traced: tuple[RunnerProcess, Issuer], receiver: Receiver
) -> None:
    """Verification and tools/call of one request share its trace; SEP-414 `_meta.traceparent` parents the
    SDK span instead, linked to the request span; a malformed header is dropped."""
    runner, issuer = traced
    bad, header_only, header, meta = "3" * 32, "1" * 32, "4" * 32, "2" * 32
    sent = (
        (f"00-{bad}-{CALLER_SPAN}-01-junk", META),  # version 00 has four fields: malformed, so ignored
        (f"00-{header_only}-{CALLER_SPAN}-01", META),
        (f"00-{header}-{CALLER_SPAN}-01", {**META, "traceparent": f"00-{meta}-{CALLER_SPAN}-01"}),
    )
    for traceparent, meta_sent in sent:  # each with a token not verified before
        answer = httpx2.post(
            runner.url,
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 1, "b": 2}, "_meta": meta_sent},
            },
            headers={
                **HEADERS,
                "Authorization": f"Bearer {issuer.token(sub=traceparent[3:9])}",
                "traceparent": traceparent,
            },
            timeout=30,
        )
        assert answer.status_code == 200 and '"isError":false' in answer.text.replace(" ", "")
    one = wait_for(lambda: (t := receiver.in_trace(header_only)) and "POST /mcp" in t and t, "the request span")
    [request] = one["POST /mcp"]
    assert request["parent"] == CALLER_SPAN
    assert [s["parent"] for s in one["mcp-runner verify token"] + one["tools/call add"]] == [request["id"]] * 2

    call = wait_for(lambda: receiver.in_trace(meta).get("tools/call add"), "the tool call in the _meta trace")[0]
    assert call["parent"] == CALLER_SPAN
    request = wait_for(lambda: receiver.in_trace(header).get("POST /mcp"), "the request span")[0]
    assert request["parent"] == CALLER_SPAN
    assert call["links"] == [(header, request["id"])]
    assert receiver.in_trace(header)["mcp-runner verify token"][0]["parent"] == request["id"]
    # the malformed one was served in a new trace of its own (exported before the later ones), and is nowhere
    assert receiver.in_trace(bad) == {}
    assert bad not in repr(receiver.spans) and bad not in runner.logged()
    assert "eyJ" not in repr(receiver.spans)  # no token (every JWT starts so) in any span of this module
    assert "Failed to detach context" not in runner.logged()  # the request span's context came off cleanly


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
    assert 'mcp_runner_calls_total{kind="tool",name="echo",outcome="ok"} 1.0' in loopback_get(url).text


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
    assert tracing.http_middleware("/mcp") == []  # no ASGI layer: requests pay nothing for tracing
    assert warned == []
    assert capfd.readouterr() == ("", "")


def test_the_sdks_span_middleware_is_the_one_dropped_when_nothing_records() -> None:
    """Fails when the SDK renames, moves or stops defaulting the middleware runner/observe/sdkspans.py skips."""
    from mcp.server._otel import OpenTelemetryMiddleware

    from runner import FastMCPSignInWrapper
    from runner.observe import sdkspans

    server = FastMCPSignInWrapper("spans", allow_no_auth=True)
    assert any(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware)
    assert (
        type(next(m for m in server.middleware if isinstance(m, OpenTelemetryMiddleware))).__name__
        == "OpenTelemetryMiddleware"
    )
    spans = next(m for m in server.middleware if isinstance(m, OpenTelemetryMiddleware))
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert sdkspans.skip_while_idle(server)
    assert not any(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware)
    assert [m.spans for m in server.middleware if isinstance(m, sdkspans.WhenRecording)] == [spans]


SPANS_MODULE = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exported = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exported))
trace.set_tracer_provider(provider)


def spans() -> list[str]:
    return [span.name for span in exported.get_finished_spans()]
"""


async def assert_the_sdk_spans_a_call(url: str) -> None:
    """The SDK's span of one `spans` call is among the spans the module's provider recorded, by the next call."""
    async with mcp_client(url) as client:
        await client.call_tool("spans", {})
        second = await client.call_tool("spans", {})
    assert "tools/call spans" in str(second.structured_content), second


async def test_a_tracer_provider_a_user_module_installs_keeps_the_sdks_spans(tmp_path: Any) -> None:
    (tmp_path / "spanned.py").write_text(SPANS_MODULE)
    (tmp_path / "spanned.yaml").write_text("name: spanned\ntools:\n  - function: spanned:spans\n")
    runner = RunnerProcess(tmp_path / "spanned.yaml").start()
    try:
        await assert_the_sdk_spans_a_call(runner.url)
    finally:
        runner.stop()


async def test_a_tracer_provider_a_reload_installs_gets_the_sdks_spans_from_then_on(tmp_path: Any) -> None:
    """Started with nothing recording; a module a reload imports first installs a provider."""
    (tmp_path / "spanned.py").write_text(SPANS_MODULE)
    (tmp_path / "plain.py").write_text("def hello() -> str:\n    return 'hello'\n")
    (tmp_path / "later.yaml").write_text("name: later\ntools:\n  - function: plain:hello\n")
    runner = RunnerProcess(tmp_path / "later.yaml").start()
    try:
        text = "name: later\ntools:\n  - function: plain:hello\n  - function: spanned:spans\n"
        health = await edit_and_wait(tmp_path, runner.health_url, "later.yaml", text)
        assert health["last_reload"]["result"] == "ok", health
        await assert_the_sdk_spans_a_call(runner.url)
    finally:
        runner.stop()

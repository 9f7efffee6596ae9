"""Observability against the real server: a Prometheus scrape, JSON access and audit lines, no token logged."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Issuer, JWKSServer, RunnerProcess, free_port, loopback_get, mcp_client, post_initialize

pytestmark = pytest.mark.anyio

TOOLS = """
def add(a: int, b: int) -> int:
    return a + b


def fail() -> str:
    raise RuntimeError("tool failed on purpose")


def echo(text: str, api_key: str = "") -> str:
    return text


def admin() -> str:
    return "admin only"


def note(name: str) -> str:
    return f"note {name}"


def hello(who: str) -> str:
    return f"Hello {who}"
"""

MANIFEST = """
name: observed
signin:
  app_id: {app_id}
  base_url: {base_url}
  resource: {resource}
tools:
  - function: tools:add
  - function: tools:fail
  - function: tools:echo
  - function: tools:admin
    scopes: [admin]
resources:
  - uri: note://{{name}}
    function: tools:note
prompts:
  - function: tools:hello
"""


def write_app(folder: Path, jwks: JWKSServer, runner: RunnerProcess, server: str = "") -> Path:
    (folder / "tools.py").write_text(TOOLS)
    manifest = folder / "observed.yaml"
    text = MANIFEST.format(app_id=jwks.app_id, base_url=jwks.base_url, resource=runner.url)
    manifest.write_text(text + (f"server:\n{server}" if server else ""))
    return manifest


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[tuple[RunnerProcess, Issuer, int]]:
    """One server for the module: metrics on a port of its own, JSON logs, arguments in audit lines.

    Set by the manifest (metrics, with the default host; log_arguments) and the environment (the log
    format); tests/test_traces.py sets the same by flags.
    """
    folder = tmp_path_factory.mktemp("observed")
    metrics_port = free_port()
    runner = RunnerProcess(folder / "observed.yaml", log=folder / "stderr.log", env={"MCP_RUNNER_LOG_FORMAT": "json"})
    write_app(folder, jwks, runner, f"  metrics: {{port: {metrics_port}}}\n  log_arguments: true\n")
    runner.start()
    yield runner, Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0]), metrics_port
    runner.stop()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a real scrape, keyed by (sample name, sorted labels)."""
    text = loopback_get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, /, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def calls(samples: dict[Any, float], kind: str, name: str, outcome: str) -> float:
    return value(samples, "mcp_runner_calls_total", kind=kind, name=name, outcome=outcome)


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def replace(path: Path, text: str) -> None:
    """Write `path` at once (a new file renamed over it), as an editor's atomic save does."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    os.replace(fresh, path)


async def test_scrape_counts_match_calls(observed: tuple[RunnerProcess, Issuer, int]) -> None:
    runner, issuer, port = observed
    before = scrape(port)
    async with mcp_client(runner.url, issuer.token(), mode="legacy") as client:
        assert (await client.call_tool("add", {"a": 1, "b": 2})).is_error is False
        assert (await client.call_tool("fail", {})).is_error is True
        with pytest.raises(MCPError):  # the token lacks scope admin: the gate answers 403
            await client.call_tool("admin", {})
        assert (await client.call_tool("no_such_tool", {})).is_error is True
        assert (await client.call_tool("add", {"a": "not a number", "b": 2})).is_error is True
        await client.read_resource("note://one")
        await client.get_prompt("hello", {"who": "you"})
        assert value(scrape(port), "mcp_runner_sessions") >= 1
    async with mcp_client(runner.url, issuer.token()) as client:  # 2026-07-28
        assert (await client.call_tool("add", {"a": 2, "b": 3})).is_error is False
        async with client.listen(tools_list_changed=True):
            assert value(scrape(port), "mcp_runner_listen_streams") == 1
    assert post_initialize(runner.url, None).status_code == 401
    now = int(time.time())
    assert post_initialize(runner.url, issuer.token(exp=now - 3600, iat=now - 7200)).status_code == 401
    assert post_initialize(runner.url, issuer.token(aud="http://127.0.0.1:1/other")).status_code == 401
    manifest = runner.manifest
    replace(manifest, manifest.read_text().replace("name: observed", "name: observed\nversion: '2'"))
    wait_for(lambda: value(scrape(port), "mcp_runner_reloads_total", result="ok") > before_reloads(before), "a reload")
    good = manifest.read_text()
    replace(manifest, good.replace("tools:\n", "tools:\n  - function: tools:missing\n"))  # a broken edit
    wait_for(lambda: value(scrape(port), "mcp_runner_reloads_total", result="failed") > 0, "a failed reload")
    replace(manifest, good)
    wait_for(lambda: value(scrape(port), "mcp_runner_reloads_total", result="ok") > 1 + before_reloads(before), "ok")
    after = scrape(port)

    def delta(name: str, /, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mcp_runner_calls_total", kind="tool", name="add", outcome="ok") == 2
    assert delta("mcp_runner_calls_total", kind="tool", name="fail", outcome="tool_error") == 1
    assert delta("mcp_runner_auth_rejections_total", reason="scope") == 1
    assert delta("mcp_runner_calls_total", kind="tool", name="_unknown", outcome="refused") == 1
    assert delta("mcp_runner_calls_total", kind="tool", name="add", outcome="refused") == 1  # bad arguments
    assert delta("mcp_runner_calls_total", kind="resource", name="note://{name}", outcome="ok") == 1
    assert delta("mcp_runner_calls_total", kind="prompt", name="hello", outcome="ok") == 1
    assert delta("mcp_runner_call_duration_seconds_count", kind="tool", name="add") == 3
    assert not any(k[0] == "mcp_runner_calls_total" and ("name", "no_such_tool") in k[1] for k in after)
    assert delta("mcp_runner_auth_rejections_total", reason="missing") == 1
    assert delta("mcp_runner_auth_rejections_total", reason="expired") == 1
    assert delta("mcp_runner_auth_rejections_total", reason="audience") == 1
    # Each edit replaces the file whole: a write_text (truncate, then write) could be seen half-done, an
    # empty manifest counted as one more failed reload (seen in CI under load).
    assert delta("mcp_runner_reloads_total", result="ok") >= 2
    assert delta("mcp_runner_reloads_total", result="failed") == 1
    assert delta("mcp_runner_reload_duration_seconds_count", result="failed") == 1
    assert value(after, "mcp_runner_jwks_fetches_total", result="ok") >= 1
    assert value(after, "mcp_runner_listen_streams") == 0
    health = loopback_get(f"http://127.0.0.1:{runner.port}/healthz").json()
    info = [k for k in after if k[0] == "mcp_runner_manifest_info"]
    assert len(info) == 1 and ("sha256", health["manifest_sha256"]) in info[0][1]


def before_reloads(samples: dict[Any, float]) -> float:
    return value(samples, "mcp_runner_reloads_total", result="ok")


def test_metrics_live_on_their_own_loopback_port(observed: tuple[RunnerProcess, Issuer, int]) -> None:
    runner, _, port = observed
    assert port != runner.port
    for path in ("/metrics", "/metrics/"):
        assert loopback_get(f"http://127.0.0.1:{runner.port}{path}").status_code == 404
    assert "mcp_runner_calls_total" in loopback_get(f"http://127.0.0.1:{port}/metrics").text
    start = json.loads(runner.logged().splitlines()[0])  # the start-up block, as one JSON record
    assert f"metrics:   http://127.0.0.1:{port}/metrics" in start["message"]  # no host given: loopback


async def test_json_lines_and_no_token_anywhere(observed: tuple[RunnerProcess, Issuer, int]) -> None:
    runner, issuer, _ = observed
    token, argument_token, query_token = issuer.token(), issuer.token(sub="arg"), issuer.token(sub="query")
    async with mcp_client(runner.url, token) as client:
        result = await client.call_tool("echo", {"text": argument_token, "api_key": "sk-live-1234"})
        assert result.is_error is False
    response = httpx2.post(
        f"{runner.url}?access_token={query_token}",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
    )
    assert response.status_code < 500
    wait_for(lambda: '"echo"' in runner.logged() and "access_token" not in runner.logged(), "the echo audit line")
    text = runner.logged()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    access = [r for r in records if r["logger"] == "uvicorn.access" and r.get("subject") == "user-1"]
    assert access, "no authenticated access line"
    line = access[-1]
    assert line["method"] == "POST" and line["path"] == "/mcp" and isinstance(line["status"], int)
    assert line["client_id"] == "client-1" and line["duration_ms"] >= 0
    audit = [r for r in records if r["logger"] == "runner.audit" and r["name"] == "echo"]
    assert len(audit) == 1
    entry = audit[0]
    assert entry["kind"] == "tool" and entry["outcome"] == "ok" and entry["subject"] == "user-1"
    assert entry["client_id"] == "client-1" and entry["duration_ms"] >= 0
    arguments = json.loads(entry["arguments"])
    assert arguments == {"text": "[redacted]", "api_key": "[redacted]"}
    for secret in (token, argument_token, query_token, "sk-live-1234"):
        assert secret not in text
    assert "eyJ" not in text


async def test_a_reload_removes_the_series_of_removed_names(observed: tuple[RunnerProcess, Issuer, int]) -> None:
    runner, issuer, port = observed
    async with mcp_client(runner.url, issuer.token(), mode="legacy") as client:
        await client.call_tool("add", {"a": 1, "b": 2})
        await client.call_tool("echo", {"text": "x"})
        await client.get_prompt("hello", {"who": "you"})
    named = lambda samples, name: [k for k in samples if ("name", name) in k[1]]  # noqa: E731
    before = scrape(port)
    assert named(before, "echo") and named(before, "hello")
    reloads = value(before, "mcp_runner_reloads_total", result="ok")
    good = runner.manifest.read_text()
    replace(
        runner.manifest,
        good.replace("  - function: tools:echo\n", "").replace("prompts:\n  - function: tools:hello\n", ""),
    )
    wait_for(lambda: value(scrape(port), "mcp_runner_reloads_total", result="ok") > reloads, "the reload")
    after = scrape(port)
    assert named(after, "echo") == [] and named(after, "hello") == []  # calls and durations alike
    assert calls(after, "tool", "add", "ok") == calls(before, "tool", "add", "ok") >= 1  # still served: kept
    reloads = value(after, "mcp_runner_reloads_total", result="ok")
    replace(runner.manifest, good)  # as the module's other tests expect it
    wait_for(lambda: value(scrape(port), "mcp_runner_reloads_total", result="ok") > reloads, "the reload back")

"""DNS-rebinding protection with `server.allowed_hosts`/`allowed_origins`: real server, raw HTTP and the SDK client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from runner.http.security import HostRules
from runner.manifest.errors import ManifestError
from runner.manifest.model import load
from tests.helpers import INITIALIZE, RunnerProcess, edit_and_wait, loopback_get

pytestmark = pytest.mark.anyio

TOOLS = "def add(a: int, b: int) -> int:\n    return a + b\n"
SERVER = """  allowed_hosts: [mcp.example.com, "proxy.internal:8443", "[::2]:*"]
  allowed_origins: ["https://app.example.com", "http://dev.example.com:*"]
"""
MANIFEST = "name: hosts\nserver:\n{server}tools:\n  - function: host_tools:add\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder = tmp_path_factory.mktemp("hosts")
    (folder / "host_tools.py").write_text(TOOLS)
    (folder / "hosts.yaml").write_text(MANIFEST.format(server=SERVER))
    runner = RunnerProcess(folder / "hosts.yaml").start()
    yield runner
    runner.stop()


def status(runner: RunnerProcess, host: str | None = None, origin: str | None = None, path: str = "/mcp") -> int:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if host is not None:
        headers["Host"] = host
    if origin is not None:
        headers["Origin"] = origin
    url = f"http://127.0.0.1:{runner.port}{path}"
    response = (
        httpx2.post(url, json=INITIALIZE, headers=headers) if path == "/mcp" else loopback_get(url, headers=headers)
    )
    return response.status_code


def test_listed_hosts_and_origins_are_accepted_besides_loopback_and_nothing_else(served: RunnerProcess) -> None:
    port = served.port
    accepted = {
        "loopback": (f"127.0.0.1:{port}", None),
        "localhost": (f"localhost:{port}", None),
        "a listed name, any port": ("mcp.example.com", None),
        "a listed name with a port": ("mcp.example.com:443", None),
        "a listed host:port": ("proxy.internal:8443", None),
        "a listed IPv6 with any port": ("[::2]:9000", None),
        "a listed origin": (None, "https://app.example.com"),
        "a listed origin, any port": (None, "http://dev.example.com:3000"),
        "a loopback origin": (None, f"http://localhost:{port}"),
        "the same origin as a listed Host": ("mcp.example.com", "https://mcp.example.com"),
    }
    for case, (host, origin) in accepted.items():
        assert status(served, host, origin) == 200, case
    refused = {
        "a foreign host": ("evil.example", None, 421),
        "a foreign host on the port": (f"evil.example:{port}", None, 421),
        "a listed host on another port": ("proxy.internal:8444", None, 421),
        "a listed host:port without its port": ("proxy.internal", None, 421),
        "a malformed host": ("[::1", None, 421),
        "a foreign origin": (None, "https://evil.example", 403),
        "a listed origin on another scheme": (None, "http://app.example.com", 403),
        "a listed origin on another port": (None, "https://app.example.com:8443", 403),
        "an opaque origin": (None, "null", 403),
        "the same origin as an unlisted Host": ("evil.example", "http://evil.example", 421),
    }
    for case, (host, origin, code) in refused.items():
        assert status(served, host, origin) == code, case
        assert status(served, host, origin, path="/healthz") == code, case


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_sdk_client_works_through_a_proxied_name_and_is_refused_under_a_foreign_one(
    served: RunnerProcess, mode: str
) -> None:
    """A reverse proxy that forwards the public Host (nginx `proxy_set_header Host $http_host`) is served."""
    for host in ("mcp.example.com", f"127.0.0.1:{served.port}"):
        async with httpx2.AsyncClient(headers={"Host": host}) as http:
            async with Client(streamable_http_client(served.url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
                assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}
    with pytest.raises(Exception) as refused:
        async with httpx2.AsyncClient(headers={"Host": "evil.example"}) as http:
            async with Client(streamable_http_client(served.url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
                await client.list_tools()
    # The client sees the refusal as an error response (the raw status, 421, is asserted above).
    assert any(isinstance(error, MCPError) for error in leaves(refused.value))


def leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


async def test_a_reload_applies_new_allowed_lists(served: RunnerProcess) -> None:
    """Runs last in the module: it edits the served manifest (and puts it back)."""

    async def edit(text: str) -> None:
        health = await edit_and_wait(served.manifest.parent, served.health_url, served.manifest.name, text)
        assert health["last_reload"]["result"] == "ok", health

    assert status(served, "other.example.com") == 421
    try:
        await edit(MANIFEST.format(server='  allowed_hosts: [other.example.com]\n  allowed_origins: ["*"]\n'))
        assert status(served, "other.example.com") == 200
        assert status(served, "mcp.example.com") == 421
        assert status(served, None, "https://anywhere.example") == 200  # `*`: any origin
    finally:
        await edit(MANIFEST.format(server=SERVER))


def test_a_non_loopback_bind_checks_host_only_when_listed_and_origin_always() -> None:
    """The rule for a bind the tests cannot open (not loopback), on the same code the middleware runs."""
    open_rules = HostRules(loopback=False)
    assert not open_rules.host_refused("mcp.example.com")  # reached under names this process cannot know
    assert open_rules.host_refused("bad host")
    assert open_rules.origin_refused("https://app.example.com", "mcp.example.com")  # Host not verified
    listed = HostRules(False, ("mcp.example.com",), ("https://app.example.com",))
    assert listed.host_refused("evil.example") and not listed.host_refused("mcp.example.com:443")
    assert not listed.host_refused("127.0.0.1:8000")  # loopback literals never come from a rebinding page
    assert not listed.origin_refused("https://app.example.com", "mcp.example.com")
    assert not listed.origin_refused("https://mcp.example.com", "mcp.example.com")  # same origin, verified Host
    assert listed.origin_refused("http://localhost:6274", "mcp.example.com")  # a local page is another origin here
    assert not HostRules(False, (), ("*",)).origin_refused("https://anywhere.example", "x")


def test_bad_entries_are_located(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "name: x\nserver:\n  allowed_hosts: [ok.example, 'https://mcp.example.com']\n"
        "  allowed_origins: ['https://ok.example', 'app.example.com']\n"
    )
    with pytest.raises(ManifestError) as failed:
        load(tmp_path / "m.yaml")
    assert [str(p).removeprefix(f"{tmp_path}/") for p in failed.value.problems] == [
        "m.yaml:3:31: server.allowed_hosts.1: 'https://mcp.example.com' is not a host: write name, name:port or "
        "name:* (no scheme, no path)",
        "m.yaml:4:43: server.allowed_origins.1: 'app.example.com' is not an origin: write https://name, "
        "http://name:port, https://name:* or * (no path)",
    ]

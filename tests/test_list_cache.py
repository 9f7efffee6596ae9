"""Kept list answers (runner/speed/lists.py) never show a caller more, less or older than a fresh answer would.

Each test lists twice or more, so the later answers come from the cache; each fails if
the cache keys or clears on less than what a list depends on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.helpers import (
    Issuer,
    JWKSServer,
    RunnerProcess,
    edit_and_wait,
    free_port,
    mcp_client,
    post_initialize,
    stop_process,
    wait_for_port,
)

pytestmark = pytest.mark.anyio

MODULE = """
from mcp.server.mcpserver import Context


def echo(text: str) -> str:
    return text


def wipe() -> str:
    return "wiped"


def grow(name: str, ctx: Context, template: bool = False) -> str:
    server = ctx.mcp_server
    if template:  # on its own: a template is added without add_resource
        server.resource(name + "://{id}", name=name)(lambda id: id)
        return name
    server.add_tool(lambda: name, name=name)
    server.resource(name + "://static", name=name + "_static")(lambda: name)
    server.prompt(name=name)(lambda: name)
    return name


def paginate(size: int, ctx: Context) -> int:
    ctx.mcp_server.page_size = size or None
    return size


def shrink(name: str, ctx: Context) -> str:
    ctx.mcp_server.remove_tool(name)
    ctx.mcp_server.remove_prompt(name)
    return name


def secret(name: str) -> str:
    return "secret " + name


def public() -> str:
    return "public"


def admin_prompt(topic: str) -> str:
    return "about " + topic
"""

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def manifest(jwks: JWKSServer, resource: str) -> str:
    return textwrap.dedent(f"""
        name: kept
        signin:
          app_id: {jwks.app_id}
          base_url: {jwks.base_url}
          resource: {resource}
        tools:
          - function: kept:echo
          - function: kept:wipe
            scopes: [admin]
          - function: kept:grow
          - function: kept:shrink
          - function: kept:paginate
        resources:
          - uri: secret://{{name}}
            function: kept:secret
            scopes: [admin]
          - uri: info://public
            function: kept:public
          - uri: info://admin
            function: kept:public
            scopes: [admin]
        prompts:
          - function: kept:admin_prompt
            scopes: [admin]
    """)


class Kept:
    def __init__(self, folder: Path, jwks: JWKSServer) -> None:
        self.folder, self.jwks = folder, jwks
        self.runner = RunnerProcess(folder / "kept.yaml")
        (folder / "kept.py").write_text(MODULE)
        (folder / "kept.yaml").write_text(manifest(jwks, self.runner.url))
        self.issuer = Issuer(jwks.base_url, self.runner.url, jwks.keys[0])

    def token(self, scope: str = "") -> str:
        return self.issuer.token(scope=scope)

    def post(self, token: str, method: str, params: dict[str, Any], session: str | None = None) -> dict[str, Any]:
        """One request, its JSON-RPC answer: 2026-07-28 (no session) as the SDK's client sends it, or in `session`."""
        headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}"}
        if session is None:
            headers.update({"mcp-protocol-version": MODERN, "mcp-method": method})
            if method == "tools/call":
                headers["mcp-name"] = params["name"]
        else:
            headers.update({"mcp-protocol-version": "2025-06-18", "mcp-session-id": session})
        body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
        response = httpx2.post(self.runner.url, json=body, headers=headers, timeout=30)
        if response.headers["content-type"].startswith("text/event-stream"):
            data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
            answer: dict[str, Any] = json.loads(data[-1])
        else:
            answer = response.json()
        return answer

    def session(self, token: str) -> str:
        """A handshake-era session, initialized."""
        opened = post_initialize(self.runner.url, token)
        session = opened.headers["mcp-session-id"]
        headers = {
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {token}",
            "mcp-protocol-version": "2025-06-18",
            "mcp-session-id": session,
        }
        done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert httpx2.post(self.runner.url, json=done, headers=headers, timeout=30).status_code == 202
        return session


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[Kept]:
    k = Kept(tmp_path_factory.mktemp("kept"), jwks)
    k.runner.start()
    yield k
    k.runner.stop()


async def everything(url: str, token: str, mode: str) -> dict[str, list[str]]:
    async with mcp_client(url, token, mode=mode) as client:
        return {
            "tools": sorted(t.name for t in (await client.list_tools()).tools),
            "resources": sorted(str(r.uri) for r in (await client.list_resources()).resources),
            "templates": sorted(t.uri_template for t in (await client.list_resource_templates()).resource_templates),
            "prompts": sorted(p.name for p in (await client.list_prompts()).prompts),
        }


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_each_caller_sees_what_its_scopes_allow_whoever_listed_first(kept: Kept, mode: str) -> None:
    admin = {
        "tools": ["echo", "grow", "paginate", "shrink", "wipe"],
        "resources": ["info://admin", "info://public"],
        "templates": ["secret://{name}"],
        "prompts": ["admin_prompt"],
    }
    user = {
        "tools": ["echo", "grow", "paginate", "shrink"],
        "resources": ["info://public"],
        "templates": [],
        "prompts": [],
    }
    other = kept.token("read")  # another scope set that the policy treats like none
    for _ in range(2):  # the second round is answered from kept answers, in both orders
        assert await everything(kept.runner.url, kept.token("admin"), mode) == admin
        assert await everything(kept.runner.url, kept.token(), mode) == user
        assert await everything(kept.runner.url, other, mode) == user
        assert await everything(kept.runner.url, kept.token("admin read"), mode) == admin


def test_a_kept_answer_is_the_answer_the_sdk_gave(kept: Kept) -> None:
    token = kept.token("admin")
    for method in ("tools/list", "resources/list", "resources/templates/list", "prompts/list"):
        first, second = kept.post(token, method, {"_meta": META}), kept.post(token, method, {"_meta": META})
        assert "result" in first, first
        assert second == first, method


@pytest.mark.parametrize("era", ["2026-07-28", "handshake"])
def test_a_request_the_sdk_refuses_is_refused_even_when_its_answer_is_kept(kept: Kept, era: str) -> None:
    token = kept.token()
    session = None if era == "2026-07-28" else kept.session(token)
    meta = META if session is None else {}
    for method in ("tools/list", "prompts/list"):
        for _ in range(2):
            assert "result" in kept.post(token, method, {"_meta": meta}, session)
        bad_meta = {"_meta": {**meta, "progressToken": {"not": "a token"}}}
        for bad in (bad_meta, {"_meta": meta, "cursor": 12}):
            refused = kept.post(token, method, bad, session)
            assert refused.get("error", {}).get("code") == -32602, (method, bad, refused)


async def test_entries_added_or_removed_at_run_time_are_listed_at_once(kept: Kept) -> None:
    """Through `ctx.mcp_server`: tools, prompts, resources and templates (each list kept first)."""
    token = kept.token("admin")
    before = await everything(kept.runner.url, token, "legacy")
    assert await everything(kept.runner.url, token, "auto") == before
    grown = {
        "tools": sorted([*before["tools"], "grown"]),
        "resources": sorted([*before["resources"], "grown://static"]),
        "templates": before["templates"],
        "prompts": sorted([*before["prompts"], "grown"]),
    }
    for arguments, added in (
        ({}, {}),
        ({"template": True}, {"templates": sorted([*before["templates"], "grown://{id}"])}),
    ):
        async with mcp_client(kept.runner.url, token) as client:
            await client.call_tool("grow", {"name": "grown", **arguments})
        grown.update(added)
        for mode in ("auto", "legacy"):
            assert await everything(kept.runner.url, token, mode) == grown, (mode, arguments)
    async with mcp_client(kept.runner.url, token) as client:
        await client.call_tool("shrink", {"name": "grown"})
    shrunk = await everything(kept.runner.url, token, "auto")
    assert (shrunk["tools"], shrunk["prompts"]) == (before["tools"], before["prompts"])


async def test_a_page_size_set_at_run_time_pages_the_next_list(kept: Kept) -> None:
    async with mcp_client(kept.runner.url, kept.token()) as client:
        whole = [t.name for t in (await client.list_tools()).tools]
        assert len(whole) > 2 and (await client.list_tools()).next_cursor is None
        try:
            await client.call_tool("paginate", {"size": 2})
            first = await client.list_tools()
            assert [t.name for t in first.tools] == whole[:2] and first.next_cursor is not None
        finally:
            await client.call_tool("paginate", {"size": 0})
        assert [t.name for t in (await client.list_tools()).tools] == whole


EDITING = """
from runner import FastMCPSignInWrapper

mcp = FastMCPSignInWrapper("edits", allow_no_auth=True)


@mcp.tool()
def echo(text: str) -> str:
    \"\"\"Echo\"\"\"
    return text


async def edit_in_place(ctx, call_next):
    \"\"\"A user's middleware that edits the list it is given, in place, as the SDK lets it.\"\"\"
    result = await call_next(ctx)
    if ctx.method == "tools/list":
        result["tools"][0]["description"] += "!"
        result["tools"].append({"name": "extra", "inputSchema": {"type": "object"}})
    return result


mcp.add_middleware(edit_in_place)
mcp.run()
"""


def stdio_tools(script: Path, metas: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Run a Python API server script over stdio; the tools of a `tools/list` sent with each `_meta`, in order."""
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    answers = []
    try:
        for n, meta in enumerate(metas):
            request = {"jsonrpc": "2.0", "id": n, "method": "tools/list", "params": {"_meta": meta}}
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            answers.append(json.loads(proc.stdout.readline())["result"]["tools"])
    finally:
        stop_process(proc)
    return answers


def test_a_middleware_that_edits_a_list_in_place_edits_only_its_own_answer(tmp_path: Path) -> None:
    """Python API, stdio: what `add_middleware` middleware does to one answer never shows in the next."""
    (tmp_path / "edits.py").write_text(EDITING)
    answers = [
        [(t["name"], t.get("description")) for t in tools] for tools in stdio_tools(tmp_path / "edits.py", [META] * 3)
    ]
    assert answers == [[("echo", "Echo!"), ("extra", None)]] * 3, answers


INSIDE = """
from runner import FastMCPSignInWrapper

mcp = FastMCPSignInWrapper("inside", allow_no_auth=True)


@mcp.tool()
def echo(text: str) -> str:
    return text


@mcp.tool()
def secret() -> str:
    return "secret"


async def only_admin_sees_secret(ctx, call_next):
    \"\"\"Appended to `mcp.middleware`, as the SDK's guide says: a list filtered per request.\"\"\"
    result = await call_next(ctx)
    client = (ctx.meta or {}).get("io.modelcontextprotocol/clientInfo") or {}
    if ctx.method == "tools/list" and client.get("name") != "admin":
        result = {**result, "tools": [t for t in result["tools"] if t["name"] != "secret"]}
    return result


mcp.middleware.append(only_admin_sees_secret)
mcp.run()
"""


def test_middleware_appended_inside_the_cache_still_decides_each_answer(tmp_path: Path) -> None:
    """Python API, stdio: middleware appended to `server.middleware` runs for every list request."""
    (tmp_path / "inside.py").write_text(INSIDE)
    clients = ["admin", "someone", "admin", "someone"]
    metas = [{**META, "io.modelcontextprotocol/clientInfo": {"name": client, "version": "0"}} for client in clients]
    seen = [sorted(t["name"] for t in tools) for tools in stdio_tools(tmp_path / "inside.py", metas)]
    assert seen == [["echo", "secret"], ["echo"], ["echo", "secret"], ["echo"]], seen


STATELESS = """
import sys

from runner import FastMCPSignInWrapper

app_id, base_url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
mcp = FastMCPSignInWrapper(
    "stateless", app_id=app_id, resource=f"http://127.0.0.1:{port}/mcp", base_url=base_url, port=port
)
shaped = []
listed = mcp.list_tools


async def count():
    \"\"\"What the tools/list handler lists with: runs only for the lists the SDK answers.\"\"\"
    shaped.append(1)
    return await listed()


mcp.list_tools = count


@mcp.tool()
def lists_shaped() -> int:
    return len(shaped)


mcp.run(transport="streamable-http", stateless_http=True)
"""


def test_stateless_handshake_era_lists_are_kept_too(tmp_path: Path, jwks: JWKSServer) -> None:
    """`--stateless`: handshake-era requests come without `initialize` (the SDK serves them born ready)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    (tmp_path / "stateless.py").write_text(STATELESS)
    args = [sys.executable, str(tmp_path / "stateless.py"), jwks.app_id, jwks.base_url, str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    token = Issuer(jwks.base_url, url, jwks.keys[0]).token()
    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}",
        "mcp-protocol-version": "2025-06-18",
    }

    def post(method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        text = httpx2.post(url, json=body, headers=headers, timeout=30).text
        answer: dict[str, Any] = json.loads([line[5:] for line in text.splitlines() if line.startswith("data:")][-1])
        return answer["result"]

    try:
        wait_for_port(port, proc=proc)
        assert [post("tools/list", {})["tools"][0]["name"] for _ in range(3)] == ["lists_shaped"] * 3
        assert post("tools/call", {"name": "lists_shaped", "arguments": {}})["structuredContent"] == {"result": 1}
    finally:
        stop_process(proc)


async def test_a_reload_replaces_every_kept_answer(kept: Kept) -> None:
    """Runs last in the module: it edits the served manifest.

    Also the 2026-07-28 `serverInfo` stamp on every result (the SDK keeps its dump per server,
    and the live server stays the same object across reloads): a new title and the default
    version (which carries the manifest's hash) show at once, on a list and on a call."""
    file = kept.runner.manifest
    added = "  - {function: 'kept:echo', name: echo_again}\n"
    stamp = "io.modelcontextprotocol/serverInfo"
    call = {"name": "echo", "arguments": {"text": "x"}, "_meta": META}
    async with mcp_client(kept.runner.url, kept.token(), mode="legacy") as legacy:
        for _ in range(2):
            assert "echo_again" not in {t.name for t in (await legacy.list_tools()).tools}
            listed = kept.post(kept.token(), "tools/list", {"_meta": META})
            assert "echo_again" not in str(listed)
        before = listed["result"]["_meta"][stamp]
        assert "title" not in before, before
        edited = manifest(kept.jwks, kept.runner.url).replace("tools:\n", "tools:\n" + added, 1)
        edited = edited.replace("name: kept\n", "name: kept2\ntitle: Kept again\n", 1)
        health = await edit_and_wait(file.parent, kept.runner.health_url, file.name, edited)
        assert health["last_reload"]["result"] == "ok", health
        assert "echo_again" in {t.name for t in (await legacy.list_tools()).tools}
        listed = kept.post(kept.token(), "tools/list", {"_meta": META})
        assert "echo_again" in str(listed)
        for result in (listed["result"], kept.post(kept.token(), "tools/call", call)["result"]):
            after = result["_meta"][stamp]
            assert (after["name"], after["title"]) == ("kept2", "Kept again"), after
            assert after["version"] != before["version"], (before, after)
    async with mcp_client(kept.runner.url, kept.token(), mode="legacy") as fresh:  # a new session's initialize
        assert fresh.server_info is not None and fresh.server_info.name == "kept2"

"""`openapi:` under attack: attacker21's findings (F1, F3, F5, F6, F8, F10, F11, F14), each replayed against a real
runner serving a hostile API on loopback (tests/apps/openapi/hostile_api.py), called by a real MCP client with
real tokens from the local issuer. Outcomes only: the tool result's text, what the API received, `check`'s lines.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.apps.openapi.hostile_api import BOMB, HostileAPI
from tests.helpers import RunnerProcess, mcp_client, run_cli, run_main

pytestmark = pytest.mark.anyio

DOCUMENT = """\
openapi: 3.1.0
info: {title: hostile, version: "1"}
paths:
  /bomb: {get: {operationId: bomb}}
  /deep: {get: {operationId: deep, parameters: [{name: levels, in: query, required: true, schema: {type: integer}}]}}
  /charset: {get: {operationId: charset}}
  /trickle: {get: {operationId: trickle}}
  /gate: {get: {operationId: gate}}
  /text: {get: {operationId: text}}
  /header: {get: {operationId: header, parameters: [{name: X-Tag, in: header, schema: {type: string}}]}}
  /item/{id}: {get: {operationId: item, parameters: [{name: id, in: path, required: true, schema: {type: string}}]}}
"""

MANIFEST = """\
name: hostile
server: {max_upstream_calls_per_client: 8}
signin: {app_id: local}
openapi:
  - {name: api, prefix: "", spec: hostile.yaml, base_url: "${API}/v1", timeout: 30}
  - {name: short, spec: hostile.yaml, base_url: "${API}/v1", timeout: 1, include: [trickle]}
"""


@pytest.fixture(scope="module")
def api() -> Iterator[HostileAPI]:
    server = HostileAPI().start()
    yield server
    server.gate.set()
    server.stop()


@pytest.fixture(scope="module")
def served(api: HostileAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunnerProcess, str, str]]:
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "hostile.yaml").write_text(DOCUMENT)
    (folder / "m.yaml").write_text(MANIFEST)
    env = {"API": api.base_url}
    runner = RunnerProcess(folder / "m.yaml", env=env).start()
    tokens = [
        run_main("token", str(runner.manifest), "--port", str(runner.port), "--subject", who, env=env).stdout.strip()
        for who in ("alice", "bob")
    ]
    yield runner, tokens[0], tokens[1]
    runner.stop()


def text(result: Any) -> str:
    return str(result.content[0].text)


async def test_a_json_answer_is_never_blown_up_by_indenting(served: tuple[RunnerProcess, str, str]) -> None:
    """F1: 80 KB of deeply nested zeros came back as 1.7 MB of indented text (3.6 MiB -> 78 MiB in the report)."""
    runner, alice, _ = served
    async with mcp_client(runner.url, alice) as client:
        bomb = await client.call_tool("bomb", {})
        assert not bomb.is_error and text(bomb) == BOMB.decode()  # as the API sent it: no bigger
        shallow = await client.call_tool("deep", {"levels": 64})
        nested: list[Any] = []
        for _ in range(63):
            nested = [nested]
        assert not shallow.is_error and shallow.structured_content == {"result": nested}
        for levels in (65, 5000):  # past the bound; and past what Python's parser takes (RecursionError)
            deep = await client.call_tool("deep", {"levels": levels})
            assert deep.is_error and text(deep) == "api: the JSON answer is nested more than 64 levels deep"


async def test_odd_answers_and_arguments_are_clean_tool_errors(served: tuple[RunnerProcess, str, str]) -> None:
    """F14: an unknown charset, a non-ASCII header value, a path value too long for a URL: no raw Python error
    text to the client, no traceback in the log."""
    runner, alice, _ = served
    async with mcp_client(runner.url, alice) as client:
        odd = await client.call_tool("charset", {})
        assert not odd.is_error and text(odd) == "plain words"  # decoded as UTF-8
        header = await client.call_tool("header", {"X-Tag": "café"})
        assert header.is_error and text(header) == "api: header 'X-Tag' must be ASCII text"
        fine = await client.call_tool("header", {"X-Tag": "cafe"})
        assert fine.structured_content == {"tag": "cafe"}
        long = await client.call_tool("item", {"id": "x" * 100_000})
        assert long.is_error and text(long) == "api: the arguments do not make a valid URL (a path value too long?)"
    assert "Traceback" not in runner.logged()


async def test_timeout_is_a_total_deadline_not_per_read(served: tuple[RunnerProcess, str, str]) -> None:
    """F6: a byte every 0.25 s kept a call with `timeout: 1` going for 4 s, and it succeeded."""
    runner, alice, _ = served
    async with mcp_client(runner.url, alice) as client:
        slow = await client.call_tool("short_trickle", {})
    assert slow.is_error and text(slow) == "short: no answer within 1 s"


async def test_one_client_cannot_hold_an_api_for_others(
    served: tuple[RunnerProcess, str, str], api: HostileAPI
) -> None:
    """F5: one client's calls in flight to an API are bounded (`server.max_upstream_calls_per_client`, 8 here);
    past that it is refused at once, and another client is served meanwhile."""
    runner, alice, bob = served
    held: list[Any] = []
    async with mcp_client(runner.url, alice) as a, mcp_client(runner.url, bob) as b, anyio.create_task_group() as tg:

        async def hold() -> None:
            held.append(await a.call_tool("gate", {}))

        for _ in range(8):
            tg.start_soon(hold)
        with anyio.fail_after(30):  # bounded: the 8 calls reach the API
            while sum(s.raw_path == "/v1/gate" for s in api.seen) < 8:
                await anyio.sleep(0.02)
        ninth = await a.call_tool("gate", {})
        assert ninth.is_error
        assert text(ninth) == (
            "server busy: this client has 8 calls in flight to API 'api' already "
            "(server.max_upstream_calls_per_client); try again when one has finished"
        )
        other = await b.call_tool("text", {})  # bob is served while alice's 8 are held
        assert not other.is_error and text(other) == "plain words"
        api.gate.set()
    assert [r.structured_content for r in held] == [{"gate": "open"}] * 8


def test_spec_fetches_and_servers_urls_fail_closed(tmp_path: Path, api: HostileAPI) -> None:
    """F8, F10 B, F11: a fetched spec cannot redirect, trickle, use the environment's proxy, print the key in its
    URL, or send the entry's headers to a host it picks (another origin, or a server variable)."""
    url = api.base_url
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        textwrap.dedent(f"""\
        name: x
        openapi:
          - {{name: moved, spec: "{url}/spec/redirect.yaml", base_url: "{url}/v1"}}
          - {{name: slow, spec: "{url}/spec/slow.yaml", timeout: 1}}
          - {{name: private, spec: "{url}/spec/private.yaml?api_key=sk_live_5f2b9c"}}
          - {{name: elsewhere, spec: "{url}/spec/elsewhere.yaml", headers: {{X-Api-Key: k}}}}
          - {{name: tenant, spec: "{url}/spec/tenant.yaml"}}
          - {{name: own, spec: "{url}/spec/own.yaml", headers: {{X-Api-Key: k}}}}
        """)
    )
    before = len(api.seen)
    out = run_main("check", str(manifest))
    assert out.returncode == 2
    problems = [line for line in out.stderr.splitlines() if line.startswith(str(manifest))]
    said = {line.split(": openapi '")[1].split("'")[0]: line for line in problems}
    assert sorted(said) == ["elsewhere", "moved", "private", "slow", "tenant"], out.stderr  # not `own`
    for name, line in zip(["moved", "slow", "private", "elsewhere", "tenant"], range(3, 8), strict=True):
        assert said[name].startswith(f"{manifest}:{line}:")
    moved = f"{url}/spec/redirect.yaml"
    assert said["moved"].endswith(
        f"'moved': {moved}: fetching {moved}: HTTP 302: redirects are not followed (give the final URL)"
    )
    assert not [s for s in api.seen[before:] if s.raw_path == "/openapi.yaml" and s.headers["host"].startswith("l")]
    slow = f"{url}/spec/slow.yaml"
    assert said["slow"].endswith(f"'slow': {slow}: fetching {slow}: no complete answer within 1 s")
    private = f"{url}/spec/private.yaml?..."
    assert said["private"].endswith(f"'private': {private}: fetching {private}: HTTP 401")
    assert "sk_live" not in out.stderr + out.stdout
    assert said["elsewhere"].endswith(
        f"'elsewhere': {url}/spec/elsewhere.yaml#/servers/0/url: the document's servers URL "
        f"(http://localhost:{api.port}/v1) is not on the host it was fetched from ({url}/spec/elsewhere.yaml): "
        "the entry's headers would go where a fetched document says; set base_url"
    )
    assert said["tenant"].endswith(
        f"'tenant': {url}/spec/tenant.yaml#/servers/0/variables/tenant/default: server "
        f"variable 'tenant': '127.0.0.1:{api.port}/steal?' is not plain host text (letters, digits, . _ ~ -)"
    )
    assert not [s for s in api.seen[before:] if s.raw_path == "/steal"]
    # The environment's proxy is not used for the fetch (nor for calls): the manifest says where requests go.
    manifest.write_text(f"name: x\nopenapi:\n  - {{name: direct, spec: '{url}/openapi.yaml', base_url: '{url}/v1'}}\n")
    direct = run_main("check", str(manifest), env={"HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""})
    assert direct.returncode == 0, direct.stderr


def fan_out(levels: int, operations: int = 1) -> str:
    """A document whose schema S0 names S1 twice, S1 names S2 twice, ...: 2^(levels + 2) nodes, ~70 bytes a level."""
    ref = "#/components/schemas/S{}".format
    schemas: dict[str, Any] = {
        f"S{i}": {"properties": {"a": {"$ref": ref(i + 1)}, "b": {"$ref": ref(i + 1)}}} for i in range(levels)
    }
    schemas[f"S{levels}"] = {"type": "string"}
    body = {"content": {"application/json": {"schema": {"$ref": ref(0)}}}}
    paths = {f"/x{i}": {"post": {"operationId": f"x{i}", "requestBody": body}} for i in range(operations)}
    document = {"openapi": "3.1.0", "info": {"title": "r", "version": "1"}, "paths": paths}
    return json.dumps({**document, "components": {"schemas": schemas}})


def test_fan_out_refs_and_yaml_aliases_are_bounded(tmp_path: Path) -> None:
    """F3: 2 KB of $refs that each name the next level twice (or YAML aliases doing the same) expand to 2^levels
    nodes: `check` (and serve, and reload) never finished at 26 levels, took seconds at 12. Now located problems,
    quickly: past 500,000 nodes resolving, 10,000 in one tool's input schema, 50,000 in an entry's tools."""
    levels = 26
    (tmp_path / "refs.json").write_text(fan_out(levels))
    (tmp_path / "wide.json").write_text(fan_out(12))  # 16,382 nodes in one tool
    (tmp_path / "many.json").write_text(fan_out(11, operations=7))  # 8,190 nodes in each of 7 tools
    anchors = "\n".join([f"  l{i}: &l{i} {{a: *l{i - 1}, b: *l{i - 1}}}" for i in range(1, levels)])
    (tmp_path / "aliases.yaml").write_text(
        "openapi: 3.1.0\ninfo: {title: a, version: '1'}\nx-levels:\n  l0: &l0 {type: string}\n" + anchors + "\n"
        f"paths:\n  /x:\n    post:\n      operationId: x\n      requestBody:\n        content:\n"
        f"          application/json:\n            schema: {{properties: {{v: *l{levels - 1}}}}}\n"
    )
    manifest = tmp_path / "m.yaml"
    entries = "".join(
        f"  - {{name: {n}, spec: {n}.{'yaml' if n == 'aliases' else 'json'}, base_url: 'http://127.0.0.1:9'}}\n"
        for n in ("refs", "aliases", "wide", "many")
    )
    manifest.write_text("name: x\nopenapi:\n" + entries)
    out = run_cli("check", str(manifest))  # a process: without the bounds it would run past run_cli's 60 s
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.startswith(str(manifest))]
    assert len(lines) == 4, out.stderr
    expands = "expands to more than 500000 schema nodes ($refs or YAML aliases fanning out)"
    assert lines[0].startswith(f"{manifest}:3:") and "openapi 'refs': refs.json#/components/schemas/S" in lines[0]
    assert lines[1].startswith(f"{manifest}:4:") and "openapi 'aliases': aliases.yaml#/paths/~1x/post" in lines[1]
    assert lines[0].endswith(expands) and lines[1].endswith(expands)
    assert lines[2].startswith(f"{manifest}:5:")
    assert lines[2].endswith(
        "openapi 'wide': wide.json#/paths/~1x0/post: x0: its input schema holds more than 10000 nodes"
    )
    assert lines[3].startswith(f"{manifest}:6:")
    many = "its tools' input schemas hold more than 50000 nodes in all: choose with include:"
    assert lines[3].endswith(f"openapi 'many': many.json#/paths: {many}")

"""`openapi:` entries: an HTTP API described by OpenAPI 3.x, served as tools (runner/openapi, docs/openapi.md).

A real Starlette API on loopback (tests/apps/openapi/pets_api.py), the real Swagger Petstore 3 document
(tests/apps/openapi/petstore3.yaml) and a small 3.1 probe document, served by a real runner process and
called by a real MCP client with real tokens from the local issuer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.apps.openapi.pets_api import PetsAPI
from tests.helpers import (
    ROOT,
    RunnerProcess,
    edit_and_wait,
    free_port,
    healthz,
    mcp_client,
    run_cli,
    run_main,
    stop_process,
    wait_for_port,
)

pytestmark = pytest.mark.anyio
SPECS = ROOT / "tests" / "apps" / "openapi"
SECRET = "pets-key-7f3a"

MANIFEST = """\
name: apis
signin: {app_id: local}
openapi:
  - name: pets
    spec: petstore3.yaml
    base_url: ${PETS_URL}/api/v3
    headers: {X-Api-Key: "${PETS_KEY}"}
    include: [addPet, getPetById, findPetsByStatus, deletePet, getInventory]
    overrides:
      pets_getInventory: {title: Stock, annotations: {readOnlyHint: true}}
  - name: probe
    prefix: ""
    spec: pets.yaml
    base_url: ${PETS_URL}/v1
    timeout: 10
  - name: guarded
    spec: pets.yaml
    base_url: ${PETS_URL}/v1
    include: [text, putList]
    scopes: [probe.read]
    overrides: {guarded_putList: {scopes: [probe.write]}}
"""


@pytest.fixture(scope="module")
def api() -> Iterator[PetsAPI]:
    server = PetsAPI().start()
    yield server
    server.stop()


def folder_with(tmp: Path, manifest: str) -> Path:
    for name in ("petstore3.yaml", "pets.yaml"):
        shutil.copy(SPECS / name, tmp / name)
    (tmp / "apis.yaml").write_text(manifest)
    return tmp / "apis.yaml"


@pytest.fixture(scope="module")
def served(api: PetsAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunnerProcess, str]]:
    manifest = folder_with(tmp_path_factory.mktemp("openapi"), MANIFEST)
    env = {"PETS_URL": api.base_url, "PETS_KEY": SECRET}
    runner = RunnerProcess(manifest, env=env).start()
    token = run_cli("token", str(manifest), "--port", str(runner.port), env=env).stdout.strip()
    yield runner, token
    runner.stop()


def text(result: Any) -> str:
    return str(result.content[0].text)


async def test_the_petstore_document_becomes_tools_named_by_operation_id(served: tuple[RunnerProcess, str]) -> None:
    runner, token = served
    async with mcp_client(runner.url, token) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    pets = sorted(n for n in tools if n.startswith("pets_"))
    assert pets == ["pets_addPet", "pets_deletePet", "pets_findPetsByStatus", "pets_getInventory", "pets_getPetById"]
    get = tools["pets_getPetById"]
    assert get.input_schema == {
        "type": "object",
        "properties": {"petId": {"type": "integer", "format": "int64", "description": "ID of pet to return"}},
        "required": ["petId"],
    }
    assert get.title == "Find pet by ID." and get.annotations is not None and get.annotations.read_only_hint
    add = tools["pets_addPet"].input_schema  # the object body's properties, its $refs resolved
    assert set(add["properties"]) == {"id", "name", "category", "photoUrls", "tags", "status"}
    assert add["required"] == ["name", "photoUrls"]
    assert add["properties"]["category"]["properties"]["name"] == {"type": "string", "example": "Dogs"}
    assert add["properties"]["status"]["enum"] == ["available", "pending", "sold"]
    find = tools["pets_findPetsByStatus"].input_schema
    assert find["properties"]["status"]["enum"] == ["available", "pending", "sold"] and "required" not in find
    delete = tools["pets_deletePet"].input_schema  # a header parameter and a path parameter
    assert delete["properties"]["api_key"] == {"type": "string"} and delete["required"] == ["petId"]
    assert tools["pets_getInventory"].title == "Stock"  # overrides, by served name
    # The probe document: prefix "", a derived name, a cut $ref cycle, a skipped multipart operation.
    assert {"lookup", "plant", "putList", "get_probe_plain_a", "text", "big"} <= set(tools)
    assert "upload" not in tools and "odd" not in tools  # a multipart body; an undeclared path parameter
    plant = tools["plant"].input_schema
    assert plant["required"] == ["name", "body_name"]  # the body's `name` clashes with the path's
    assert plant["properties"]["children"]["items"]["description"].startswith("(recursive: Node")
    assert tools["putList"].input_schema["properties"]["body"] == {"type": "array", "items": {"type": "integer"}}
    assert "Authorization" not in tools["lookup"].input_schema["properties"]  # never the model's to set
    assert "guarded_text" not in tools  # the mount's scope: this token lacks it


async def test_calls_reach_the_api_and_answers_come_back(served: tuple[RunnerProcess, str], api: PetsAPI) -> None:
    runner, token = served
    async with mcp_client(runner.url, token) as client:
        added = await client.call_tool(
            "pets_addPet", {"id": 7, "name": "Rex", "photoUrls": ["http://x/rex.png"], "status": "sold"}
        )
        assert not added.is_error and added.structured_content == {
            "id": 7,
            "name": "Rex",
            "photoUrls": ["http://x/rex.png"],
            "status": "sold",
        }
        got = await client.call_tool("pets_getPetById", {"petId": 7})
        assert got.structured_content is not None and got.structured_content["name"] == "Rex"
        found = await client.call_tool("pets_findPetsByStatus", {"status": "sold"})
        assert found.structured_content == {"result": [added.structured_content]}  # a JSON array, wrapped
        missing = await client.call_tool("pets_getPetById", {"petId": 99})
        # Exactly the text docs/openapi.md shows: no `Error executing tool ...` in front of it.
        assert missing.is_error and text(missing) == 'pets: HTTP 404 Not Found: {"message":"Pet not found"}'
        refused = await client.call_tool("pets_deletePet", {"petId": 7})  # no api_key header: 400, a long body
        assert refused.is_error and text(refused).startswith("pets: HTTP 400 Bad Request: missing api_key xxx")
        assert len(text(refused)) < 500  # the body is cut short
        deleted = await client.call_tool("pets_deletePet", {"petId": 7, "api_key": "special-key"})
        assert not deleted.is_error and text(deleted) == "HTTP 200, no content"
        plain = await client.call_tool("text", {})
        assert not plain.is_error and text(plain) == "plain words" and plain.structured_content is None
        big = await client.call_tool("big", {})
        assert big.is_error and text(big) == "probe: the response is larger than 4 MiB"
        bad = await client.call_tool("pets_getPetById", {"petId": "seven"})
        assert bad.is_error and "input schema" in text(bad)
    sent = [s for s in api.seen if s.raw_path.startswith("/api/v3/pet")]
    assert sent and all(s.headers.get("x-api-key") == SECRET for s in sent)  # the manifest's credentials
    assert all(token not in value for s in api.seen for value in s.headers.values())  # never the client's token
    assert all("authorization" not in s.headers for s in api.seen)
    assert len({s.client_port for s in sent}) == 1  # one pooled connection, reused by every call


async def test_healthz_shows_each_apis_operations_spec_kind_and_last_outcome(
    served: tuple[RunnerProcess, str], api: PetsAPI
) -> None:
    """Kinds only: /healthz needs no token, so no base URL, header, argument or body."""
    runner, token = served
    async with mcp_client(runner.url, token) as client:
        await client.call_tool("pets_getPetById", {"petId": 4242})
        missing = healthz(runner.health_url)["openapi"]
        await client.call_tool("text", {})
    found = healthz(runner.health_url)["openapi"]
    assert missing["pets"]["last_call"]["outcome"] == "http 404"
    assert found["pets"] == {"operations": 5, "spec": "file", "last_call": missing["pets"]["last_call"]}
    assert found["probe"]["operations"] == 7 and found["probe"]["last_call"]["outcome"] == "ok"
    assert found["guarded"]["operations"] == 2 and found["guarded"]["spec"] == "file"
    shown = json.dumps(found)
    assert api.base_url.split("//")[1] not in shown and SECRET not in shown and "4242" not in shown


async def test_arguments_never_leave_the_operations_path(served: tuple[RunnerProcess, str], api: PetsAPI) -> None:
    runner, token = served
    cases = {
        "../../admin": "/v1/probe/..%2F..%2Fadmin",
        "..": "/v1/probe/%2E%2E",
        ".": "/v1/probe/%2E",
        "a%2Fb": "/v1/probe/a%252Fb",
        "http://evil.example/x": "/v1/probe/http%3A%2F%2Fevil.example%2Fx",
        "//evil.example": "/v1/probe/%2F%2Fevil.example",
        "x?admin=1#frag": "/v1/probe/x%3Fadmin%3D1%23frag",
        "a\r\nHost: evil": "/v1/probe/a%0D%0AHost%3A%20evil",
    }
    async with mcp_client(runner.url, token) as client:
        for value, raw in cases.items():
            result = await client.call_tool("lookup", {"name": value})
            assert not result.is_error and result.structured_content is not None, text(result)
            assert result.structured_content["raw_path"] == raw
        result = await client.call_tool("lookup", {"name": "n", "q": "a b&c=d\r\nX: y", "tags": ["1", "2/3"]})
        assert result.structured_content is not None
        assert result.structured_content["query"] == "q=a+b%26c%3Dd%0D%0AX%3A+y&tags=1&tags=2%2F3"
        injected = await client.call_tool("lookup", {"name": "n", "X-Note": "ok\r\nAuthorization: Bearer x"})
        assert injected.is_error and "line break" in text(injected)
        noted = await client.call_tool("lookup", {"name": "n", "X-Note": "fine"})
        assert not noted.is_error
        empty = await client.call_tool("lookup", {"name": ""})
        assert empty.is_error and "cannot be empty" in text(empty)
    assert [s for s in api.seen if s.raw_path.startswith("/v1/probe/n")][-1].headers["x-note"] == "fine"
    assert not [s for s in api.seen if not s.raw_path.startswith(("/v1/", "/api/v3/"))]  # nothing outside


async def test_a_mounts_scopes_guard_its_tools(served: tuple[RunnerProcess, str], api: PetsAPI) -> None:
    runner, token = served
    before = len(api.seen)
    async with mcp_client(runner.url, token) as client:  # without probe.read: as if the tool did not exist
        with pytest.raises(MCPError):  # answered as for a local tool without its scope
            await client.call_tool("guarded_text", {})
    assert len(api.seen) == before  # the API never heard of it
    scoped = run_cli("token", str(runner.manifest), "--port", str(runner.port), "--scope", "probe.read", env=runner.env)
    async with mcp_client(runner.url, scoped.stdout.strip()) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "guarded_text" in names and "guarded_putList" not in names  # the override's scope: on top
        assert text(await client.call_tool("guarded_text", {})) == "plain words"
    both = run_cli(
        *("token", str(runner.manifest), "--port", str(runner.port), "--scope", "probe.read", "--scope", "probe.write"),
        env=runner.env,
    )
    async with mcp_client(runner.url, both.stdout.strip()) as client:
        assert "guarded_putList" in {t.name for t in (await client.list_tools()).tools}
        listed = await client.call_tool("guarded_putList", {"body": [1, 2]})
        assert not listed.is_error and listed.structured_content == {"raw_path": "/v1/probe/list", "query": ""}
    assert api.seen[-1].body == b"[1,2]"  # a JSON body that is not an object: the `body` argument, as it is


def test_check_locates_a_broken_spec_and_unknown_operations(tmp_path: Path) -> None:
    broken = textwrap.dedent("""\
        openapi: 3.0.3
        info: {title: t, version: "1"}
        paths:
          /a:
            get:
              operationId: getA
              parameters:
                - {$ref: "#/components/parameters/Missing"}
        """)
    (tmp_path / "broken.yaml").write_text(broken)
    (tmp_path / "swagger.json").write_text('{"swagger": "2.0", "info": {}, "paths": {}}')
    manifest = folder_with(
        tmp_path,
        "name: x\nopenapi:\n"
        "  - name: pets\n    spec: petstore3.yaml\n    include: [getPetById, getPet]\n"
        "    overrides: {pets_nope: {title: T}}\n"
        "  - name: broken\n    spec: broken.yaml\n    base_url: http://127.0.0.1:9\n"
        "  - name: old\n    spec: swagger.json\n"
        "  - name: inline\n    base_url: http://127.0.0.1:9\n    spec:\n      openapi: 3.1.0\n      paths: []\n"
        "  - name: gone\n    spec: missing.yaml\n"
        "  - name: gone\n    spec: petstore3.yaml\n",
    )
    out = run_cli("check", str(manifest))
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr
    assert f"{manifest}:5:27: include: no operation 'getPet' in petstore3.yaml" in lines
    assert f"{manifest}:6:17: overrides: 'pets_nope' is not a tool of openapi 'pets'" in lines
    assert (
        f"{manifest}:8:11: openapi 'broken': broken.yaml#/paths/~1a/get/parameters/0/$ref: "
        "$ref '#/components/parameters/Missing' does not resolve" in lines
    )
    assert f"{manifest}:11:11: openapi 'old': swagger.json#/swagger: Swagger 2.0 is not supported" in lines
    assert f"{manifest}:16:14: openapi 'inline': paths must be a mapping" in lines
    assert f"{manifest}:18:11: openapi 'gone': missing.yaml: cannot read missing.yaml" in lines
    assert f"{manifest}:19:11: duplicate openapi name 'gone' (first at line 17)" in lines


def test_check_fetches_a_url_spec_unless_offline(tmp_path: Path, api: PetsAPI) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("name: x\nopenapi:\n  - name: far\n    spec: http://127.0.0.1:9/openapi.yaml\n")
    offline = run_cli("check", "--offline", str(manifest))
    assert offline.returncode == 0 and "0 tools" in offline.stdout, offline.stderr
    online = run_cli("check", str(manifest))
    assert online.returncode == 2 and "cannot fetch http://127.0.0.1:9/openapi.yaml" in online.stderr
    served = (
        f"name: x\nopenapi:\n  - name: near\n    spec: {api.base_url}/openapi.yaml\n    base_url: {api.base_url}/v1\n"
    )
    manifest.write_text(served)
    fetched = run_cli("check", str(manifest))
    assert fetched.returncode == 0 and "7 tools" in fetched.stdout, fetched.stderr


def test_check_refuses_clashing_names_and_scopes_without_signin(tmp_path: Path) -> None:
    (tmp_path / "own.py").write_text("def text() -> str:\n    return 'mine'\n")
    manifest = folder_with(
        tmp_path,
        "name: x\ntools:\n  - function: own:text\nopenapi:\n"
        "  - {name: one, prefix: '', spec: pets.yaml, base_url: 'http://127.0.0.1:9', exclude: [text]}\n"
        "  - {name: two, prefix: '', spec: pets.yaml, base_url: 'http://127.0.0.1:9', scopes: [a]}\n",
    )
    out = run_cli("check", str(manifest))
    assert out.returncode == 2
    # Each clash names who serves the name already, and the fix, at the later entry's name.
    by_one = "openapi 'two' would serve tools already served by openapi 'one' ('lookup', 'plant', 'putList', "
    assert f"{manifest}:6:12: {by_one}" in out.stderr, out.stderr
    assert "set its prefix:, or exclude: [lookup, plant, putList, get_probe_plain_a, gate, big]" in out.stderr
    by_own = "openapi 'two' would serve tools already served by the manifest's tools ('text'): "
    assert f"{manifest}:6:12: {by_own}set its prefix:, or exclude: [text]" in out.stderr
    assert f"{manifest}:6:78: scopes need a signin block" in out.stderr


async def test_reload_follows_the_spec_file_and_keeps_other_apis_connections(api: PetsAPI, tmp_path: Path) -> None:
    manifest = folder_with(
        tmp_path,
        MANIFEST.replace("signin: {app_id: local}\n", "")
        .replace("    scopes: [probe.read]\n", "")
        .replace("    overrides: {guarded_putList: {scopes: [probe.write]}}\n", ""),
    )
    runner = RunnerProcess(manifest, env={"PETS_URL": api.base_url, "PETS_KEY": SECRET}).start()
    try:
        async with mcp_client(runner.url) as client:
            await client.call_tool("pets_getInventory", {})
            port = api.seen[-1].client_port
            await client.call_tool("text", {})
            probe_port = api.seen[-1].client_port
            assert {port, probe_port} <= api.open_ports()
            # The spec file changes: its new operation is served, no restart.
            spec = (tmp_path / "pets.yaml").read_text()
            renamed = spec.replace("operationId: big", "operationId: huge")
            health = await edit_and_wait(tmp_path, runner.health_url, "pets.yaml", renamed)
            assert health["last_reload"]["result"] == "ok", health
            names = {t.name for t in (await client.list_tools()).tools}
            assert "huge" in names and "big" not in names and "guarded_text" in names
            # Another entry changes in the manifest: pets keeps its client and its pooled connection.
            edited = manifest.read_text().replace("    timeout: 10\n", "    timeout: 20\n")
            health = await edit_and_wait(tmp_path, runner.health_url, "apis.yaml", edited)
            assert health["last_reload"]["result"] == "ok", health
            assert health["last_reload"]["changes"] == "openapi ~probe", health  # the changed entry, by name
            await client.call_tool("pets_getInventory", {})
            assert api.seen[-1].client_port == port
            # ... and the replaced probe entry's client was closed, with its connection.
            for _ in range(200):  # bounded: the close is done before the reload's result, the server sees it soon
                if probe_port not in api.open_ports():
                    break
                await anyio.sleep(0.05)
            assert probe_port not in api.open_ports() and port in api.open_ports()
            # A call in flight when its entry is replaced finishes on the old client, which closes after it.
            api.gate.clear()
            async with anyio.create_task_group() as group:
                answers: list[Any] = []

                async def call_gate() -> None:
                    answers.append(await client.call_tool("gate", {}))

                group.start_soon(call_gate)
                for _ in range(600):  # bounded: until the API has the request
                    if api.seen and api.seen[-1].raw_path == "/v1/gate":
                        break
                    await anyio.sleep(0.05)
                gate_port = api.seen[-1].client_port
                replaced = edited.replace("    timeout: 20\n", "    timeout: 25\n")
                health = await edit_and_wait(tmp_path, runner.health_url, "apis.yaml", replaced)
                assert health["last_reload"]["result"] == "ok", health
                assert gate_port in api.open_ports()  # still open: its call is in flight
                api.gate.set()
            assert not answers[0].is_error and answers[0].structured_content == {"gate": "open"}, text(answers[0])
            for _ in range(200):
                if gate_port not in api.open_ports():
                    break
                await anyio.sleep(0.05)
            assert gate_port not in api.open_ports()  # closed once its last call ended
            edited = replaced
            # The entry goes: its tools go with it.
            without = edited[: edited.index("  - name: probe")]
            health = await edit_and_wait(tmp_path, runner.health_url, "apis.yaml", without)
            assert health["last_reload"]["result"] == "ok", health
            names = {t.name for t in (await client.list_tools()).tools}
            assert "huge" not in names and "pets_getInventory" in names
            # ... and comes back when added again.
            health = await edit_and_wait(tmp_path, runner.health_url, "apis.yaml", edited)
            assert health["last_reload"]["result"] == "ok", health
            assert "huge" in {t.name for t in (await client.list_tools()).tools}
            # A broken spec keeps the last good definition.
            health = await edit_and_wait(tmp_path, runner.health_url, "petstore3.yaml", "openapi: [")
            assert health["last_reload"]["result"] == "failed"
            assert not (await client.call_tool("pets_getInventory", {})).is_error
    finally:
        runner.stop()


async def test_the_docs_example_serves_as_the_page_says(tmp_path: Path) -> None:
    """docs/openapi.md: docs/examples/openapi/pets_api.py and pets.yaml, served and called as the page says."""
    folder = ROOT / "docs" / "examples" / "openapi"
    port = free_port()
    pets = subprocess.Popen([sys.executable, str(folder / "pets_api.py"), str(port)])
    runner: RunnerProcess | None = None
    try:
        wait_for_port(port, proc=pets)  # type: ignore[arg-type]
        runner = RunnerProcess(folder / "pets.yaml", env={"PETS_API": f"http://127.0.0.1:{port}/api/v3"}).start()
        call = ("call", str(runner.manifest), "pets_getPetById")  # the CLI in a thread: it runs its own loop
        rex = await anyio.to_thread.run_sync(lambda: run_main(*call, "--arg", "petId=1"))
        assert rex.returncode == 0, rex
        assert rex.stdout == json.dumps({"id": 1, "name": "Rex", "status": "available"}, indent=2) + "\n"
        listed = await anyio.to_thread.run_sync(lambda: run_main("list", str(runner.manifest)))
        assert "  pets_addPet(id?: integer, name: string, status?: string | null)" in listed.stdout, listed
        missing = await anyio.to_thread.run_sync(lambda: run_main(*call, "--arg", "petId=2"))
        assert missing.returncode == 1, missing
        assert missing.stderr == 'error: pets: HTTP 404 Not Found: {"message": "Pet not found"}\n'
        async with mcp_client(runner.url) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"pets_getPetById", "pets_addPet"}
            assert tools["pets_getPetById"].title == "Look a pet up"
            status = tools["pets_addPet"].input_schema["properties"]["status"]
            assert status["type"] == ["string", "null"]  # OpenAPI 3.0's nullable, as JSON Schema
            added = await client.call_tool("pets_addPet", {"id": 41, "name": "Tom", "status": None})
            assert not added.is_error and added.structured_content == {"id": 41, "name": "Tom", "status": None}
            got = await client.call_tool("pets_getPetById", {"petId": 41})  # the API wants the key pets.yaml sends
            assert got.structured_content == added.structured_content
            assert healthz(runner.health_url)["openapi"]["pets"]["last_call"]["outcome"] == "ok"
            stop_process(pets)  # the API goes away: a tool error naming the entry, and /healthz says so
            gone = await client.call_tool("pets_getPetById", {"petId": 41})
            assert gone.is_error and text(gone) == "pets: cannot reach the API: ConnectError"
        health = healthz(runner.health_url)["openapi"]["pets"]
        assert health["spec"] == "inline" and health["operations"] == 2
        assert health["last_call"]["outcome"] == "connect error"
    finally:
        stop_process(pets)
        if runner is not None:
            runner.stop()


def test_openapi_30_schemas_become_json_schema() -> None:
    """3.0's `nullable` and boolean exclusive bounds, as JSON Schema 2020-12 says them; 3.1's are left alone."""
    from runner.openapi.operations import json_schema

    schema = {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 9, "exclusiveMaximum": False},
            "tag": {"type": "string", "nullable": True, "enum": ["a", "b"], "example": "a"},
        },
    }
    assert json_schema(schema, "3.0.3")["properties"] == {
        "age": {"type": "integer", "exclusiveMinimum": 0, "maximum": 9},
        "tag": {"type": ["string", "null"], "enum": ["a", "b", None], "example": "a"},
    }
    assert json_schema(schema, "3.1.0") is schema

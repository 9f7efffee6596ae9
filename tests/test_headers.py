"""Routing headers (SEP-2243): `headers:` and `x-mcp-header`, served for real and refused at load when unusable.

A 2026-07-28 client mirrors each annotated argument into an `Mcp-Param-<Name>` header; the server
refuses a `tools/call` whose headers and body disagree (HTTP 400, -32020) before the tool runs.
"""

from __future__ import annotations

import base64
import itertools
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
import pytest

from runner.build.server import build
from runner.manifest.config import Binding
from runner.manifest.errors import ManifestError
from runner.manifest.model import load
from runner.manifest.schema import json_schema
from tests.helpers import RunnerProcess, mcp_client, run_main

pytestmark = pytest.mark.anyio

MODULE = '''
import json
from pathlib import Path

CALLS = Path(__file__).with_name("calls.log")


def route(region: str, tier: int = 1, urgent: bool = False, note: str = "") -> str:
    """Route a job."""
    with CALLS.open("a") as log:  # proof that the function ran, readable by the test
        log.write(json.dumps([region, tier, urgent]) + "\\n")
    return f"{region}/{tier}/{urgent}"


def declared(tenant: str, note: str = "") -> str:
    return f"tenant {tenant}"


def optional(region: str | None = None, ratio: float = 1.0) -> str:
    return "x"
'''

MANIFEST = """
name: Headers
tools:
  - function: hdr_tools:route
    headers: {region: Region, tier: Tier, urgent: Urgent}
  - function: hdr_tools:declared
    input_schema:
      type: object
      properties:
        tenant: {type: string, x-mcp-header: Tenant}
        note: {type: string}
      required: [tenant]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder = tmp_path_factory.mktemp("headers")
    (folder / "hdr_tools.py").write_text(textwrap.dedent(MODULE))
    (folder / "headers.yaml").write_text(MANIFEST)
    runner = RunnerProcess(folder / "headers.yaml").start()
    yield runner
    runner.stop()


def calls(runner: RunnerProcess) -> int:
    log = runner.manifest.parent / "calls.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_headers_are_listed_as_x_mcp_header_and_the_sdk_client_calls_through(
    served: RunnerProcess, mode: str
) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        tools = {t.name: t.input_schema for t in (await client.list_tools()).tools}
        properties = tools["route"]["properties"]
        assert properties["region"]["x-mcp-header"] == "Region"
        assert properties["tier"]["x-mcp-header"] == "Tier"
        assert properties["urgent"]["x-mcp-header"] == "Urgent"
        assert "x-mcp-header" not in properties["note"]
        assert tools["declared"]["properties"]["tenant"] == {"type": "string", "x-mcp-header": "Tenant"}
        # The SDK's 2026-07-28 client mirrors the arguments into Mcp-Param-* (a non-ASCII one base64-wrapped).
        result = await client.call_tool("route", {"region": "zürich", "tier": 3, "urgent": True})
        assert not result.is_error and result.content[0].text == "zürich/3/True"  # type: ignore[union-attr]
        result = await client.call_tool("declared", {"tenant": "acme"})
        assert not result.is_error and result.content[0].text == "tenant acme"  # type: ignore[union-attr]


_ids = itertools.count(1)


def post(runner: RunnerProcess, arguments: dict[str, Any], headers: dict[str, str], tool: str = "route") -> Any:
    """A raw 2026-07-28 `tools/call`, with the routing headers a client must send plus `headers`."""
    meta = {
        mcp_types.PROTOCOL_VERSION_META_KEY: "2026-07-28",
        mcp_types.CLIENT_CAPABILITIES_META_KEY: {},
        mcp_types.CLIENT_INFO_META_KEY: {"name": "t", "version": "0"},
    }
    body = {
        "jsonrpc": "2.0",
        "id": next(_ids),
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": meta},
    }
    sent = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
        **headers,
    }
    return httpx2.post(runner.url, json=body, headers=sent, timeout=30)


def b64(text: str) -> str:
    return f"=?base64?{base64.b64encode(text.encode()).decode()}?="


def test_the_server_holds_headers_to_the_body_before_the_tool_runs(served: RunnerProcess) -> None:
    before = calls(served)
    refused = {
        "a different value": ({"region": "eu"}, {"Mcp-Param-Region": "us"}),
        "the header missing": ({"region": "eu"}, {}),
        "a header without its argument": ({"region": "eu"}, {"Mcp-Param-Region": "eu", "Mcp-Param-Tier": "2"}),
        "bad base64 padding": ({"region": "Hello"}, {"Mcp-Param-Region": "=?base64?SGVsbG8?="}),
        "non-alphabet base64": ({"region": "Hello"}, {"Mcp-Param-Region": "=?base64?SGVs!!!bG8=?="}),
        "an integer that differs": ({"region": "eu", "tier": 2}, {"Mcp-Param-Region": "eu", "Mcp-Param-Tier": "3"}),
        "a boolean spelled otherwise": (
            {"region": "eu", "urgent": True},
            {"Mcp-Param-Region": "eu", "Mcp-Param-Urgent": "True"},
        ),
    }
    for case, (arguments, headers) in refused.items():
        answer = post(served, arguments, headers)
        assert answer.status_code == 400, (case, answer.text)
        assert answer.json()["error"]["code"] == -32020, case
    declared = post(served, {"tenant": "acme"}, {"Mcp-Param-Tenant": "other"}, tool="declared")
    assert (declared.status_code, declared.json()["error"]["code"]) == (400, -32020)
    assert calls(served) == before  # none of them reached the function

    accepted = {
        "plain": ({"region": "eu"}, {"Mcp-Param-Region": "eu"}),
        "base64-wrapped": ({"region": "Hello"}, {"Mcp-Param-Region": b64("Hello")}),
        "a literal that only looks like base64": ({"region": "SGVsbG8="}, {"Mcp-Param-Region": "SGVsbG8="}),
        "header names are case-insensitive": (
            {"region": "eu", "tier": 2},
            {"mcp-param-region": "eu", "MCP-PARAM-TIER": "2"},
        ),
        "a boolean": ({"region": "eu", "urgent": False}, {"Mcp-Param-Region": "eu", "Mcp-Param-Urgent": "false"}),
    }
    for case, (arguments, headers) in accepted.items():
        answer = post(served, arguments, headers)
        assert answer.status_code == 200, (case, answer.text)
        assert "error" not in answer.json() and not answer.json()["result"].get("isError"), (case, answer.text)
    assert calls(served) == before + len(accepted)


BROKEN = """
name: Broken
tools:
  - function: hdr_tools:route
    name: twice
    headers: {region: Region, tier: region}
  - function: hdr_tools:declared
    input_schema:
      type: object
      properties:
        tenant: {type: number}
        note: {type: string}
      required: [tenant]
    headers: {tenant: Tenant}
  - function: hdr_tools:declared
    name: ghost
    input_schema:
      type: object
      properties:
        tenant: {type: string}
      required: [tenant]
    headers: {nobody: Nobody}
  - function: hdr_tools:declared
    name: in_schema
    input_schema:
      type: object
      properties:
        tenant: {type: string}
        note: {type: object, x-mcp-header: Note}
      required: [tenant]
"""


def test_check_locates_unusable_declarations(tmp_path: Path) -> None:
    (tmp_path / "hdr_tools.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "m.yaml").write_text(BROKEN)
    result = run_main("check", "m.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "m.yaml:6:37: headers: 'region' is also the header of 'region' (names are case-insensitive)",
        "m.yaml:14:23: headers: 'tenant' must be a string, integer or boolean parameter (its schema's type is "
        "'number')",
        "m.yaml:22:23: headers: 'nobody' is not a parameter of declared() (its parameters: 'tenant')",
        "m.yaml:29:44: input_schema: property 'note': x-mcp-header is only permitted on integer/string/boolean "
        "properties (got 'object')",
        "mcp-runner: 4 problems in m.yaml",
    ]


def test_a_header_name_must_be_an_http_token(tmp_path: Path) -> None:
    (tmp_path / "hdr_token.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "m.yaml").write_text(
        'name: x\ntools:\n  - function: hdr_token:route\n    headers: {region: "Bad Name"}\n'
    )
    result = run_main("check", "m.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "m.yaml:4:23: tools.0.headers.region: 'Bad Name' is not an HTTP header name: letters, digits and "
        "!#$%&'*+-.^_`|~ only, no spaces (it follows Mcp-Param-)",
        "mcp-runner: 1 problem in m.yaml",
    ]


def test_editors_schema_holds_header_names_as_check_does() -> None:
    import jsonschema
    import yaml

    validator = jsonschema.Draft202012Validator(json_schema())
    for name, accepted in (("Region", True), ("Tenant-Id", True), ("Bad Name", False), ("a:b", False)):
        text = f'name: x\ntools:\n  - function: m:f\n    headers: {{region: "{name}"}}\n'
        assert (not list(validator.iter_errors(yaml.safe_load(text)))) is accepted, name


FROM_SIGNATURES = """
name: Derived
tools:
  - function: hdr_derived:route
    headers: {region: Region, ghost: Ghost}
  - function: hdr_derived:optional
    headers: {region: Region}
  - function: hdr_derived:optional
    name: ratio
    headers: {ratio: Ratio}
"""


def test_build_locates_headers_that_do_not_fit_the_function(tmp_path: Path) -> None:
    """Without a declared input_schema, the parameters are known only once the function is imported."""
    (tmp_path / "hdr_derived.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "m.yaml").write_text(FROM_SIGNATURES)
    manifest, source = load(tmp_path / "m.yaml")
    with pytest.raises(ManifestError) as failed:
        build(manifest, source, Binding("127.0.0.1", 0, "/mcp"))
    assert [str(p).removeprefix(str(tmp_path) + "/") for p in failed.value.problems] == [
        "m.yaml:5:38: headers: 'ghost' is not a parameter of route() (its parameters: 'region', 'tier', 'urgent', "
        "'note')",
        "m.yaml:7:23: headers: 'region' must be a string, integer or boolean parameter, not a union: an optional "
        'parameter (str | None = None) has no single type; give it a plain default instead (region: str = "")',
        "m.yaml:10:22: headers: 'ratio' must be a string, integer or boolean parameter (its schema's type is 'number')",
    ]

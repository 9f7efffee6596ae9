"""Icons, `_meta`, serverInfo and declared input/output schemas, served for real, in both protocol generations."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.build.server import build
from runner.manifest.config import Binding
from runner.manifest.errors import ManifestError
from runner.manifest.model import load
from runner.manifest.schema import json_schema
from tests.helpers import RunnerProcess, edit_and_wait, mcp_client, run_main

pytestmark = pytest.mark.anyio

MODULE = '''
import json
from pathlib import Path

CALLS = Path(__file__).with_name("calls.log")


def place_order(items: list, note: str = "") -> dict:
    """Place an order."""
    with CALLS.open("a") as log:  # proof that the function ran, readable by the test
        log.write(json.dumps(items) + "\\n")
    return {"order_id": "o-1", "total_qty": sum(item["qty"] for item in items), "note": note}


def wrong_result() -> dict:
    return {"order_id": 5}


def plain() -> dict:
    return {"a": 1}


def page(name: str) -> str:
    return f"page {name}"


def motd() -> str:
    return "hello"


def review(code: str) -> str:
    return f"review {code}"
'''

ICON = {"src": "https://example.com/order.png", "mime_type": "image/png", "sizes": ["48x48"], "theme": "dark"}
MANIFEST = """
name: Surface
version: "2.0.1"
title: Surface server
description: Everything a client can see.
website_url: https://example.com/surface
icons: [{src: "https://example.com/s.svg", mime_type: image/svg+xml, sizes: [any], theme: light}]
tools:
  - function: surface_tools:place_order
    icons: [{src: "https://example.com/order.png", mime_type: image/png, sizes: ["48x48"], theme: dark}]
    meta: {com.example/owner: shop, com.example/limits: {per_minute: 5}}
    input_schema:
      type: object
      $defs:
        Item:
          type: object
          properties:
            sku: {type: string, pattern: "^[A-Z]{3}-[0-9]+$"}
            qty: {type: integer, minimum: 1}
          required: [sku, qty]
          additionalProperties: false
      properties:
        items: {type: array, items: {$ref: "#/$defs/Item"}, minItems: 1}
        note: {type: string, maxLength: 20}
      required: [items]
      additionalProperties: false
    output_schema:
      type: object
      properties:
        order_id: {type: string}
        total_qty: {type: integer}
        note: {type: string}
      required: [order_id, total_qty]
  - function: surface_tools:wrong_result
    output_schema: {type: object, properties: {order_id: {type: string}}}
  - function: surface_tools:plain
    structured_output: false
resources:
  - uri: info://motd
    function: surface_tools:motd
    icons: [{src: "data:image/png;base64,iVBORw0KGgo="}]
    meta: {com.example/kind: static}
  - uri: pages://{name}
    function: surface_tools:page
    icons: [{src: "https://example.com/page.png"}]
    meta: {com.example/kind: page}
prompts:
  - function: surface_tools:review
    icons: [{src: "https://example.com/review.png", theme: light}]
    meta: {com.example/kind: review}
"""

MODES = ["auto", "legacy"]
ITEM = {"sku": "ABC-1", "qty": 2}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder = tmp_path_factory.mktemp("surface")
    (folder / "surface_tools.py").write_text(textwrap.dedent(MODULE))
    (folder / "surface.yaml").write_text(MANIFEST)
    runner = RunnerProcess(folder / "surface.yaml").start()
    yield runner
    runner.stop()


def calls(runner: RunnerProcess) -> list[Any]:
    log = runner.manifest.parent / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def dump(item: Any) -> dict[str, Any]:
    return item.model_dump(mode="json", by_alias=True, exclude_none=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", MODES)
async def test_server_info_and_every_entry_show_icons_and_meta(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        info = client.server_info
        assert info is not None
        assert (info.name, info.version, info.title) == ("Surface", "2.0.1", "Surface server")
        assert (info.description, info.website_url) == ("Everything a client can see.", "https://example.com/surface")
        assert [dump(i) for i in info.icons or []] == [
            {"src": "https://example.com/s.svg", "mimeType": "image/svg+xml", "sizes": ["any"], "theme": "light"}
        ]
        tools = {t.name: dump(t) for t in (await client.list_tools()).tools}
        order = tools["place_order"]
        assert order["icons"] == [{"src": ICON["src"], "mimeType": "image/png", "sizes": ["48x48"], "theme": "dark"}]
        assert order["_meta"] == {"com.example/owner": "shop", "com.example/limits": {"per_minute": 5}}
        assert "icons" not in tools["plain"] and "_meta" not in tools["plain"]
        (motd,) = (await client.list_resources()).resources
        assert dump(motd)["icons"] == [{"src": "data:image/png;base64,iVBORw0KGgo="}]
        assert dump(motd)["_meta"] == {"com.example/kind": "static"}
        (template,) = (await client.list_resource_templates()).resource_templates
        assert dump(template)["icons"] == [{"src": "https://example.com/page.png"}]
        assert dump(template)["_meta"] == {"com.example/kind": "page"}
        (prompt,) = (await client.list_prompts()).prompts
        assert dump(prompt)["icons"] == [{"src": "https://example.com/review.png", "theme": "light"}]
        assert dump(prompt)["_meta"] == {"com.example/kind": "review"}


@pytest.mark.parametrize("mode", MODES)
async def test_declared_input_schema_is_served_and_enforced_before_the_function_runs(
    served: RunnerProcess, mode: str
) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        declared = tools["place_order"].input_schema
        assert declared["$defs"]["Item"]["required"] == ["sku", "qty"]
        assert declared["properties"]["items"]["items"] == {"$ref": "#/$defs/Item"}
        assert "title" not in declared  # the declared schema, not pydantic's

        before = len(calls(served))
        refused = {
            "qty below the $ref'd minimum": ({"items": [{"sku": "ABC-1", "qty": 0}]}, "at 'items.0.qty'"),
            "sku breaks the $ref'd pattern": ({"items": [{"sku": "abc", "qty": 1}]}, "at 'items.0.sku'"),
            "no items": ({}, "missing required property 'items'"),
            "empty items": ({"items": []}, "at 'items'"),
            "a key the $ref'd object forbids": ({"items": [{**ITEM, "price": 1}]}, "at 'items.0'"),
            "an undeclared argument": ({"items": [ITEM], "note": "x", "admin": True}, "not in the schema"),
            "note too long": ({"items": [ITEM], "note": "x" * 21}, "at 'note'"),
        }
        for case, (arguments, where) in refused.items():
            result = await client.call_tool("place_order", arguments)
            assert result.is_error, case
            text = result.content[0].text  # type: ignore[union-attr]
            assert text.startswith("Error executing tool place_order: arguments do not match input_schema"), case
            assert where in text, (case, text)
        assert len(calls(served)) == before  # none of them reached the function

        ok = await client.call_tool("place_order", {"items": [ITEM, {"sku": "XYZ-22", "qty": 3}], "note": "hi"})
        assert not ok.is_error
        assert ok.structured_content == {"order_id": "o-1", "total_qty": 5, "note": "hi"}
        assert calls(served)[-1] == [ITEM, {"sku": "XYZ-22", "qty": 3}]


@pytest.mark.parametrize("mode", MODES)
async def test_declared_output_schema_gives_structured_content_and_is_enforced(
    served: RunnerProcess, mode: str
) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["place_order"].output_schema is not None
        assert tools["place_order"].output_schema["required"] == ["order_id", "total_qty"]
        assert tools["plain"].output_schema is None  # structured_output: false
        plain = await client.call_tool("plain", {})
        assert plain.structured_content is None and json.loads(plain.content[0].text) == {"a": 1}  # type: ignore[union-attr]

        result = await client.call_tool("place_order", {"items": [ITEM]})
        assert result.structured_content == {"order_id": "o-1", "total_qty": 2, "note": ""}
        assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]

        wrong = await client.call_tool("wrong_result", {})
        assert wrong.is_error
        assert wrong.content[0].text == "Error executing tool wrong_result: its result does not match its output_schema"  # type: ignore[union-attr]


BROKEN = """
name: Broken
tools:
  - function: surface_tools:place_order
    meta: {io.modelcontextprotocol/x: 1, "-bad": 2, when: 2024-01-01, n: .nan}
    input_schema:
      type: object
      properties:
        items: {type: array, items: {$ref: "#/$defs/Missing"}}
      required: [items]
  - function: surface_tools:place_order
    name: typo
    input_schema: {type: object, properties: {items: {type: arr}}}
  - function: surface_tools:plain
    structured_output: false
    output_schema: {type: array}
prompts:
  - function: surface_tools:review
    meta: {com.mcp.tools/x: 1, com.example.mcp/fine: 2}
"""

MISMATCHED = """
name: Mismatched
tools:
  - function: surface_tools:place_order
    input_schema:
      type: object
      properties:
        items: {type: array}
        ghost: {type: string}
      required: [items]
  - function: surface_tools:place_order
    name: no_items
    input_schema:
      type: object
      properties:
        note: {type: string}
  - function: surface_tools:place_order
    name: optional_items
    input_schema:
      type: object
      properties:
        items: {type: array}
"""


def test_check_locates_every_problem_in_the_new_keys(tmp_path: Path) -> None:
    (tmp_path / "surface_tools.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "m.yaml").write_text(BROKEN)
    result = run_main("check", "m.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "m.yaml:5:12: _meta key 'io.modelcontextprotocol/x': the prefix 'io.modelcontextprotocol/' is reserved "
        "for MCP itself; use your own reverse-DNS prefix",
        "m.yaml:5:42: _meta key '-bad': not a valid key: an optional prefix of dot-separated labels and a slash "
        "(com.example/), then a name that starts and ends with a letter or digit",
        "m.yaml:5:59: tools.0.meta.when: a YAML date is not a JSON value (quote it to make it a string)",
        "m.yaml:5:74: tools.0.meta.n: nan is not a JSON number",
        "m.yaml:9:44: input_schema is not usable: $ref '#/$defs/Missing' does not resolve inside the schema "
        "(define it under $defs; nothing is fetched)",
        "m.yaml:13:61: input_schema is not usable: not a valid JSON Schema: 'arr' is not valid under any of the "
        "given schemas",
        "m.yaml:15:24: structured_output: false contradicts output_schema (a declared output schema means "
        "structured results); remove one of them",
        "m.yaml:16:27: output_schema is not usable: the root must be an object schema (type: object)",
        "m.yaml:19:12: _meta key 'com.mcp.tools/x': the prefix 'com.mcp.tools/' is reserved for MCP itself; "
        "use your own reverse-DNS prefix",
        "mcp-runner: 9 problems in m.yaml",
    ]


def test_build_locates_declared_properties_that_do_not_fit_the_function(tmp_path: Path) -> None:
    """The rules in runner/surface/tool.py, through the pipeline `check` runs (in-process: one CLI run is enough)."""
    (tmp_path / "surface_mismatch.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "m.yaml").write_text(MISMATCHED.replace("surface_tools", "surface_mismatch"))
    manifest, source = load(tmp_path / "m.yaml")
    with pytest.raises(ManifestError) as failed:
        build(manifest, source, Binding("127.0.0.1", 0, "/mcp"))
    assert [str(p).removeprefix(str(tmp_path) + "/") for p in failed.value.problems] == [
        "m.yaml:9:16: input_schema declares 'ghost', but place_order() has no such parameter (it takes 'items', "
        "'note')",
        "m.yaml:14:7: input_schema leaves out 'items', which place_order() needs (it has no default): declare it "
        "under properties and list it in required",
        "m.yaml:22:16: input_schema leaves out 'items', which place_order() needs (it has no default): add it to "
        "required",
    ]


def test_schema_covers_the_new_keys_as_check_does(tmp_path: Path) -> None:
    import jsonschema
    import yaml

    validator = jsonschema.Draft202012Validator(json_schema())
    cases = {
        "the served manifest": (MANIFEST, True),
        "an icon with an unknown key": ("name: x\nicons: [{src: 'https://e.com/i.png', size: 1}]\n", False),
        "a bad theme": ("name: x\nicons: [{src: 'https://e.com/i.png', theme: blue}]\n", False),
        "input_schema not an object schema": (
            "name: x\ntools:\n  - function: surface_tools:plain\n    input_schema: {type: array}\n",
            False,
        ),
        "a bad _meta key": ("name: x\nprompts:\n  - function: surface_tools:review\n    meta: {'a b': 1}\n", False),
        "structured_output quoted": (
            "name: x\ntools:\n  - function: surface_tools:plain\n    structured_output: 'false'\n",
            False,
        ),
    }
    for case, (text, accepted) in cases.items():
        (tmp_path / "m.yaml").write_text(text)
        try:
            load(tmp_path / "m.yaml")  # the manifest stage of `check`; none of these cases gets further
        except ManifestError:
            checked = False
        else:
            checked = True
        assert checked is accepted, case
        assert (not list(validator.iter_errors(yaml.safe_load(text)))) is accepted, case


RELOADED = MANIFEST.replace("com.example/owner: shop", "com.example/owner: warehouse").replace(
    "maxLength: 20", "maxLength: 5"
)
BROKEN_EDIT = MANIFEST.replace("maxLength: 20", "maxLength: -1")
BROKEN_AT = next(f"{n}:{line.index('-1') + 1}" for n, line in enumerate(BROKEN_EDIT.split("\n"), 1) if "-1}" in line)


async def test_reload_applies_new_icons_meta_and_schemas_and_keeps_serving_through_a_broken_schema(
    tmp_path: Path,
) -> None:
    (tmp_path / "surface_tools.py").write_text(textwrap.dedent(MODULE))
    manifest = tmp_path / "surface.yaml"
    manifest.write_text(MANIFEST)
    runner = RunnerProcess(manifest, log=tmp_path / "server.log").start()

    async def edit(text: str) -> dict[str, Any]:
        return await edit_and_wait(tmp_path, runner.health_url, manifest.name, text)

    try:
        async with mcp_client(runner.url) as client:
            health = await edit(RELOADED)
            assert health["last_reload"]["result"] == "ok", health
            assert health["last_reload"]["changes"] == "tools ~place_order"
            order = {t.name: t for t in (await client.list_tools()).tools}["place_order"]
            assert dump(order)["_meta"]["com.example/owner"] == "warehouse"
            assert order.input_schema["properties"]["note"]["maxLength"] == 5
            refused = await client.call_tool("place_order", {"items": [ITEM], "note": "too long"})
            assert refused.is_error  # the new schema is the one enforced

            health = await edit(BROKEN_EDIT)
            assert health["status"] == "degraded"
            assert health["last_reload"]["error"].endswith(f"surface.yaml:{BROKEN_AT}: invalid input_schema")
            still = await client.call_tool("place_order", {"items": [ITEM], "note": "short"})
            assert not still.is_error and still.structured_content is not None  # the last good definition serves
            assert (await client.call_tool("place_order", {"items": [ITEM], "note": "123456"})).is_error

            await client.call_tool("wrong_result", {})
        log = runner.logged()
        assert (
            f"surface.yaml:{BROKEN_AT}: input_schema is not usable: not a valid JSON Schema: -1 is less than the "
            "minimum of 0" in log
        )
        assert "tool 'wrong_result' returned a result that does not match its output_schema at 'order_id': " in log
    finally:
        runner.stop()

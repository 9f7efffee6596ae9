"""JSON Schema 2020-12 in declared schemas: every keyword served as written, composition honoured on calls.

Served for real, listed by the SDK's client in both protocol generations. A schema that declares its
arguments through composition (`allOf` + `$ref`, `if`/`then`/`else`) is accepted, the arguments it
declares there reach the function, and calls are validated against all of it.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from runner.build.server import build
from runner.manifest.config import Binding
from runner.manifest.errors import ManifestError
from runner.manifest.model import load
from tests.helpers import RunnerProcess, mcp_client, run_main

pytestmark = pytest.mark.anyio

MODULE = """
def rich(name: str, kind: str = "", extra: dict | None = None) -> dict:
    return {"name": name}


def contact(name: str, method: str = "", phone: str = "", email: str = "") -> str:
    return f"{name}|{method}|{phone}|{email}"
"""

# Every applicator, reference, annotation and conditional keyword of 2020-12, in one schema.
RICH = """
$schema: https://json-schema.org/draft/2020-12/schema
$id: https://example.com/schemas/rich
$comment: every keyword is served as written
title: Rich
type: object
$defs:
  name: {$anchor: nameDef, type: string, minLength: 1, $comment: by anchor}
  node: {$dynamicAnchor: node, type: object}
properties:
  name: {$ref: "#nameDef", deprecated: true, examples: [ann]}
  kind: {oneOf: [{const: a}, {const: b}], not: {const: c}, default: a}
  extra:
    type: object
    unevaluatedProperties: false
    dependentSchemas: {a: {required: [b]}}
    dependentRequired: {c: [d]}
    patternProperties: {"^x-": {type: string}}
    propertyNames: {maxLength: 8}
    minProperties: 0
    contentMediaType: application/json
required: [name]
allOf: [{anyOf: [{required: [name]}, {required: [kind]}]}]
if: {required: [kind]}
then: {properties: {kind: {type: string}}}
else: {}
unevaluatedProperties: false
"""

COMPOSED = """
type: object
$defs:
  named: {properties: {name: {type: string, minLength: 1}}, required: [name]}
allOf: [{$ref: "#/$defs/named"}]
properties:
  method: {enum: [phone, email]}
if: {properties: {method: {const: phone}}, required: [method]}
then: {properties: {phone: {type: string, pattern: "^[0-9]+$"}}, required: [phone]}
else: {properties: {email: {type: string}}}
unevaluatedProperties: false
"""


def indented(text: str, by: int) -> str:
    return textwrap.indent(text.strip(), " " * by)


MANIFEST = f"""
name: schemas
tools:
  - function: s2020_tools:rich
    input_schema:
{indented(RICH, 6)}
    output_schema:
{indented(RICH, 6)}
  - function: s2020_tools:contact
    input_schema:
{indented(COMPOSED, 6)}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder = tmp_path_factory.mktemp("schema2020")
    (folder / "s2020_tools.py").write_text(textwrap.dedent(MODULE))
    (folder / "schemas.yaml").write_text(MANIFEST)
    runner = RunnerProcess(folder / "schemas.yaml").start()
    yield runner
    runner.stop()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_every_keyword_is_listed_as_written(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        written = yaml.safe_load(RICH)
        assert tools["rich"].input_schema == written
        assert tools["rich"].output_schema == written
        assert tools["contact"].input_schema == yaml.safe_load(COMPOSED)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_arguments_declared_through_composition_reach_the_function_and_are_held_to_it(
    served: RunnerProcess, mode: str
) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        ok = await client.call_tool("contact", {"name": "ann", "method": "phone", "phone": "123"})
        assert not ok.is_error and ok.content[0].text == "ann|phone|123|"  # type: ignore[union-attr]
        ok = await client.call_tool("contact", {"name": "bob", "email": "b@example.com"})
        assert not ok.is_error and ok.content[0].text == "bob|||b@example.com"  # type: ignore[union-attr]
        refused = {
            "name required by the allOf $ref": {"email": "x"},
            "name too short, by the $ref'd definition": {"name": ""},
            "then: phone required for method phone": {"name": "ann", "method": "phone"},
            "then: phone's pattern": {"name": "ann", "method": "phone", "phone": "12a"},
            "unevaluatedProperties: a property no branch declares": {"name": "ann", "fax": "1"},
            "unevaluatedProperties: phone when the else branch applies": {"name": "ann", "phone": "1"},
        }
        for case, arguments in refused.items():
            result = await client.call_tool("contact", arguments)
            assert result.is_error, case
            text = result.content[0].text  # type: ignore[union-attr]
            assert text.startswith("Error executing tool contact: arguments do not match input_schema"), (case, text)
        ok = await client.call_tool("rich", {"name": "ann", "kind": "a", "extra": {"x-a": "1"}})
        assert not ok.is_error and json.loads(ok.content[0].text) == {"name": "ann"}  # type: ignore[union-attr]
        for arguments in ({"name": ""}, {"name": "ann", "kind": "c"}, {"name": "ann", "extra": {"x-a": 1}}):
            assert (await client.call_tool("rich", arguments)).is_error, arguments


MISFIT = """
name: misfit
tools:
  - function: s2020_misfit:contact
    input_schema:
      type: object
      $defs:
        named: {properties: {name: {type: string}, nickname: {type: string}}, required: [name]}
      allOf: [{$ref: "#/$defs/named"}]
  - function: s2020_misfit:contact
    name: maybe_named
    input_schema:
      type: object
      anyOf:
        - {properties: {name: {type: string}}, required: [name]}
        - {properties: {email: {type: string}}, required: [email]}
"""


def test_build_locates_composed_properties_that_do_not_fit_the_function(tmp_path: Path) -> None:
    (tmp_path / "s2020_misfit.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "m.yaml").write_text(MISFIT)
    manifest, source = load(tmp_path / "m.yaml")
    with pytest.raises(ManifestError) as failed:
        build(manifest, source, Binding("127.0.0.1", 0, "/mcp"))
    assert [str(p).removeprefix(str(tmp_path) + "/") for p in failed.value.problems] == [
        "m.yaml:8:62: input_schema declares 'nickname', but contact() has no such parameter (it takes 'name', "
        "'method', 'phone', 'email')",
        "m.yaml:15:31: input_schema leaves out 'name', which contact() needs (it has no default): add it to required",
    ]


def test_a_property_yaml_reads_as_a_boolean_is_pointed_at_with_the_fix(tmp_path: Path) -> None:
    """`on:` is the boolean true in YAML 1.1: a schema property of that name must be quoted, and `check` says so."""
    (tmp_path / "s2020_yaml.py").write_text("def switch(on: str = '') -> str:\n    return on\n")
    schema = "    input_schema:\n      type: object\n      properties:\n        {key}: {{type: string}}\n"
    manifest = "name: x\ntools:\n  - function: s2020_yaml:switch\n" + schema
    (tmp_path / "m.yaml").write_text(manifest.format(key="on"))
    result = run_main("check", "m.yaml", cwd=tmp_path)
    assert result.stderr.splitlines() == [
        'm.yaml:7:9: keys must be strings, got True: quote it, "on", for the text',
        "mcp-runner: 1 problem in m.yaml",
    ]
    (tmp_path / "m.yaml").write_text(manifest.format(key='"on"'))
    assert run_main("check", "m.yaml", cwd=tmp_path).returncode == 0
    manifest_model, _ = load(tmp_path / "m.yaml")
    assert manifest_model.tools[0].input_schema == {"type": "object", "properties": {"on": {"type": "string"}}}

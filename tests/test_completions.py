"""`completions:` on prompts and resource templates, served for real and asked by the SDK client in both modes."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, PromptReference, ResourceTemplateReference

from tests.helpers import RunnerProcess, edit_and_wait, mcp_client, run_cli, run_main

pytestmark = pytest.mark.anyio

MODULE = '''
import anyio

CITIES = {"fr": ["Paris", "Lyon", "Marseille"], "de": ["Berlin", "Bonn"]}


def city(value, context):
    """Sync: the cities of the country already given."""
    return [c for c in CITIES.get(context.get("country", ""), []) if c.lower().startswith(value.lower())]


async def many(value, context):
    await anyio.sleep(0)
    return [f"{value}{i}" for i in range(250)]


def broken(value, context):
    raise RuntimeError("secret-in-exception")


def forecast(country: str, city: str) -> str:
    return f"{city}, {country}"


def trip(country: str, city: str, note: str = "") -> str:
    return f"Plan a trip to {city}, {country}. {note}"
'''

MANIFEST = """
name: Completions
resources:
  - uri: weather://{country}/{city}
    function: comp:forecast
    completions:
      country: [fr, de, it]
      city: comp:city
prompts:
  - function: comp:trip
    completions:
      country: [France, Germany, finland]
      city: comp:many
      note: comp:broken
"""

MODES = ["auto", "legacy"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder: Path = tmp_path_factory.mktemp("completions")
    (folder / "comp.py").write_text(textwrap.dedent(MODULE))
    (folder / "comp.yaml").write_text(MANIFEST)
    runner = RunnerProcess(folder / "comp.yaml").start()
    yield runner
    runner.stop()


TRIP = PromptReference(name="trip")
WEATHER = ResourceTemplateReference(uri="weather://{country}/{city}")


@pytest.mark.parametrize("mode", MODES)
async def test_static_list_filtered_by_prefix(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        assert client.server_capabilities.completions is not None
        got = (await client.complete(TRIP, {"name": "country", "value": "f"})).completion
        assert (got.values, got.total, got.has_more) == (["France", "finland"], 2, False)
        everything = (await client.complete(WEATHER, {"name": "country", "value": ""})).completion
        assert everything.values == ["fr", "de", "it"]


@pytest.mark.parametrize("mode", MODES)
async def test_function_gets_the_other_arguments(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        french = await client.complete(WEATHER, {"name": "city", "value": "l"}, {"country": "fr"})
        assert french.completion.values == ["Lyon"]
        german = await client.complete(WEATHER, {"name": "city", "value": "B"}, {"country": "de"})
        assert german.completion.values == ["Berlin", "Bonn"]
        none_given = await client.complete(WEATHER, {"name": "city", "value": "B"})
        assert none_given.completion.values == []


@pytest.mark.parametrize("mode", MODES)
async def test_async_function_bounded_to_100(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        got = (await client.complete(TRIP, {"name": "city", "value": "x"})).completion
        assert got.values == [f"x{i}" for i in range(100)]
        assert (got.total, got.has_more) == (250, True)


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_refs_and_failures(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        with pytest.raises(MCPError) as unknown:
            await client.complete(PromptReference(name="nope"), {"name": "x", "value": ""})
        assert unknown.value.code == INVALID_PARAMS and "nope" in unknown.value.error.message
        with pytest.raises(MCPError) as template:
            await client.complete(ResourceTemplateReference(uri="weather://{x}"), {"name": "x", "value": ""})
        assert template.value.code == INVALID_PARAMS
        # An argument without completions: nothing to offer, not an error.
        empty = (await client.complete(TRIP, {"name": "unlisted", "value": "a"})).completion
        assert (empty.values, empty.total, empty.has_more) == ([], 0, False)
        with pytest.raises(MCPError) as failed:
            await client.complete(TRIP, {"name": "note", "value": ""})
        assert failed.value.code == INTERNAL_ERROR
        assert "secret" not in failed.value.error.message and "note" in failed.value.error.message


def test_unknown_argument_is_located(tmp_path: Path) -> None:
    (tmp_path / "comp.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "template.yaml").write_text(MANIFEST.replace("      city: comp:city", "      cty: comp:city"))
    checked = run_main("check", "template.yaml", cwd=tmp_path)
    assert checked.returncode == 2
    expected = "template.yaml:8:7: completions: 'cty' is not a parameter of 'weather://{country}/{city}'"
    assert expected + " (did you mean 'city'?)" in checked.stderr
    (tmp_path / "prompt.yaml").write_text(MANIFEST.replace("      note:", "      notes:"))
    checked = run_main("check", "prompt.yaml", cwd=tmp_path)
    assert checked.returncode == 2
    assert "prompt.yaml:14:7: completions: 'notes' is not an argument (did you mean 'note'?)" in checked.stderr
    served = run_cli("serve", "prompt.yaml", "--port", "0", cwd=tmp_path)
    assert served.returncode == 2
    assert "prompt.yaml:14:7: completions: 'notes' is not an argument" in served.stderr


async def test_reload_swaps_the_function(tmp_path: Path) -> None:
    (tmp_path / "comp.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "comp.yaml").write_text(MANIFEST)
    runner = RunnerProcess(tmp_path / "comp.yaml").start()

    async def edit(name: str, text: str) -> dict[str, Any]:
        return await edit_and_wait(tmp_path, runner.health_url, name, text)

    try:
        async with mcp_client(runner.url) as client:
            assert (await client.complete(TRIP, {"name": "city", "value": "x"})).completion.total == 250
            await edit("comp.py", textwrap.dedent(MODULE).replace("range(250)", "range(3)"))
            assert (await client.complete(TRIP, {"name": "city", "value": "x"})).completion.values == ["x0", "x1", "x2"]
            # A broken key fails the reload, located; the last good definition keeps answering.
            failed = await edit("comp.yaml", MANIFEST.replace("      note:", "      notes:"))
            assert failed["status"] == "degraded"
            assert (await client.complete(TRIP, {"name": "city", "value": "y"})).completion.total == 3
            # A new static list applies in the same session.
            await edit("comp.yaml", MANIFEST.replace("[France, Germany, finland]", "[Spain]"))
            assert (await client.complete(TRIP, {"name": "country", "value": ""})).completion.values == ["Spain"]
    finally:
        err = runner.stop()
    assert "comp.yaml:14:7: completions: 'notes' is not an argument" in err

"""`server.page_size`: cursor pages for the four list methods, in both protocol generations, across a reload."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from tests.helpers import RunnerProcess, edit_and_wait, mcp_client, run_main

pytestmark = pytest.mark.anyio

NAMES = ["delta", "alpha", "echo", "charlie", "bravo"]  # manifest order, deliberately not sorted
MODULE = "\n".join(
    f"def {n}() -> str:\n    return '{n}'\n\n\ndef tpl_{n}(x: str) -> str:\n    return '{n}' + x\n"
    for n in [*NAMES, "foxtrot"]
)


def manifest(names: list[str], page_size: int = 2) -> str:
    lines = ["name: Paged", "server:", f"  page_size: {page_size}", "tools:"]
    lines += [f"  - function: paged:{n}" for n in names]
    lines += ["resources:"]
    lines += [f"  - {{uri: 'static://{n}', function: paged:{n}}}" for n in names]
    lines += [f"  - {{uri: 'tpl://{n}/{{x}}', function: paged:tpl_{n}}}" for n in names[:3]]
    lines += ["prompts:"] + [f"  - function: paged:{n}" for n in names]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder = tmp_path_factory.mktemp("paged")
    (folder / "paged.py").write_text(MODULE)
    (folder / "paged.yaml").write_text(manifest(NAMES))
    runner = RunnerProcess(folder / "paged.yaml").start()
    yield runner
    runner.stop()


Lister = Callable[..., Awaitable[Any]]


def listers(client: Client) -> dict[str, tuple[Lister, Callable[[Any], list[str]]]]:
    return {
        "tools": (client.list_tools, lambda r: [t.name for t in r.tools]),
        "prompts": (client.list_prompts, lambda r: [p.name for p in r.prompts]),
        "resources": (client.list_resources, lambda r: [str(x.uri) for x in r.resources]),
        "templates": (client.list_resource_templates, lambda r: [t.uri_template for t in r.resource_templates]),
    }


async def all_pages(lister: Lister, names: Callable[[Any], list[str]]) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        result = await lister(cursor=cursor)
        pages.append(names(result))
        if result.next_cursor is None:
            return pages
        cursor = result.next_cursor


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_every_list_comes_in_pages_that_add_up_to_the_whole_list(paged: RunnerProcess, mode: str) -> None:
    expected = {
        "tools": NAMES,
        "prompts": NAMES,
        "resources": [f"static://{n}" for n in NAMES],
        "templates": [f"tpl://{n}/{{x}}" for n in NAMES[:3]],
    }
    async with mcp_client(paged.url, mode=mode) as client:
        for kind, (lister, names) in listers(client).items():
            pages = await all_pages(lister, names)
            assert [len(p) for p in pages] == ([2, 2, 1] if len(expected[kind]) == 5 else [2, 1]), kind
            assert [n for p in pages for n in p] == expected[kind], kind


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_cursor_that_was_not_issued_as_is_is_invalid_params(paged: RunnerProcess, mode: str) -> None:
    async with mcp_client(paged.url, mode=mode) as client:
        tools_cursor = (await client.list_tools()).next_cursor
        assert tools_cursor is not None
        body, _, tag = tools_cursor.partition(".")
        forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + tag
        bad = {
            "garbage": ("tools", "not-a-cursor"),
            "forged position": ("tools", forged),
            "another list's cursor": ("prompts", tools_cursor),
            "oversized": ("resources", "A" * 5000 + "." + tag),
            "non-ascii": ("templates", "é." + tag),
        }
        for case, (kind, cursor) in bad.items():
            lister = listers(client)[kind][0]
            with pytest.raises(MCPError) as refused:
                await lister(cursor=cursor)
            assert refused.value.error.code == INVALID_PARAMS, case
            assert "invalid cursor" in refused.value.error.message, case
        # The server is fine afterwards, and an honest cursor still works.
        assert [t.name for t in (await client.list_tools(cursor=tools_cursor)).tools] == NAMES[2:4]


async def test_a_cursor_survives_a_reload_and_continues_after_the_last_item_seen(paged: RunnerProcess) -> None:
    """Runs last in the module: it edits the served manifest (and puts it back)."""
    file = paged.manifest

    async def edit(text: str) -> None:
        health = await edit_and_wait(file.parent, paged.health_url, file.name, text)
        assert health["last_reload"]["result"] == "ok", health

    async with mcp_client(paged.url) as client:
        first = await client.list_tools()
        assert [t.name for t in first.tools] == ["delta", "alpha"]
        # Move "alpha" (the last item seen) to the end and put a new tool before it.
        try:
            await edit(manifest(["foxtrot", "delta", "echo", "charlie", "bravo", "alpha"]))
            after = await client.list_tools(cursor=first.next_cursor)
            assert after.next_cursor is None and after.tools == []  # after "alpha", wherever it is now: the end
            # "alpha" removed: the next page starts at the position it had.
            await edit(manifest(["delta", "echo", "charlie", "bravo"]))
            assert [t.name for t in (await client.list_tools(cursor=first.next_cursor)).tools] == ["charlie", "bravo"]
        finally:
            await edit(manifest(NAMES))


def test_page_size_is_checked(tmp_path: Path) -> None:
    from runner.manifest.errors import ManifestError
    from runner.manifest.model import load

    for value, message in [("0", "greater than or equal to 1"), ("'2'", "not the string '2'")]:
        (tmp_path / "m.yaml").write_text(f"name: x\nserver:\n  page_size: {value}\n")
        with pytest.raises(ManifestError) as failed:
            load(tmp_path / "m.yaml")
        assert f"{tmp_path}/m.yaml:3:14: server.page_size: " in str(failed.value) and message in str(failed.value)


def test_the_cli_lists_every_page_of_a_paged_server(paged: RunnerProcess) -> None:
    """`mcp-runner list` follows nextCursor to the end of each list, through the paging an upstream's connection
    uses too (runner/paging.py; tests/test_upstream_attacks.py pages a hostile upstream, with its bounds)."""
    listed = run_main("list", paged.url, "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert [t["name"] for t in found["tools"]] == NAMES
    assert [p["name"] for p in found["prompts"]] == NAMES
    assert [r["uri"] for r in found["resources"]] == [f"static://{n}" for n in NAMES]
    assert [t["uriTemplate"] for t in found["resourceTemplates"]] == [f"tpl://{n}/{{x}}" for n in NAMES[:3]]

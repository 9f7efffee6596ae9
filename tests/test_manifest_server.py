"""A manifest with every kind of entry, served for real and driven by the SDK client in both protocol modes."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RunnerProcess, mcp_client

pytestmark = pytest.mark.anyio

MODULE = '''
import anyio
from mcp.server.mcpserver import Context


def multiply(x: float, y: float) -> float:
    """Multiply two numbers."""
    return x * y


async def slow_echo(text: str, delay: float = 0.01) -> str:
    await anyio.sleep(delay)
    return text.upper()


async def with_context(steps: int, ctx: Context) -> str:
    """Reports progress through the SDK context."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps)
    return f"{type(ctx).__name__}:{steps}"


def boom() -> str:
    raise RuntimeError("kaboom")


def version() -> str:
    return "1.2.3"


def user_file(user: str, name: str) -> str:
    return f"{user}/{name}"


def review(code: str, language: str = "python") -> str:
    return f"Review this {language} code: {code}"
'''

MANIFEST = """
name: Rich server
instructions: Test instructions.
tools:
  - function: rich_tools:multiply
  - function: rich_tools:slow_echo
    name: shout
    title: Shout it
    description: Upper-cases text after a delay.
    annotations: {readOnlyHint: true, openWorldHint: false}
  - function: rich_tools:with_context
  - function: rich_tools:boom
resources:
  - uri: info://version
    function: rich_tools:version
    name: version
    description: The version.
  - uri: files://{user}/{name}
    function: rich_tools:user_file
    mime_type: text/markdown
prompts:
  - function: rich_tools:review
    name: code_review
    title: Code review
"""


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder: Path = tmp_path_factory.mktemp("rich")
    (folder / "rich_tools.py").write_text(textwrap.dedent(MODULE))
    (folder / "rich.yaml").write_text(MANIFEST)
    runner = RunnerProcess(folder / "rich.yaml").start()
    yield runner
    runner.stop()


MODES = ["auto", "legacy"]


@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_reflects_manifest(rich: RunnerProcess, mode: str) -> None:
    async with mcp_client(rich.url, mode=mode) as client:
        assert client.instructions == "Test instructions."
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert sorted(tools) == ["boom", "multiply", "shout", "with_context"]
        assert tools["multiply"].description == "Multiply two numbers."
        shout = tools["shout"]
        assert shout.title == "Shout it"
        assert shout.description == "Upper-cases text after a delay."
        assert shout.annotations is not None and shout.annotations.read_only_hint is True
        assert shout.annotations.open_world_hint is False
        assert set(shout.input_schema["properties"]) == {"text", "delay"}
        assert shout.input_schema["required"] == ["text"]
        # The Context parameter is injected, never part of the schema.
        assert set(tools["with_context"].input_schema["properties"]) == {"steps"}


@pytest.mark.parametrize("mode", MODES)
async def test_tools_call_sync_async_and_context(rich: RunnerProcess, mode: str) -> None:
    async with mcp_client(rich.url, mode=mode) as client:
        assert (await client.call_tool("multiply", {"x": 6, "y": 7})).structured_content == {"result": 42.0}
        shouted = await client.call_tool("shout", {"text": "hi"})
        assert shouted.content[0].text == "HI"  # type: ignore[union-attr]
        progress: list[float] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(done)

        result = await client.call_tool("with_context", {"steps": 3}, progress_callback=on_progress)
        assert result.content[0].text == "Context:3"  # type: ignore[union-attr]
        assert progress == [1, 2, 3]


@pytest.mark.parametrize("mode", MODES)
async def test_tool_errors_and_bad_arguments_are_tool_errors(rich: RunnerProcess, mode: str) -> None:
    async with mcp_client(rich.url, mode=mode) as client:
        failed = await client.call_tool("boom", {})
        # Unexpected exceptions are reported without their message (it may hold secrets): tests/test_tool_errors.py.
        assert failed.is_error and failed.content[0].text.startswith("Internal error in tool 'boom' (ref ")  # type: ignore[union-attr]
        assert "kaboom" not in failed.content[0].text  # type: ignore[union-attr]
        invalid = await client.call_tool("multiply", {"x": "not a number", "y": 1})
        assert invalid.is_error


@pytest.mark.parametrize("mode", MODES)
async def test_static_and_template_resources(rich: RunnerProcess, mode: str) -> None:
    async with mcp_client(rich.url, mode=mode) as client:
        statics = (await client.list_resources()).resources
        assert [(str(r.uri), r.name, r.description) for r in statics] == [("info://version", "version", "The version.")]
        templates = (await client.list_resource_templates()).resource_templates
        assert [(t.uri_template, t.mime_type) for t in templates] == [("files://{user}/{name}", "text/markdown")]
        static = await client.read_resource("info://version")
        assert static.contents[0].text == "1.2.3"  # type: ignore[union-attr]
        templated = await client.read_resource("files://ann/notes.md")
        assert templated.contents[0].text == "ann/notes.md"  # type: ignore[union-attr]
        assert templated.contents[0].mime_type == "text/markdown"


@pytest.mark.parametrize("mode", MODES)
async def test_prompts(rich: RunnerProcess, mode: str) -> None:
    async with mcp_client(rich.url, mode=mode) as client:
        prompts = (await client.list_prompts()).prompts
        assert [(p.name, p.title) for p in prompts] == [("code_review", "Code review")]
        assert [(a.name, a.required) for a in prompts[0].arguments or []] == [("code", True), ("language", False)]
        got = await client.get_prompt("code_review", {"code": "x = 1", "language": "go"})
        assert got.messages[0].content.text == "Review this go code: x = 1"  # type: ignore[union-attr]


def test_no_auth_server_warns_at_start(rich: RunnerProcess) -> None:
    # The banner is printed before serving starts; read it from a second, short-lived process.
    second = RunnerProcess(rich.manifest).start()
    err = second.stop()
    assert "auth:      NONE" in err

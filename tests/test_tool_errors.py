"""What a client and the log see when a tool, resource or prompt raises (runner/build/raised.py).

Real server processes, real MCP clients over HTTP, in both protocol generations: a ValueError's or
ToolError's message is the answer; any other exception is a safe message with a reference id that is
in exactly one log record, which shows the user's frames (and the SDK's only at DEBUG).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from tests.helpers import RunnerProcess, edit_and_wait, mcp_client, run_main

pytestmark = pytest.mark.anyio

NOTES = '''
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

SECRET = "sk-live-4f1b9c"  # what a crash's message may hold: never for the client
NOTES = {"1": "first note"}


class ArchivedNote(ValueError):
    """A subclass of ValueError: its message reaches the client too."""


def lookup(note_id: str) -> str:
    return NOTES[note_id]


def get_note(note_id: str) -> str:
    if not note_id.isdigit():
        raise ValueError("note_id must be digits")
    return lookup(note_id)


def archived(note_id: str) -> str:
    raise ArchivedNote(f"note {note_id} is archived")


def private(note_id: str) -> str:
    raise ToolError(f"note {note_id} is private")


def leaky() -> str:
    raise RuntimeError(f"database refused key {SECRET}")


async def first_line(uri: str, ctx: Context) -> str:
    try:
        contents = list(await ctx.read_resource(uri))
    except ResourceError as exc:  # a resource read inside a tool fails as the SDK has it: an exception
        return f"caught {type(exc).__name__}: {exc}"
    return str(contents[0].content).splitlines()[0]


async def relay(uri: str, ctx: Context) -> str:
    return str(list(await ctx.read_resource(uri))[0].content)


def note_resource(note_id: str) -> str:
    return get_note(note_id)


def broken() -> str:
    raise RuntimeError(f"config unreadable, key {SECRET}")


def summary(note_id: str) -> str:
    return f"Summarize: {get_note(note_id)}"
'''

MANIFEST = """
name: errors
tools:
  - function: notes:get_note
  - function: notes:archived
  - function: notes:private
  - function: notes:leaky
  - function: notes:first_line
  - function: notes:relay
resources:
  - uri: notes://{note_id}
    function: notes:note_resource
  - uri: info://broken
    function: notes:broken
prompts:
  - function: notes:summary
"""

MODES = ["auto", "legacy"]
REF = re.compile(r"\(ref ([0-9a-f]{8})\)")
SDK_FRAME = re.compile(r"site-packages|[/\\]mcp[/\\]")


def write_app(folder: Path, server: str = "") -> Path:
    (folder / "notes.py").write_text(textwrap.dedent(NOTES))
    manifest = folder / "errors.yaml"
    manifest.write_text(MANIFEST + server)
    return manifest


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    """The default policy (`safe`), JSON log lines: one record is one line."""
    folder = tmp_path_factory.mktemp("errors")
    runner = RunnerProcess(write_app(folder), env={"MCP_RUNNER_LOG_FORMAT": "json"}).start()
    yield runner
    runner.stop()


def records(runner: RunnerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in runner.logged().splitlines() if line.startswith("{")]


def the_record(runner: RunnerProcess, ref: str) -> dict[str, Any]:
    """The one log record that names `ref` (the response is sent after it was written)."""
    found = [r for r in records(runner) if ref in json.dumps(r)]
    assert len(found) == 1, found
    return found[0]


def audit(runner: RunnerProcess, kind: str, name: str) -> list[str]:
    return [
        r["outcome"] for r in records(runner) if r.get("event") == "audit" and (r["kind"], r["name"]) == (kind, name)
    ]


def text_of(result: Any) -> str:
    assert result.is_error, result
    return result.content[0].text  # type: ignore[no-any-return]


def assert_users_frames_only(trace: str, *functions: str) -> None:
    """A traceback of the user's frames, in order, and none of the SDK's."""
    assert trace.startswith("Traceback (your code):"), trace
    assert not SDK_FRAME.search(trace), trace
    shown = re.findall(r'File "notes\.py", line \d+, in (\w+)', trace)
    assert shown == list(functions), trace


@pytest.mark.parametrize("mode", MODES)
async def test_a_value_error_message_is_the_tool_error_text(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        assert text_of(await client.call_tool("get_note", {"note_id": "abc"})) == "note_id must be digits"
        # A subclass of ValueError counts as one.
        assert text_of(await client.call_tool("archived", {"note_id": "7"})) == "note 7 is archived"
        assert (await client.call_tool("get_note", {"note_id": "1"})).content[0].text == "first note"  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_error_message_is_the_tool_error_text(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        assert text_of(await client.call_tool("private", {"note_id": "7"})) == "note 7 is private"


@pytest.mark.parametrize("mode", MODES)
async def test_a_crash_is_a_safe_message_whose_ref_is_in_one_log_record(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        text = text_of(await client.call_tool("get_note", {"note_id": "42"}))
        leaked = text_of(await client.call_tool("leaky", {}))
    match = re.fullmatch(r"Internal error in tool 'get_note' \(ref ([0-9a-f]{8})\)", text)
    assert match, text
    record = the_record(served, match[1])
    assert record["level"] == "ERROR" and record["ref"] == match[1] and record["error"] == "KeyError"
    assert record["message"] == f"tool 'get_note' raised KeyError (ref {match[1]})"
    assert_users_frames_only(record["exception"], "get_note", "lookup")
    assert record["exception"].endswith("KeyError: '42'")
    assert re.fullmatch(r"Internal error in tool 'leaky' \(ref [0-9a-f]{8}\)", leaked), leaked
    assert "sk-live" not in leaked
    assert "tool_error" in audit(served, "tool", "get_note")  # still an error for metrics and the audit line


@pytest.mark.parametrize("mode", MODES)
async def test_a_resource_that_raises(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        with pytest.raises(MCPError) as told:
            await client.read_resource("notes://abc")
        assert (told.value.error.code, told.value.error.message) == (INTERNAL_ERROR, "note_id must be digits")
        with pytest.raises(MCPError) as crashed:
            await client.read_resource("notes://42")
        with pytest.raises(MCPError) as static:
            await client.read_resource("info://broken")
    assert crashed.value.error.code == INTERNAL_ERROR
    match = re.fullmatch(r"Internal error in resource 'notes://42' \(ref ([0-9a-f]{8})\)", crashed.value.error.message)
    assert match, crashed.value.error.message
    assert_users_frames_only(the_record(served, match[1])["exception"], "note_resource", "get_note", "lookup")
    match = re.fullmatch(
        r"Internal error in resource 'info://broken' \(ref ([0-9a-f]{8})\)", static.value.error.message
    )
    assert match and "sk-live" not in static.value.error.message, static.value.error.message
    assert_users_frames_only(the_record(served, match[1])["exception"], "broken")
    assert "error" in audit(served, "resource", "info://broken")


@pytest.mark.parametrize("mode", MODES)
async def test_a_prompt_that_raises(served: RunnerProcess, mode: str) -> None:
    async with mcp_client(served.url, mode=mode) as client:
        with pytest.raises(MCPError) as told:
            await client.get_prompt("summary", {"note_id": "abc"})
        assert (told.value.error.code, told.value.error.message) == (INTERNAL_ERROR, "note_id must be digits")
        with pytest.raises(MCPError) as crashed:
            await client.get_prompt("summary", {"note_id": "42"})
    assert crashed.value.error.code == INTERNAL_ERROR
    match = re.fullmatch(r"Internal error in prompt 'summary' \(ref ([0-9a-f]{8})\)", crashed.value.error.message)
    assert match, crashed.value.error.message
    assert_users_frames_only(the_record(served, match[1])["exception"], "summary", "get_note", "lookup")
    assert "error" in audit(served, "prompt", "summary")


@pytest.mark.parametrize("mode", MODES)
async def test_a_resource_read_inside_a_tool_still_raises_there(served: RunnerProcess, mode: str) -> None:
    """Only the client's own request is answered with the policy's text: code that reads in-process catches."""
    async with mcp_client(served.url, mode=mode) as client:
        result = await client.call_tool("first_line", {"uri": "info://broken"})
    assert not result.is_error
    assert result.content[0].text == "caught UnexpectedResourceError: Error reading resource info://broken"  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_a_crash_inside_a_nested_read_shows_the_way_there(served: RunnerProcess, mode: str) -> None:
    """A tool that lets a resource's crash through has crashed; the log shows its frame, then the resource's."""
    async with mcp_client(served.url, mode=mode) as client:
        text = text_of(await client.call_tool("relay", {"uri": "info://broken"}))
    match = re.fullmatch(r"Internal error in tool 'relay' \(ref ([0-9a-f]{8})\)", text)
    assert match, text
    record = the_record(served, match[1])
    assert record["error"] == "RuntimeError"
    assert_users_frames_only(record["exception"], "relay", "broken")


async def test_error_details_full_then_none_on_reload_and_the_whole_traceback_at_debug(tmp_path: Path) -> None:
    """`full` tells the exception; a reload to `none` tells nothing, logs the same record; text log lines."""
    runner = RunnerProcess(write_app(tmp_path, "server:\n  error_details: full\n"), extra=("--log-level", "debug"))
    runner.start()
    try:
        async with mcp_client(runner.url) as client:
            full = text_of(await client.call_tool("get_note", {"note_id": "42"}))
            assert re.fullmatch(r"Internal error in tool 'get_note' \(ref [0-9a-f]{8}\): KeyError: '42'", full), full
            ref = REF.search(full)[1]  # type: ignore[index]
            logged = runner.logged()
            assert logged.count(ref) == 1
            record = logged[logged.index(ref) :]
            users, _, whole = record.partition("The whole traceback:")
            assert_users_frames_only(users[users.index("Traceback") :].strip(), "get_note", "lookup")
            assert SDK_FRAME.search(whole) and 'File "' in whole  # every frame, after the user's
            health = await edit_and_wait(
                tmp_path, runner.health_url, "errors.yaml", MANIFEST + "server:\n  error_details: none\n"
            )
            assert health["last_reload"]["result"] == "ok", health
            before = runner.logged().count("raised KeyError (ref ")
            assert text_of(await client.call_tool("get_note", {"note_id": "42"})) == "Internal error in tool 'get_note'"
            assert runner.logged().count("raised KeyError (ref ") == before + 1  # logged as in every mode
            # Deliberate messages are the tool's answer in every mode.
            assert text_of(await client.call_tool("get_note", {"note_id": "abc"})) == "note_id must be digits"
    finally:
        runner.stop()


def test_a_wrong_error_details_is_a_located_error_naming_the_values(tmp_path: Path) -> None:
    manifest = write_app(tmp_path, "server:\n  error_details: verbose\n")
    checked = run_main("check", str(manifest), cwd=tmp_path)
    assert checked.returncode != 0
    assert re.search(r"errors\.yaml:\d+:\d+: server\.error_details: .*'safe', 'full' or 'none'", checked.stderr), (
        checked.stderr
    )

"""Tools, prompts and resource templates that ask the user (docs/asking.md), against a real server.

Plain functions with the SDK's resolver API (`Annotated[T, Resolve(fn)]`, `Elicit`, `Sample`,
`ListRoots`), declared in a manifest. A handshake-era client gets real server-to-client
requests; a 2026-07-28 client gets `input_required` results and answers them in further
rounds (the SDK client does that by itself, calling the same callbacks). A client that did
not declare a capability an entry needs is refused with -32021 (HTTP 400 on 2026-07-28)
before the function runs. A reload between two rounds lets the call go on when the tool's
code did not change, and fails it clearly when it did.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.helpers import ROOT, RunnerProcess, edit_and_wait, mcp_client, run_cli

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]

MODULE = '''
from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit, ListRoots, Resolve, Sample
from mcp_types import CreateMessageResult, ListRootsResult, SamplingMessage, TextContent
from mcp_types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from pydantic import BaseModel


class Name(BaseModel):
    name: str


def ask_name() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


def ask_model() -> Sample:
    question = SamplingMessage(role="user", content=TextContent(type="text", text="A greeting?"))
    return Sample([question], max_tokens=20)


def client_roots() -> ListRoots:
    return ListRoots()


def ran(what: str) -> None:
    with open("ran.log", "a") as log:
        log.write(what + "\\n")


def greet(name: Annotated[Name, Resolve(ask_name)], greeting: str = "Hello") -> str:
    """Greets the user by the name they give"""
    ran("greet")
    return f"{greeting}, {name.name}!"


async def everything(
    name: Annotated[Name, Resolve(ask_name)],
    said: Annotated[CreateMessageResult, Resolve(ask_model)],
    roots: Annotated[ListRootsResult, Resolve(client_roots)],
) -> str:
    """Asks the user, the client's model and the client's roots"""
    ran("everything")
    return f"{said.content.text} {name.name} in {roots.roots[0].uri}"


async def sample_by_hand(ctx: Context) -> str:
    """Samples without a resolver: the manifest says it needs sampling"""
    ran("sample_by_hand")
    message = SamplingMessage(role="user", content=TextContent(type="text", text="Hi?"))
    result = await ctx.session.create_message(messages=[message], max_tokens=5, related_request_id=ctx.request_id)
    return result.content.text


def welcome(name: Annotated[Name, Resolve(ask_name)], tone: str = "warm") -> str:
    """A prompt that asks for the name first"""
    ran("welcome")
    return f"Write a {tone} welcome for {name.name}."


def profile(id: str, name: Annotated[Name, Resolve(ask_name)]) -> str:
    """A resource template that asks for the name first"""
    ran("profile")
    return f"profile {id} of {name.name}"


def other() -> str:
    return "v1"


def greet_by_name(ctx: Context) -> str | InputRequiredResult:
    """Asks the user's name under the key `user_name` (docs/asking.md, "Naming the questions yourself")"""
    answer = (ctx.input_responses or {}).get("user_name")
    if not isinstance(answer, ElicitResult) or answer.action != "accept" or not answer.content:
        schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
        question = ElicitRequest(params=ElicitRequestFormParams(message="What is your name?", requested_schema=schema))
        return InputRequiredResult(input_requests={"user_name": question})
    ran("greet_by_name")
    return f"Hello, {answer.content.get('name')}!"
'''

MANIFEST = """
name: asking
tools:
  - function: asking:greet
  - function: asking:everything
  - function: asking:sample_by_hand
    requires_client: [sampling]
  - function: asking:other
  - function: asking:greet_by_name
prompts:
  - function: asking:welcome
resources:
  - uri: profile://{id}
    function: asking:profile
"""


def serve(folder: Path) -> RunnerProcess:
    (folder / "asking.py").write_text(MODULE)
    (folder / "asking.yaml").write_text(MANIFEST)
    return RunnerProcess(folder / "asking.yaml").start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunnerProcess]:
    """A server of the test's own, for a test that edits its files."""
    runner = serve(tmp_path)
    yield runner
    runner.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    runner = serve(tmp_path_factory.mktemp("asking"))
    yield runner
    runner.stop()


@pytest.fixture
def shared(module_server: RunnerProcess) -> RunnerProcess:
    """The module's server, for a test that leaves its files as they are (each start costs seconds); what ran
    before the test is forgotten."""
    (module_server.manifest.parent / "ran.log").unlink(missing_ok=True)
    return module_server


async def answer_name(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "Ann"})


async def answer_sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="Hi"), model="m")


async def answer_roots(context: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///work")])


@asynccontextmanager
async def client(url: str, mode: str, statuses: list[int] | None = None, **callbacks: Any) -> AsyncIterator[Client]:
    """A real SDK client; `statuses` collects the HTTP status of every response."""

    async def record(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    hooks = {"response": [record]}
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=60.0), event_hooks=hooks) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, **callbacks) as connected:  # type: ignore[arg-type]
            yield connected


def ran(server: RunnerProcess) -> list[str]:
    log = server.manifest.parent / "ran.log"
    return log.read_text().split() if log.exists() else []


@pytest.mark.parametrize("mode", MODES)
async def test_tools_prompts_and_templates_ask_in_both_generations(shared: RunnerProcess, mode: str) -> None:
    callbacks = dict(
        elicitation_callback=answer_name, sampling_callback=answer_sampling, list_roots_callback=answer_roots
    )
    async with client(shared.url, mode, **callbacks) as mcp:
        greeted = await mcp.call_tool("greet", {"greeting": "Hi"})
        assert not greeted.is_error and greeted.content[0].text == "Hi, Ann!", greeted
        asked = await mcp.call_tool("everything", {})
        assert not asked.is_error and asked.content[0].text == "Hi Ann in file:///work", asked

        prompts = {p.name: p for p in (await mcp.list_prompts()).prompts}
        assert [a.name for a in prompts["welcome"].arguments or []] == ["tone"]  # `name` is asked, not an argument
        prompt = await mcp.get_prompt("welcome", {"tone": "brief"})
        assert prompt.messages[0].content.text == "Write a brief welcome for Ann.", prompt

        read = await mcp.read_resource("profile://7")
        assert read.contents[0].text == "profile 7 of Ann", read

    assert ran(shared) == ["greet", "everything", "welcome", "profile"]


@pytest.mark.parametrize("mode", MODES)
async def test_an_undeclared_capability_is_refused_before_the_function_runs(shared: RunnerProcess, mode: str) -> None:
    statuses: list[int] = []
    async with client(shared.url, mode, statuses, elicitation_callback=answer_name) as mcp:  # no sampling, no roots
        for tool, missing in (("everything", {"sampling": {}, "roots": {}}), ("sample_by_hand", {"sampling": {}})):
            statuses.clear()
            with pytest.raises(MCPError) as refused:
                await mcp.call_tool(tool, {})
            assert refused.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY, refused.value.error
            assert refused.value.error.data == {"requiredCapabilities": missing}, refused.value.error
            if mode == "2026-07-28":
                assert statuses == [400], statuses
        assert not (await mcp.call_tool("greet", {})).is_error  # what it declared still works
    statuses.clear()
    async with client(shared.url, mode, statuses, sampling_callback=answer_sampling) as mcp:  # no elicitation
        for refused_call in (lambda: mcp.get_prompt("welcome", {}), lambda: mcp.read_resource("profile://7")):
            with pytest.raises(MCPError) as refused:
                await refused_call()
            assert refused.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY, refused.value.error
            assert refused.value.error.data == {"requiredCapabilities": {"elicitation": {}}}, refused.value.error
        if mode == "2026-07-28":
            assert statuses == [400, 400], statuses
    assert ran(shared) == ["greet"]  # no refused function ran


@pytest.mark.parametrize("change", ["another function in its module", "the tool"])
async def test_a_reload_between_rounds(server: RunnerProcess, change: str) -> None:
    """The callback runs between round 1 and round 2: there the module is changed, and reloaded.

    Any edit of the tool's module counts as a change (docs/asking.md): the tool may read what was edited."""
    folder = server.manifest.parent
    edited = (
        MODULE.replace('return "v1"', 'return "v2"')
        if change == "another function in its module"
        else MODULE.replace('return f"{greeting}, {name.name}!"', 'return f"{greeting}, dear {name.name}!"')
    )
    reloads: list[dict[str, Any]] = []

    async def reload_then_answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        reloads.append(await edit_and_wait(folder, server.health_url, "asking.py", edited))
        return await answer_name(context, params)

    async with client(server.url, "2026-07-28", elicitation_callback=reload_then_answer) as mcp:
        with pytest.raises(MCPError, match="tool 'greet' changed .* call it again from the start") as failed:
            await mcp.call_tool("greet", {})
        assert failed.value.error.code == types.INVALID_PARAMS
        assert ran(server) == []
        again = await mcp.call_tool("greet", {})  # called again: the new code asks, and answers
        greeting = "Hello, Ann!" if change == "another function in its module" else "Hello, dear Ann!"
        assert again.content[0].text == greeting, again
    assert [r["last_reload"]["result"] for r in reloads] == ["ok"] * len(reloads) and reloads, reloads


BOOKING = '''
from typing import Annotated

from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import BaseModel

from phrasing import done

ACTION = "booked a table"


class Answer(BaseModel):
    confirm: bool


def ask() -> Elicit[Answer]:
    return Elicit("Book a table for tonight?", Answer)


def book(answer: Annotated[Answer, Resolve(ask)]) -> str:
    """Books a table when the user confirms"""
    return done(ACTION) if answer.confirm else "nothing done"
'''

PHRASING = """
def done(action: str) -> str:
    return f"Done: {action}."
"""

NOTES = '''
def note() -> str:
    """A tool the booking does not use"""
    return "v1"
'''


@pytest.mark.parametrize(
    "change",
    ["a module it does not use", "a module constant it reads", "a helper module it calls"],
)
async def test_a_reload_between_rounds_sees_what_the_tool_is_made_of(tmp_path: Path, change: str) -> None:
    """The tool's behaviour lives in a module constant and a helper in another module, not in its own code:
    an edit of either fails the next round (the user said yes to the old behaviour); an edit of a module
    the tool does not import lets it go on."""
    files = {"booking.py": BOOKING, "phrasing.py": PHRASING, "notes.py": NOTES}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "m.yaml").write_text("name: made-of\ntools:\n  - function: booking:book\n  - function: notes:note\n")
    file, edited = {
        "a module it does not use": ("notes.py", NOTES.replace('"v1"', '"v2"')),
        "a module constant it reads": ("booking.py", BOOKING.replace('"booked a table"', '"DELETED ALL BOOKINGS"')),
        "a helper module it calls": ("phrasing.py", PHRASING.replace("Done:", "Deleted every booking instead of")),
    }[change]
    runner = RunnerProcess(tmp_path / "m.yaml").start()
    reloads: list[dict[str, Any]] = []

    async def reload_then_answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        reloads.append(await edit_and_wait(tmp_path, runner.health_url, file, edited))
        return types.ElicitResult(action="accept", content={"confirm": True})

    try:
        async with client(runner.url, "2026-07-28", elicitation_callback=reload_then_answer) as mcp:
            if change == "a module it does not use":
                booked = await mcp.call_tool("book", {})
                assert not booked.is_error and booked.content[0].text == "Done: booked a table.", booked
            else:
                with pytest.raises(MCPError, match="tool 'book' changed .* call it again from the start") as failed:
                    await mcp.call_tool("book", {})
                assert failed.value.error.code == types.INVALID_PARAMS
    finally:
        runner.stop()
    assert [r["last_reload"]["result"] for r in reloads] == ["ok"], reloads


@pytest.mark.parametrize("mode", MODES)
async def test_the_example_server(mode: str) -> None:
    """servers/asking.yaml, as docs/asking.md shows it."""

    async def answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        if params.message.startswith("Book a table"):
            return types.ElicitResult(action="accept", content={"guests": 2, "confirm": True})
        return types.ElicitResult(action="accept", content={"audience": "new staff"})

    runner = RunnerProcess(ROOT / "servers" / "asking.yaml", extra=("--no-reload",)).start()
    try:
        callbacks = dict(
            elicitation_callback=answer, sampling_callback=answer_sampling, list_roots_callback=answer_roots
        )
        async with client(runner.url, mode, **callbacks) as mcp:
            booked = await mcp.call_tool("book_table", {"restaurant": "Chez Ann"})
            assert booked.content[0].text == "Booked a table for 2 at Chez Ann.", booked
            described = await mcp.call_tool("describe_project", {"project": "notes"})
            assert described.content[0].text == "notes: Hi (in file:///work)", described
            prompt = await mcp.get_prompt("summary", {"topic": "the roadmap"})
            assert prompt.messages[0].content.text == "Summarize the roadmap for new staff.", prompt
            with pytest.raises(MCPError) as connect:
                await mcp.call_tool("calendar_events", {"day": "Monday"})
            assert connect.value.error.code == types.URL_ELICITATION_REQUIRED, connect.value.error
            assert connect.value.error.data["elicitations"][0]["url"] == "https://calendar.example.com/connect"
    finally:
        runner.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_with_bind_still_asks(tmp_path: Path, mode: str) -> None:
    """`bind:` rewrites the signature: the `Resolve(...)` in the annotation must survive it."""
    (tmp_path / "asking.py").write_text(
        MODULE + "\n\ndef sign(user: str, name: Annotated[Name, Resolve(ask_name)]) -> str:\n"
        '    """Signs with the caller\'s token subject and the name the user gives"""\n'
        '    return f"{name.name} ({user})"\n'
    )
    manifest = tmp_path / "asking.yaml"
    manifest.write_text(
        "name: bound\nsignin: {app_id: local}\ntools:\n  - function: asking:sign\n    bind: {user: sub}\n"
    )
    runner = RunnerProcess(manifest, extra=("--no-reload",)).start()
    try:
        token = run_cli("token", str(manifest), "--port", str(runner.port), "--subject", "user-7", cwd=tmp_path)
        assert token.returncode == 0, token.stderr
        async with mcp_client(runner.url, token.stdout.strip(), mode, elicitation_callback=answer_name) as mcp:
            [tool] = (await mcp.list_tools()).tools
            assert tool.input_schema.get("properties", {}) == {}, tool.input_schema  # neither `user` nor `name`
            signed = await mcp.call_tool("sign", {})
            assert not signed.is_error and signed.content[0].text == "Ann (user-7)", signed
    finally:
        runner.stop()


def test_the_code_fingerprint_is_the_same_in_every_process(tmp_path: Path) -> None:
    """Replicas compare it: a round may land on another process, whose string hashing differs."""
    (tmp_path / "mod.py").write_text(MODULE + '\n\ndef pick(x: str) -> bool:\n    return x in {"a", "b", "c", "d"}\n')
    code = (
        "import mod; from runner.build.rounds import fingerprint\n"
        "print(fingerprint(mod.pick), fingerprint(mod.greet), repr(mod.pick.__code__.co_consts), sep='|')"
    )
    printed = [
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split("|")
        for seed in ("1", "2", "3")
    ]
    assert len({p[2] for p in printed}) > 1, printed  # the set constant's order does differ between them
    assert len({(p[0], p[1]) for p in printed}) == 1, printed


async def test_a_reload_between_rounds_of_a_prompt(server: RunnerProcess) -> None:
    """Prompts (and templates) are pinned as tools are: the changed prompt fails its next round."""
    edited = MODULE.replace('f"Write a {tone} welcome', 'f"Write a {tone} greeting')

    async def reload_then_answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        health = await edit_and_wait(server.manifest.parent, server.health_url, "asking.py", edited)
        assert health["last_reload"]["result"] == "ok", health
        return await answer_name(context, params)

    async with client(server.url, "2026-07-28", elicitation_callback=reload_then_answer) as mcp:
        with pytest.raises(MCPError, match="prompt 'welcome' changed .* call it again from the start"):
            await mcp.get_prompt("welcome", {})
    assert ran(server) == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_that_asks_by_hand_is_answered_by_both_generations(shared: RunnerProcess, mode: str) -> None:
    """Its own InputRequiredResult: a handshake-era client is asked on the call's stream, and the tool runs again."""
    asked: list[str] = []

    async def answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ann"})

    async with client(shared.url, mode, elicitation_callback=answer) as mcp:
        result = await mcp.call_tool("greet_by_name", {})
    assert not result.is_error and result.content[0].text == "Hello, Ann!", result
    assert asked == ["What is your name?"]
    assert ran(shared) == ["greet_by_name"]


async def test_a_tool_that_asks_by_hand_tells_a_handshake_era_client_of_a_stateless_server_why(
    tmp_path: Path,
) -> None:
    (tmp_path / "asking.py").write_text(MODULE)
    (tmp_path / "asking.yaml").write_text(MANIFEST)
    runner = RunnerProcess(tmp_path / "asking.yaml", extra=("--stateless",)).start()
    try:
        async with client(runner.url, "legacy", elicitation_callback=answer_name) as mcp:
            result = await mcp.call_tool("greet_by_name", {})
        assert result.is_error
        assert "tool 'greet_by_name' asks its questions as a 2026-07-28 multi-round call" in result.content[0].text
    finally:
        runner.stop()

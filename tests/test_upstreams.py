"""Other MCP servers mounted next to the manifest's own entries (`upstreams:`, docs/upstreams.md).

Real upstreams: a stdio server written with the plain SDK (tests/apps/plain_upstream.py), started and
supervised by the runner, and another `mcp-runner serve` over HTTP with its own MCP SignIn auth, reached
with the token the manifest's `headers` carry. Clients are real MCP clients over real HTTP with real
RS256 tokens from the loopback JWKS server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.helpers import (
    ROOT,
    Issuer,
    JWKSServer,
    RunnerProcess,
    edit_and_wait,
    free_port,
    healthz,
    mcp_client,
    run_main,
    stop_process,
    wait_for_health,
    wait_for_port,
)

pytestmark = pytest.mark.anyio

PLAIN = ROOT / "tests" / "apps" / "plain_upstream.py"

UPSTREAM_MODULE = '''
from mcp.server.mcpserver import Context


def authorization(ctx: Context) -> str:
    """The Authorization header this server got with the call"""
    return str(ctx.request_context.request.headers.get("authorization", ""))


def mul(a: int, b: int) -> int:
    return a * b
'''


def signin(jwks: JWKSServer, url: str) -> str:
    return f"signin:\n  app_id: {jwks.app_id}\n  resource: {url}\n  base_url: {jwks.base_url}\n"


def plain_entry(name: str = "plain", mark: str = "one", extra: str = "") -> str:
    return textwrap.indent(
        f"- name: {name}\n  command: [{sys.executable}, {PLAIN}]\n  env: {{PLAIN_MARK: {mark}}}\n{extra}", "  "
    )


def connected(*names: str) -> Any:
    return lambda h: all(h.get("upstreams", {}).get(n, {}).get("state") == "connected" for n in names)


@pytest.fixture
def upstream(tmp_path: Path, jwks: JWKSServer) -> Iterator[RunnerProcess]:
    """Another mcp-runner over HTTP, with its own auth: its audience is its own URL."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    (folder / "up_tools.py").write_text(UPSTREAM_MODULE)
    runner = RunnerProcess(folder / "up.yaml")
    text = f"name: calc\n{signin(jwks, runner.url)}tools:\n  - function: up_tools:authorization\n"
    runner.manifest.write_text(text + "  - function: up_tools:mul\n")
    runner.start()
    yield runner
    runner.stop()


def front(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> RunnerProcess:
    folder = tmp_path / "front"
    folder.mkdir(exist_ok=True)
    (folder / "local_tools.py").write_text("def hello() -> str:\n    return 'hi'\n")
    runner = RunnerProcess(folder / "front.yaml", env=env or {})
    runner.manifest.write_text(text.replace("RESOURCE", runner.url))
    return runner


@pytest.fixture(scope="module")
def stdio_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    """One runner for the module's tests that leave it as they found it (each start costs seconds): the manifest's
    own tool and resource beside a stdio upstream (`plain`) and an HTTP one nothing listens for (`gone`)."""
    dead = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    local = "tools:\n  - function: local_tools:hello\n"
    local += "resources:\n  - uri: plain://readme\n    function: local_tools:hello\n"  # the upstream serves it too
    text = f"name: front\n{local}upstreams:\n  - name: gone\n    url: {dead}\n" + plain_entry()
    runner = front(tmp_path_factory.mktemp("stdio"), text).start()
    yield runner
    runner.stop()


async def test_stdio_upstream_served_with_prefix_filters_scopes_and_overrides(tmp_path: Path, jwks: JWKSServer) -> None:
    extra = (
        "  exclude: [secret]\n  scopes: [plain.use]\n"
        "  overrides:\n    plain_refuse: {title: Refuser, scopes: [plain.refuse], annotations: {readOnlyHint: true}}\n"
    )
    text = f"name: front\n{signin(jwks, 'RESOURCE')}tools:\n  - function: local_tools:hello\nupstreams:\n"
    runner = front(tmp_path, text + plain_entry(extra=extra)).start()
    try:
        issuer = Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0])
        await wait_for_health(runner.health_url, connected("plain"), "the stdio upstream connected")
        async with mcp_client(runner.url, issuer.token(scope="plain.use plain.refuse")) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            served = ["plain_add", "plain_chatty", "plain_grow", "plain_ports", "plain_refuse", "plain_steps"]
            assert sorted(tools) == ["hello", *served, "plain_whoami"]
            # plain_secret: excluded
            assert tools["plain_refuse"].title == "Refuser" and tools["plain_refuse"].annotations is not None
            assert tools["plain_refuse"].annotations.read_only_hint is True
            assert tools["plain_add"].output_schema is not None  # the upstream's, as it is
            added = await client.call_tool("plain_add", {"a": 2, "b": 3})
            assert added.structured_content == {"total": 5} and not added.is_error
            failed = await client.call_tool("plain_refuse", {"reason": "no"})
            assert failed.is_error and failed.content[0].text == "refused: no"  # type: ignore[union-attr]
            mark = await client.call_tool("plain_whoami", {})
            assert mark.content[0].text.endswith(" one")  # type: ignore[union-attr]  # the entry's env
            prompt = await client.get_prompt("plain_greet", {"name": "Ann"})
            assert prompt.messages[0].content.text == "Say hello to Ann"  # type: ignore[union-attr]
            secret = await client.call_tool("plain_secret", {})
            assert secret.is_error  # excluded: unknown here
        async with mcp_client(runner.url, issuer.token(scope="plain.use")) as client:  # without plain.refuse
            names = [t.name for t in (await client.list_tools()).tools]
            assert "plain_refuse" not in names and "plain_add" in names
            refused = await client.call_tool("plain_refuse", {"reason": "no"})
            assert refused.is_error and "Unknown tool" in refused.content[0].text  # type: ignore[union-attr]
        async with mcp_client(runner.url, issuer.token(scope="read")) as client:  # without the mount's scope
            assert [t.name for t in (await client.list_tools()).tools] == ["hello"]
            assert (await client.list_prompts()).prompts == []
    finally:
        runner.stop()


async def test_http_upstream_gets_the_manifest_token_never_the_clients(
    tmp_path: Path, jwks: JWKSServer, upstream: RunnerProcess
) -> None:
    up_token = Issuer(base_url=jwks.base_url, resource=upstream.url, key=jwks.keys[0]).token(sub="front-service")
    entry = f'  - name: calc\n    url: {upstream.url}\n    headers: {{Authorization: "Bearer ${{UP_TOKEN}}"}}\n'
    text = f"name: front\n{signin(jwks, 'RESOURCE')}upstreams:\n{entry}    prefix: ''\n    timeout: 10\n"
    runner = front(tmp_path, text, env={"UP_TOKEN": up_token}).start()
    try:
        await wait_for_health(runner.health_url, connected("calc"), "the HTTP upstream connected")
        mine = Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0]).token()
        async with mcp_client(runner.url, mine) as client:
            assert sorted(t.name for t in (await client.list_tools()).tools) == ["authorization", "mul"]
            assert (await client.call_tool("mul", {"a": 6, "b": 7})).structured_content == {"result": 42}
            got = (await client.call_tool("authorization", {})).content[0].text  # type: ignore[union-attr]
        assert got == f"Bearer {up_token}"
        assert mine not in got
        async with mcp_client(runner.url, mine) as client:  # another client, more calls: the same connection
            for i in range(5):
                assert (await client.call_tool("mul", {"a": i, "b": 2})).structured_content == {"result": 2 * i}
        assert healthz(runner.health_url)["upstreams"]["calc"]["connects"] == 1  # opened once, never per call
    finally:
        runner.stop()


async def test_an_upstream_that_is_down_fails_its_tools_naming_it_and_the_rest_serves(
    stdio_front: RunnerProcess,
) -> None:
    runner = stdio_front
    health = await wait_for_health(
        runner.health_url,
        lambda h: connected("plain")(h) and h["upstreams"]["gone"]["state"] == "down",
        "one upstream connected, the other down",
    )
    assert health["upstreams"]["gone"]["error"] == "ConnectError"  # the kind only: /healthz needs no token
    async with mcp_client(runner.url) as client:
        result = await client.call_tool("gone_anything", {})
        assert result.is_error
        assert "upstream 'gone' is unavailable" in result.content[0].text  # type: ignore[union-attr]
        assert (await client.call_tool("plain_add", {"a": 1, "b": 1})).structured_content == {"total": 2}
        assert (await client.call_tool("hello", {})).content[0].text == "hi"  # type: ignore[union-attr]


async def test_resources_and_templates_from_an_upstream_keep_their_uris(stdio_front: RunnerProcess) -> None:
    runner = stdio_front  # its manifest's own resource plain://readme collides with the upstream's
    await wait_for_health(runner.health_url, connected("plain"), "the stdio upstream connected")
    async with mcp_client(runner.url) as client:
        uris = [str(r.uri) for r in (await client.list_resources()).resources]
        assert uris == ["plain://readme"]  # once: the manifest's own wins
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        assert templates == ["plain://items/{item}"]
        item = await client.read_resource("plain://items/7")
        assert item.contents[0].text == "item 7"  # type: ignore[union-attr]
        readme = await client.read_resource("plain://readme")
        assert readme.contents[0].text == "hi"  # type: ignore[union-attr]
    logged = runner.logged()
    assert f"{runner.manifest}:" in logged and "serves 'plain://readme'" in logged  # located, said once


async def _pid(url: str) -> int:
    async with mcp_client(url) as client:
        result = await client.call_tool("plain_whoami", {})
        assert not result.is_error, result
        return int(result.content[0].text.split()[0])  # type: ignore[union-attr]


def _alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie is dead too (it waits only for its parent's wait).

    One read of /proc/PID/stat, and a process reaped meanwhile is gone: a stdio upstream killed with SIGKILL is
    reaped by its guard at once, and a look in two steps (exists, then read) raised FileNotFoundError or
    ProcessLookupError when the reap came between them (a failure seen under load)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_a_process_reaped_while_it_is_looked_at_is_dead_not_an_error() -> None:
    """As a guard reaps its command right after a SIGKILL: the reap races the look, which answers, never raises."""
    import threading
    import time

    deadline = time.monotonic() + 60  # a bound for the loop below, not a measure: it takes well under a second
    for _ in range(1000):  # the two-step look raised in 4 of 6 runs of this unloaded, and in every run under load
        child = subprocess.Popen(["sleep", "30"])
        os.kill(child.pid, signal.SIGKILL)
        reaper = threading.Thread(target=child.wait)  # the guard's wait
        reaper.start()
        try:
            while _alive(child.pid):
                assert time.monotonic() < deadline, f"process {child.pid} never showed as dead after SIGKILL"
        finally:
            reaper.join(timeout=30)
        assert not _alive(child.pid)


async def _gone(pid: int, what: str) -> None:
    with anyio.move_on_after(30):
        while _alive(pid):
            await anyio.sleep(0.05)
        return
    raise AssertionError(f"{what}: process {pid} is still alive")


async def test_a_stdio_upstream_that_dies_is_started_again(stdio_front: RunnerProcess) -> None:
    runner = stdio_front
    health = await wait_for_health(runner.health_url, connected("plain"), "the stdio upstream connected")
    first, connects = await _pid(runner.url), health["upstreams"]["plain"]["connects"]
    os.kill(first, signal.SIGKILL)
    await _gone(first, "the killed upstream")
    await wait_for_health(
        runner.health_url,
        lambda h: h["upstreams"]["plain"]["connects"] > connects and connected("plain")(h),
        "the upstream started again",
    )
    assert await _pid(runner.url) != first


async def test_a_stdio_upstream_never_outlives_the_runner_even_after_kill_9(tmp_path: Path) -> None:
    runner = front(tmp_path, "name: front\nupstreams:\n" + plain_entry()).start()
    try:
        await wait_for_health(runner.health_url, connected("plain"), "the stdio upstream connected")
        pid = await _pid(runner.url)
        assert runner.proc is not None
        os.kill(runner.proc.pid, signal.SIGKILL)
        runner.proc.wait(timeout=30)
        await _gone(pid, "the upstream after kill -9 of the runner")
    finally:
        runner.stop()


async def test_reload_keeps_an_unchanged_upstreams_process_and_applies_the_changed_one(tmp_path: Path) -> None:
    text = "name: front\nupstreams:\n" + plain_entry() + plain_entry("other", "two")
    runner = front(tmp_path, text).start()
    try:
        await wait_for_health(runner.health_url, connected("plain", "other"), "both upstreams connected")
        pid = await _pid(runner.url)
        changed = "name: front\nupstreams:\n" + plain_entry() + plain_entry("third", "three")  # other -> third
        health = await edit_and_wait(runner.manifest.parent, runner.health_url, "front.yaml", changed)
        assert health["last_reload"]["result"] == "ok", health
        said = str(health["last_reload"]["changes"])  # what the reload changed: the unchanged upstream's tools did not
        assert "other_whoami" in said and "plain_" not in said, said
        assert "upstreams +third -other" in said, said  # the new one's tools come later: it is named now
        await wait_for_health(
            runner.health_url,
            lambda h: connected("plain", "third")(h) and "other" not in h["upstreams"],
            "the new upstream connected, the removed one gone",
        )
        assert await _pid(runner.url) == pid  # the unchanged upstream kept its process
        async with mcp_client(runner.url) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "third_whoami" in names and "other_whoami" not in names
            mark = await client.call_tool("third_whoami", {})
            assert mark.content[0].text.endswith(" three")  # type: ignore[union-attr]
        changed = "name: front\nupstreams:\n" + plain_entry(mark="uno") + plain_entry("third", "three")  # env changed
        health = await edit_and_wait(runner.manifest.parent, runner.health_url, "front.yaml", changed)
        assert health["last_reload"]["result"] == "ok", health
        assert health["last_reload"]["changes"] == "upstreams ~plain", health  # was "no visible change"
        assert "reload ok in " in runner.logged() and ": upstreams ~plain\n" in runner.logged()
        with anyio.fail_after(30):  # the changed upstream is started again, with its new environment
            while True:
                async with mcp_client(runner.url) as client:
                    mark = await client.call_tool("plain_whoami", {})
                if not mark.is_error and mark.content[0].text.endswith(" uno"):  # type: ignore[union-attr]
                    break
                await anyio.sleep(0.05)
        assert int(mark.content[0].text.split()[0]) != pid  # type: ignore[union-attr]
    finally:
        runner.stop()


CASES = {
    "both": (
        "  - name: x\n    url: http://127.0.0.1:9/mcp\n    command: [a]\n",
        "m.yaml:3:5: upstream 'x' needs exactly one",
    ),
    "neither": (
        "  - name: x\n    timeout: 5\n",
        "m.yaml:3:5: upstream 'x' needs exactly one of command (stdio) or url",
    ),
    "headers on stdio": (
        "  - name: x\n    command: [a]\n    headers: {A: b}\n",
        "m.yaml:5:5: headers are sent to an HTTP",
    ),
    "env on http": (
        "  - name: x\n    url: http://127.0.0.1:9/mcp\n    env: {A: b}\n",
        "m.yaml:5:5: env is for a stdio",
    ),
    "not a url": (
        "  - name: x\n    url: ftp://x\n",
        "m.yaml:4:10: upstreams.0.url: must be an http(s) URL",
    ),
    "duplicate": ("  - name: x\n    command: [a]\n  - name: x\n    command: [b]\n", "m.yaml:5:11: duplicate upstream"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_upstream_entry_is_located(tmp_path: Path, case: str) -> None:
    entry, expected = CASES[case]
    (tmp_path / "m.yaml").write_text("name: m\nupstreams:\n" + entry)
    result = run_main("check", str(tmp_path / "m.yaml"), "--offline", cwd=tmp_path)
    assert result.returncode == 2, result
    assert expected in result.stderr.replace(str(tmp_path / "m.yaml"), "m.yaml"), result.stderr


def test_check_reaches_each_upstream_once_and_offline_skips_it(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nupstreams:\n" + plain_entry() + f"  - name: gone\n    url: {dead}\n    timeout: 5\n")
    result = run_main("check", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    assert f"{path}:6:5: cannot reach upstream 'gone': ConnectError" in result.stderr, result.stderr
    assert "'plain'" not in result.stderr
    offline = run_main("check", str(path), "--offline", cwd=tmp_path)
    assert offline.returncode == 0 and "2 upstreams (not reached: --offline)" in offline.stdout, offline
    path.write_text("name: m\nupstreams:\n" + plain_entry(extra="  exclude: [secret]\n"))
    reached = run_main("check", str(path), cwd=tmp_path)
    assert reached.returncode == 0 and "1 upstream reached (7 tools)" in reached.stdout, reached


def test_check_reports_each_name_clash_at_the_later_entrys_name(tmp_path: Path) -> None:
    """A served name two entries would serve is a located problem naming both and the fix (not only a log line)."""
    (tmp_path / "local_tools.py").write_text("def whoami() -> str:\n    return 'local'\n")
    path = tmp_path / "m.yaml"
    text = "name: m\ntools:\n  - function: local_tools:whoami\nupstreams:\n"
    path.write_text(text + plain_entry("a", extra="  prefix: ''\n") + plain_entry("b", extra="  prefix: ''\n"))
    result = run_main("check", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    local = "upstream 'a' would serve tools already served by the manifest's tools ('whoami'): "
    assert f"{path}:5:11: {local}set its prefix:, or exclude: [whoami]" in result.stderr, result.stderr
    tools = "upstream 'b' would serve tools already served by upstream 'a' ('add', 'refuse', 'secret', "
    assert f"{path}:9:11: {tools}" in result.stderr and "set its prefix:, or exclude: [add, refuse, " in result.stderr
    prompts = "upstream 'b' would serve prompts already served by upstream 'a' ('greet'): "
    assert f"{path}:9:11: {prompts}set its prefix:, or exclude: [greet]" in result.stderr
    path.write_text(text + plain_entry("a", extra="  prefix: ''\n  exclude: [whoami]\n"))
    fixed = run_main("check", str(path), cwd=tmp_path)
    assert fixed.returncode == 0, fixed


async def test_the_documented_example_serves_its_stdio_upstream(tmp_path: Path) -> None:
    """docs/upstreams.md's example, as written: `python3` on PATH is this interpreter's; calc is down, then up."""
    import shutil

    folder = tmp_path / "upstreams"
    shutil.copytree(ROOT / "docs" / "examples" / "upstreams", folder, ignore=shutil.ignore_patterns("__pycache__"))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    calc_port = free_port()  # the page's calc server, started now (it imports while the runner starts)
    calc = subprocess.Popen([sys.executable, str(folder / "calc_server.py"), str(calc_port)])
    runner = RunnerProcess(folder / "front.yaml", env={"PATH": path, "CALC_URL": dead})
    try:
        runner.start()
        await wait_for_health(
            runner.health_url,
            lambda h: connected("clock")(h) and h["upstreams"]["calc"]["state"] == "down",
            "clock connected and calc down",
        )
        # The CLI, as the page says: calc never connected so lists no calc_mul, and the answer says why.
        call = ("call", str(runner.manifest))  # in a thread: the CLI runs its own event loop
        down = await anyio.to_thread.run_sync(lambda: run_main(*call, "calc_mul", "--arg", "a=2", "--arg", "b=3"))
        assert down.returncode == 1, down
        assert down.stderr.startswith("error: upstream 'calc' is unavailable (down: ConnectError"), down.stderr
        unknown = await anyio.to_thread.run_sync(lambda: run_main(*call, "nope", "--arg", "a=2"))
        assert unknown.returncode == 1, unknown
        assert "the server has no tool 'nope' (its tools: clock_add_days, hello)" in unknown.stderr, unknown.stderr
        token = run_main("token", str(runner.manifest), "--port", str(runner.port), cwd=folder).stdout.strip()
        async with mcp_client(runner.url, token) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert sorted(tools) == ["clock_add_days", "hello"]  # now: excluded; calc_mul: needs calc.use
            assert tools["clock_add_days"].title == "Add days"
            result = await client.call_tool("clock_add_days", {"date": "2026-12-30", "days": 3})
            assert result.content[0].text == "2027-01-02"  # type: ignore[union-attr]
            assert [p.name for p in (await client.list_prompts()).prompts] == ["clock_schedule"]
        # calc's URL now names the running calc server (a reload connects it at once, no backoff to wait out),
        # and the page's call through the runner answers 42.
        wait_for_port(calc_port, proc=calc)  # type: ignore[arg-type]
        url = f"http://127.0.0.1:{calc_port}/mcp"
        text = runner.manifest.read_text().replace("${CALC_URL:-http://127.0.0.1:9100/mcp}", url)
        health = await edit_and_wait(folder, runner.health_url, "front.yaml", text)
        assert health["last_reload"]["result"] == "ok", health
        await wait_for_health(runner.health_url, connected("calc"), "calc connected")
        answer = await anyio.to_thread.run_sync(lambda: run_main(*call, "calc_mul", "--arg", "a=6", "--arg", "b=7"))
        assert answer.returncode == 0 and answer.stdout == "42\n", answer
    finally:
        runner.stop()
        stop_process(calc)


async def test_an_upstreams_list_change_reaches_clients_and_its_progress_reaches_the_caller(
    stdio_front: RunnerProcess,
) -> None:
    from mcp.shared.subscriptions import ToolsListChanged

    runner = stdio_front
    await wait_for_health(runner.health_url, connected("plain"), "the stdio upstream connected")
    async with mcp_client(runner.url) as listener, mcp_client(runner.url) as caller:
        async with listener.listen(tools_list_changed=True) as subscription:
            await caller.call_tool("plain_grow", {"name": "fresh"})
            with anyio.fail_after(20):
                async for event in subscription:
                    if isinstance(event, ToolsListChanged):
                        break
        with anyio.fail_after(20):  # the runner lists the upstream again when told
            while "plain_fresh" not in {t.name for t in (await caller.list_tools()).tools}:
                await anyio.sleep(0.05)
        grown = await caller.call_tool("plain_fresh", {})
        assert grown.content[0].text == "grown fresh"  # type: ignore[union-attr]
        heard: list[tuple[float, float | None, str | None]] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            heard.append((done, total, message))

        result = await caller.call_tool("plain_steps", {"count": 3}, progress_callback=progress)
        assert result.content[0].text == "done"  # type: ignore[union-attr]
        assert heard == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_upstreams_of_a_runner_served_over_stdio(tmp_path: Path) -> None:
    """`serve --transport stdio`: the runner is itself a stdio server, and still starts and serves its upstreams."""
    from mcp import Client, StdioServerParameters

    path = tmp_path / "m.yaml"
    path.write_text("name: m\nupstreams:\n" + plain_entry())
    command = [sys.executable, "-m", "runner.cli", "serve", str(path), "--transport", "stdio"]
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=str(tmp_path), env=dict(os.environ))
    async with Client(params) as client:
        with anyio.fail_after(30):  # the upstream connects in the background
            while "plain_add" not in {t.name for t in (await client.list_tools()).tools}:
                await anyio.sleep(0.05)
        assert (await client.call_tool("plain_add", {"a": 4, "b": 5})).structured_content == {"total": 9}


async def test_two_upstreams_serving_one_name_serve_it_once_from_the_first(tmp_path: Path) -> None:
    text = (
        "name: front\ntools:\n  - function: local_tools:hello\n    name: add\nupstreams:\n"
        + plain_entry("a", "first", "  prefix: ''\n")
        + plain_entry("b", "second", "  prefix: ''\n")
    )
    runner = front(tmp_path, text).start()
    try:
        await wait_for_health(runner.health_url, connected("a", "b"), "both upstreams connected")
        async with mcp_client(runner.url) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert names.count("whoami") == 1 and len(names) == len(set(names))
            mark = await client.call_tool("whoami", {})
            assert mark.content[0].text.endswith(" first")  # type: ignore[union-attr]  # the first entry's
            local = await client.call_tool("add", {})  # the manifest's own `add` wins over the upstreams'
            assert local.content[0].text == "hi"  # type: ignore[union-attr]
            assert [t.name for t in (await client.list_tools()).tools] == names  # asked again: said once
        logged = runner.logged()
        assert "upstream 'b' serves 'whoami', which is served already by upstream 'a'" in logged
        assert "upstream 'a' serves 'add', which is served already by the manifest's tools" in logged
        assert logged.count("upstream 'a' serves 'add'") == 1  # once, however often the list is asked for
    finally:
        runner.stop()


class Hangup:
    """A TCP listener on loopback that accepts `times` connections, closing each at once, then stops listening."""

    def __init__(self, port: int, times: int) -> None:
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", port))
        self.thread = threading.Thread(target=self._serve, args=(times,), daemon=True)
        self.thread.start()

    def _serve(self, times: int) -> None:
        with self.sock:
            for _ in range(times):
                try:
                    conn, _ = self.sock.accept()
                except OSError:  # closed by stop()
                    return
                conn.close()

    def stop(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed already: it took its connections
            pass
        self.sock.close()
        self.thread.join(timeout=10)


async def test_the_log_says_each_change_of_an_upstreams_kind_of_failure_once(tmp_path: Path) -> None:
    """Two retries fail one way (hung up), then another (refused): each kind is logged once, in order."""
    port = free_port()
    hangup = Hangup(port, times=2)  # the first two connects are hung up on, then nothing listens
    runner = front(tmp_path, f"name: front\nupstreams:\n  - name: calc\n    url: http://127.0.0.1:{port}/mcp\n")
    try:
        runner.start()
        # ConnectError comes after both hung-up retries (logged before /healthz shows it).
        await wait_for_health(runner.health_url, lambda h: h["upstreams"]["calc"]["error"] == "ConnectError", "down")
        lines = [line for line in runner.logged().splitlines() if "upstream 'calc': down" in line]
        assert len(lines) == 2, lines
        assert "(ReadError" in lines[0] or "(RemoteProtocolError" in lines[0], lines
        assert "(ConnectError" in lines[1], lines
    finally:
        runner.stop()
        hangup.stop()


@contextmanager
def plain_over_http() -> Iterator[str]:
    """The plain-SDK upstream over streamable HTTP (it answers calls with SSE, as the SDK's servers do)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(PLAIN), "--http", str(port)], env={**os.environ, "PLAIN_MARK": "http"})
    try:
        wait_for_port(port, proc=proc)  # type: ignore[arg-type]
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def plain_http() -> Iterator[str]:
    """One plain-SDK upstream over HTTP for the module, mounted by runners of their own: what a test reads of its
    state is per session (the sessions it expired) or a difference (the connections it counted)."""
    with plain_over_http() as url:
        yield url


@pytest.fixture(scope="module")
def http_front(tmp_path_factory: pytest.TempPathFactory, plain_http: str) -> Iterator[RunnerProcess]:
    """A runner mounting `plain_http` as it is, for the tests that leave it as they found it."""
    text = f"name: front\nupstreams:\n  - name: plain\n    url: {plain_http}\n"
    runner = front(tmp_path_factory.mktemp("http"), text).start()
    yield runner
    runner.stop()


async def test_calls_to_an_http_upstream_reuse_one_tcp_connection(http_front: RunnerProcess) -> None:
    """Each call used to open a new TCP connection (the SSE response was closed before its end): ~2 ms a call."""
    runner = http_front
    await wait_for_health(runner.health_url, connected("plain"), "the HTTP upstream connected")
    async with mcp_client(runner.url) as client:
        before = (await client.call_tool("plain_ports", {})).structured_content
        for i in range(20):
            assert (await client.call_tool("plain_add", {"a": i, "b": 1})).structured_content == {"total": i + 1}
        after = (await client.call_tool("plain_ports", {})).structured_content
    assert before is not None and after is not None
    # The requests (calls, pings) come on the connections already open: none new for 20 calls. A failure names
    # each new connection's first request, its user agent (the runner's calls send none) and when it came.
    assert after["result"] == before["result"], {"new": after["result"][len(before["result"]) :], **before}


async def test_an_http_upstream_behind_a_redirect_that_forgets_the_session_or_answers_too_much(
    tmp_path: Path, plain_http: str
) -> None:
    """Calls go where the upstream answers (`/mcp/` redirects to `/mcp`, 307, same origin: the SDK's client follows
    it, and so do the calls); a 404 on the session (the upstream restarted, or expired it) reconnects and the call is
    asked again on the new session; an answer larger than the cap is a tool error saying so, and the next call goes
    on. One server for the three: each start costs seconds."""
    runner = front(tmp_path, f"name: front\nupstreams:\n  - name: plain\n    url: {plain_http}/\n").start()
    try:
        await wait_for_health(runner.health_url, connected("plain"), "the HTTP upstream connected")
        async with mcp_client(runner.url) as client:
            assert (await client.call_tool("plain_expire", {})).content[0].text == "expired"  # type: ignore[union-attr]
            again = await client.call_tool("plain_add", {"a": 1, "b": 2})
            assert again.structured_content == {"total": 3}, again
            prompt = await client.get_prompt("plain_greet", {"name": "Ann"})  # prompts and reads take the same path
            assert prompt.messages[0].content.text == "Say hello to Ann"  # type: ignore[union-attr]
            item = await client.read_resource("plain://items/7")
            assert item.contents[0].text == "item 7"  # type: ignore[union-attr]
            assert healthz(runner.health_url)["upstreams"]["plain"]["connects"] == 2
            huge = await client.call_tool("plain_big", {"size": 4 * 1024 * 1024 + 1024})
            assert huge.is_error and "larger than 4 MiB" in huge.content[0].text, huge  # type: ignore[union-attr]
            after = await client.call_tool("plain_add", {"a": 2, "b": 2})
            assert after.structured_content == {"total": 4}, after
    finally:
        runner.stop()


async def test_an_http_upstreams_logs_and_questions_during_a_call_reach_that_calls_client_only(
    http_front: RunnerProcess,
) -> None:
    """Two clients call at once; each hears its own call's log line, question and sampling request, not the other's."""
    runner = http_front
    await wait_for_health(runner.health_url, connected("plain"), "the HTTP upstream connected")
    heard: dict[str, list[str]] = {"ann": [], "bob": []}
    asked = {"ann": anyio.Event(), "bob": anyio.Event()}

    def callbacks(me: str) -> dict[str, Any]:
        import mcp_types as types

        async def on_log(params: types.LoggingMessageNotificationParams) -> None:
            heard[me].append(f"log {params.data}")

        async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            heard[me].append(f"asked {params.message}")
            asked[me].set()
            with anyio.fail_after(30):  # both calls are in flight, each waiting on its own client
                await asked["bob" if me == "ann" else "ann"].wait()
            return types.ElicitResult(action="accept", content={"answer": f"{me}'s answer"})

        async def on_sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
            heard[me].append(f"sampled {params.messages[0].content.text}")  # type: ignore[union-attr]
            return types.CreateMessageResult(
                role="assistant", content=types.TextContent(type="text", text=f"{me}-word"), model="m"
            )

        return {"logging_callback": on_log, "elicitation_callback": on_elicit, "sampling_callback": on_sample}

    results: dict[str, str] = {}

    async def call(me: str) -> None:
        async with mcp_client(runner.url, mode="legacy", **callbacks(me)) as client:
            result = await client.call_tool("plain_chatty", {"topic": me})
            assert not result.is_error, result
            results[me] = result.content[0].text  # type: ignore[union-attr]

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call, "ann")
        tasks.start_soon(call, "bob")
    for me in ("ann", "bob"):
        assert results[me] == f"accept {me}'s answer {me}-word"
        assert heard[me] == [f"log thinking about {me}", f"asked what about {me}?", f"sampled a word for {me}"]


async def test_without_httptools_calls_to_an_http_upstream_go_through_the_sdks_client(
    tmp_path: Path, plain_http: str
) -> None:
    """On a platform without an httptools build the runner serves on h11, and its calls to an HTTP upstream take the
    SDK's client instead of the lean path (runner/upstreams/wire.py parses with httptools): slower, never broken."""
    shadow = tmp_path / "shadow" / "httptools"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no httptools build for this platform')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}
    runner = front(tmp_path, f"name: front\nupstreams:\n  - name: plain\n    url: {plain_http}\n", env=env).start()
    try:
        await wait_for_health(runner.health_url, connected("plain"), "the HTTP upstream connected")
        async with mcp_client(runner.url) as client:
            result = await client.call_tool("plain_add", {"a": 2, "b": 3})
            assert not result.is_error and result.structured_content == {"total": 5}, result
        assert "calls go through the SDK's client (httptools cannot be imported)" in runner.logged()
    finally:
        runner.stop()


FLAKY = """
import os, pathlib, sys
starts = pathlib.Path(__file__).with_name("starts")
n = int(starts.read_text()) + 1 if starts.exists() else 1
starts.write_text(str(n))
if n <= 2:
    import no_such_module_for_this_test  # the same failure at the first two starts
if n == 3:
    raise ValueError(f"another failure, at start {n}")
os.execv(sys.executable, [sys.executable, PLAIN])
"""


async def test_a_stdio_upstream_that_fails_to_start_logs_each_failure_in_full_once(tmp_path: Path) -> None:
    """Its stderr (a traceback) used to be logged at each retry: a wrong `command:` filled the log. Now the first
    failure is logged in full, the same failure again as one short line (attempt, next retry), a different one in
    full again, and the recovery once. The command fails twice one way, once another, then starts the upstream."""
    folder = tmp_path / "flaky"
    folder.mkdir()
    (folder / "flaky.py").write_text(FLAKY.replace("PLAIN", repr(str(PLAIN))))
    entry = f"  - name: flaky\n    command: [{sys.executable}, {folder / 'flaky.py'}]\n"
    runner = front(tmp_path, "name: front\nupstreams:\n" + entry).start()
    try:
        await wait_for_health(runner.health_url, connected("flaky"), "the upstream started at its fourth start")
        log = [line.partition(" runner: ")[2] for line in runner.logged().splitlines() if " runner: " in line]
    finally:
        runner.stop()
    said = [line for line in log if line.startswith("upstream 'flaky'")]
    first = "upstream 'flaky' stderr: \"ModuleNotFoundError: No module named 'no_such_module_for_this_test'\""
    second = "upstream 'flaky' stderr: 'ValueError: another failure, at start 3'"
    assert said.count(first) == 1 and said.count(second) == 1, said
    tracebacks = [line for line in said if line == "upstream 'flaky' stderr: 'Traceback (most recent call last):'"]
    assert len(tracebacks) == 2, said
    down = "upstream 'flaky': down (MCPError: Connection closed)"
    assert [line for line in said if not line.startswith("upstream 'flaky' stderr: ")] == [
        f"{down}; attempt 1, next retry in 0.5 s",
        "upstream 'flaky': still failing the same way (attempt 2); next retry in 1 s",
        f"{down}; attempt 3, next retry in 2 s",
        "upstream 'flaky': connected (after 3 failed attempts)",
    ], said
    assert said.index(first) < said.index(f"{down}; attempt 1, next retry in 0.5 s") < said.index(second)

"""Multi-round calls across replicas: `server.request_state_keys` (docs/deployment.md).

Two `mcp-runner serve` replicas behind a real nginx (the configuration `mcp-runner nginx` writes,
and a plain round-robin one), a real SDK client speaking 2026-07-28 and the fixture tool
tests/apps/ask_user.py, which asks the user twice: every call is three requests, and nginx's access
log (`Nginx.routed`) shows each retry reaching the other replica. With shared keys every call
succeeds; without, every one fails. Tampered state, another deployment's state and expired state
are refused with the SDK's error; the keys rotate in three phases, reloaded replica by replica,
while a client keeps calling.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.server.mcpserver import AESGCMRequestStateCodec
from mcp.shared.exceptions import MCPError

from tests.helpers import ROOT, JWKSServer, RunnerProcess, edit_and_wait, loopback_get, mcp_client, run_main
from tests.realredis import RedisServer
from tests.scale import Cluster, Nginx

pytestmark = pytest.mark.anyio

FILES = {"ask_user.py": (ROOT / "tests" / "apps" / "ask_user.py").read_text()}
KEY = secrets.token_hex(32)  # the shared key of the module's clusters
TTL = 300


def manifest(keys: str | None, name: str = "ask across replicas") -> str:
    """The fixture's manifest; `keys` is the YAML list of `server.request_state_keys`, or None for none.

    Without keys it is a manifest main could serve too: the no-keys tests run unchanged on it.
    """
    server = f"server:\n  request_state_keys: {keys}\n  request_state_ttl: {TTL}\n" if keys is not None else ""
    return f"""\
name: {name}
signin:
  app_id: ${{MCP_APP_ID}}
  base_url: ${{JWKS_BASE}}
  resource: ${{MCP_APP_RESOURCE}}
{server}tools:
  - function: ask_user:greet
"""


SHARED = manifest('["${STATE_KEY}"]')
CALLS = itertools.count(1)  # `call` arguments, unique in the module: the access log tells calls apart by them


async def answer(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
    """The user: gives the name Ann, and confirms."""
    schema = getattr(params, "requested_schema", {}) or {}
    wanted = {"name": "Ann"} if "name" in schema.get("properties", {}) else {"ok": True}
    return types.ElicitResult(action="accept", content=wanted)


@asynccontextmanager
async def client(cluster: Cluster, url: str | None = None) -> AsyncIterator[Client]:
    """A 2026-07-28 SDK client of the cluster (or of `url`, a server that takes the cluster's tokens)."""
    async with mcp_client(url or cluster.url, cluster.issuer().token(), elicitation_callback=answer) as connected:
        yield connected


def start(folder: Path, jwks: JWKSServer, text: str, **options: Any) -> Cluster:
    return Cluster(folder, jwks, manifest=text, files=FILES, env={"STATE_KEY": KEY}, routed=True, **options).start()


@pytest.fixture(scope="module", params=["generated", "plain"])
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer
) -> Iterator[Cluster]:
    """Two replicas with one key, behind the nginx `mcp-runner nginx` writes, or a plain round-robin one."""
    running = start(tmp_path_factory.mktemp("shared"), jwks, SHARED, plain=request.param == "plain")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def unshared(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[Cluster]:
    """Two replicas without keys: what main did for everyone."""
    running = start(tmp_path_factory.mktemp("unshared"), jwks, manifest(None), plain=True)
    yield running
    running.stop()


def rounds(nginx: Nginx, calls: list[int], least: int = 0) -> dict[int, list[tuple[str, bool]]]:
    """Per call: the replica that answered each of its requests, and whether it carried requestState.

    nginx writes a request's access-log line after its answer, so the client can have the last answer
    before its line is written: with `least`, read again (bounded) until every call has that many lines.
    """
    deadline = time.monotonic() + 10
    while True:
        seen: dict[int, list[tuple[str, bool]]] = defaultdict(list)
        for replica, body in nginx.requests():
            params = body.get("params") or {}
            if body.get("method") == "tools/call" and params.get("name") == "greet":
                call = (params.get("arguments") or {}).get("call")
                if call in calls:
                    seen[call].append((replica, params.get("requestState") is not None))
        if all(len(seen.get(c, [])) >= least for c in calls) or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def assert_every_retry_crossed(nginx: Nginx, calls: list[int]) -> None:
    for call, requests in rounds(nginx, calls, least=3).items():
        assert [state for _, state in requests] == [False, True, True], (call, requests)  # a call, then two retries
        replicas = [replica for replica, _ in requests]
        assert all(a != b for a, b in itertools.pairwise(replicas)), f"call {call}: a retry stayed: {replicas}"


async def test_every_retry_on_the_other_replica_succeeds_with_shared_keys(shared: Cluster) -> None:
    calls = [next(CALLS) for _ in range(10)]
    answers = []
    async with client(shared) as connected:
        for call in calls:
            result = await connected.call_tool("greet", {"call": call})
            assert not result.is_error, result
            answers.append(str((result.structured_content or {})["result"]))
    assert [a.rpartition(" from ")[0] for a in answers] == [f"hello Ann #{c}" for c in calls]
    assert {a.rpartition(" from ")[2] for a in answers} == {"r1", "r2"}, answers
    assert shared.nginx is not None
    assert sorted(rounds(shared.nginx, calls, least=3)) == calls
    assert_every_retry_crossed(shared.nginx, calls)


@pytest.mark.parametrize("shared", ["generated"], indirect=True)  # a plain round-robin nginx has no sticky sessions
async def test_a_handshake_era_client_is_asked_on_its_sticky_session(shared: Cluster) -> None:
    """The same tool for a handshake-era client: real elicitation requests on its session, no requestState."""
    call = next(CALLS)
    async with mcp_client(shared.url, shared.issuer().token(), mode="legacy", elicitation_callback=answer) as legacy:
        result = await legacy.call_tool("greet", {"call": call})
    assert not result.is_error, result
    assert str((result.structured_content or {})["result"]).startswith(f"hello Ann #{call} from r")


async def test_without_keys_every_retry_on_the_other_replica_is_refused(unshared: Cluster) -> None:
    """What main did: each replica seals with a key of its own, so all 10 calls fail."""
    calls = [next(CALLS) for _ in range(10)]
    refused = []
    async with client(unshared) as connected:
        for call in calls:
            with pytest.raises(MCPError) as failed:
                await connected.call_tool("greet", {"call": call})
            refused.append((failed.value.error.code, failed.value.error.message))
    assert refused == [(types.INVALID_PARAMS, "Invalid or expired requestState")] * 10
    assert unshared.nginx is not None
    for call, requests in rounds(unshared.nginx, calls, least=2).items():  # the first retry went to the other replica
        assert len(requests) == 2 and requests[0][0] != requests[1][0], (call, requests)


# -- what is refused ---------------------------------------------------------------------------------

REFUSED = (types.INVALID_PARAMS, "Invalid or expired requestState")
NAME_GIVEN = "Ann"


async def first_round(connected: Client, call: int) -> tuple[types.InputResponses, str]:
    """The call's first round, driven by hand: the user's answer to it, and the state to send it with."""
    asked = await connected.session.call_tool("greet", {"call": call}, allow_input_required=True)
    assert isinstance(asked, types.InputRequiredResult) and asked.request_state and asked.input_requests, asked
    given = types.ElicitResult(action="accept", content={"name": NAME_GIVEN})
    return {key: given for key in asked.input_requests}, asked.request_state


async def second_round(connected: Client, call: int, responses: types.InputResponses, state: str) -> Any:
    """The retry with `state`: the next question (an InputRequiredResult) when the state is accepted."""
    return await connected.session.call_tool(
        "greet", {"call": call}, input_responses=responses, request_state=state, allow_input_required=True
    )


async def assert_refused(connected: Client, call: int, responses: types.InputResponses, state: str) -> None:
    with pytest.raises(MCPError) as refused:
        await second_round(connected, call, responses, state)
    assert (refused.value.error.code, refused.value.error.message) == REFUSED


async def assert_accepted(connected: Client, call: int, responses: types.InputResponses, state: str) -> None:
    answered = await second_round(connected, call, responses, state)
    assert isinstance(answered, types.InputRequiredResult), answered  # the next question: the state was good
    asked = next(iter((answered.input_requests or {}).values()))
    assert asked.params.message == f"Greet {NAME_GIVEN}?", asked


def logged_reasons(cluster: Cluster) -> str:
    return "".join(replica.logged() for replica in cluster.replicas.values())


async def test_tampered_state_and_state_for_other_arguments_are_refused(shared: Cluster) -> None:
    async with client(shared) as connected:
        call = next(CALLS)
        responses, state = await first_round(connected, call)
        middle = len(state) // 2
        tampered = state[:middle] + ("A" if state[middle] != "A" else "B") + state[middle + 1 :]
        await assert_refused(connected, call, responses, tampered)
        await assert_refused(connected, call + 100_000, responses, state)  # the state of another call's arguments
        await assert_accepted(connected, call, responses, state)  # and the state itself, on whichever replica


@pytest.mark.parametrize("shared", ["generated"], indirect=True)  # it starts two more servers: once is enough
async def test_another_deployments_state_is_refused(shared: Cluster) -> None:
    """State sealed by a server with other keys (same name), or with the same keys and another name."""
    others = {
        "other-keys": manifest('["${OTHER_KEY}"]'),
        "other-name": manifest('["${STATE_KEY}"]', name="another deployment"),
    }
    env = {
        "MCP_APP_ID": shared.jwks.app_id,
        "JWKS_BASE": shared.jwks.base_url,
        "MCP_APP_RESOURCE": shared.url,  # the cluster's audience: the same tokens work on both
        "STATE_KEY": KEY,
        "OTHER_KEY": secrets.token_hex(32),
    }
    servers = []
    for other, text in others.items():
        (shared.folder / f"{other}.yaml").write_text(text)
        servers.append(RunnerProcess(shared.folder / f"{other}.yaml", extra=("--no-reload",), env=env))
    try:
        for server in servers:
            server.start()
        for server in servers:
            call = next(CALLS)
            async with client(shared, server.url) as elsewhere:
                responses, state = await first_round(elsewhere, call)
                await assert_accepted(elsewhere, call, responses, state)  # good where it was made
            async with client(shared) as connected:
                await assert_refused(connected, call, responses, state)
    finally:
        for server in servers:
            server.stop()
    reasons = logged_reasons(shared)
    assert "requestState rejected on tools/call: unknown key" in reasons  # other keys
    assert "requestState rejected on tools/call: audience" in reasons  # same keys, another name


async def test_expired_state_is_refused(shared: Cluster) -> None:
    """The state lives `request_state_ttl`: resealed (the test holds the key) with its expiry passed, it is refused."""
    codec = AESGCMRequestStateCodec([KEY])
    async with client(shared) as connected:
        call = next(CALLS)
        responses, state = await first_round(connected, call)
        claims = json.loads(codec.unseal(state))
        assert claims["exp"] - claims["iat"] == TTL  # server.request_state_ttl
        await assert_accepted(connected, call, responses, codec.seal(json.dumps(claims).encode()))
        claims["exp"] = time.time() - 1
        await assert_refused(connected, call, responses, codec.seal(json.dumps(claims).encode()))
    assert "requestState rejected on tools/call: expired" in logged_reasons(shared)


# -- rotation, and reloads ---------------------------------------------------------------------------

ROTATION = [
    '["${STATE_KEY_OLD}", "${STATE_KEY_NEW}"]',  # 1. old seals, both unseal
    '["${STATE_KEY_NEW}", "${STATE_KEY_OLD}"]',  # 2. new seals, both unseal
    '["${STATE_KEY_NEW}"]',  # 3. once no state sealed with the old key is in flight
]


async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("apply", ["reload", "restart"])
async def test_keys_rotate_in_three_phases_replica_by_replica_with_no_failed_call(
    apply: str, tmp_path: Path, jwks: JWKSServer
) -> None:
    """Each replica serves its own manifest: a phase reaches r1, then r2, while a client calls.

    Applied by a reload (the replica keeps running), or by a restart (SIGTERM, then a new process
    on the same port: meanwhile nginx sends everything to the other replica).
    """
    keys = {"STATE_KEY_OLD": secrets.token_hex(32), "STATE_KEY_NEW": secrets.token_hex(32)}
    cluster = Cluster(
        tmp_path, jwks, manifest=manifest('["${STATE_KEY_OLD}"]'), files=FILES, env=keys, own_manifests=True
    )
    cluster.routed = True
    cluster.start()
    outcomes: list[tuple[int, str]] = []  # (phase, "ok" or what went wrong)
    phase = 0
    stop = anyio.Event()

    async def keep_calling() -> None:
        async with client(cluster) as connected:
            while not stop.is_set():
                call = next(CALLS)
                try:
                    result = await connected.call_tool("greet", {"call": call})
                    text = str((result.structured_content or {}).get("result"))
                    good = not result.is_error and text.startswith(f"hello Ann #{call} from ")
                    outcomes.append((phase, "ok" if good else f"call {call}: {result}"))
                except MCPError as exc:
                    outcomes.append((phase, f"call {call}: {exc}"))

    async def more_calls(count: int, what: str) -> None:
        seen = len(outcomes)
        await until(lambda: len(outcomes) >= seen + count, what)

    try:
        async with client(cluster) as connected:
            old_call = next(CALLS)
            old_responses, old_state = await first_round(connected, old_call)  # sealed with the old key
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(keep_calling)
            await more_calls(3, "calls before the rotation")
            for phase_number, keys_now in enumerate(ROTATION, start=1):
                phase = phase_number
                for replica, process in list(cluster.replicas.items()):
                    text = manifest(keys_now)
                    if apply == "reload":
                        health = await edit_and_wait(cluster.folder, process.health_url, f"{replica}.yaml", text)
                        assert health["last_reload"]["result"] == "ok", health
                    else:
                        await anyio.to_thread.run_sync(process.stop)
                        cluster.manifest_of(replica).write_text(text)
                        await anyio.to_thread.run_sync(cluster.restart, replica)
                    # Calls go on while one replica is in the new phase and the other is not; the last
                    # replica's calls also see every call begun before the phase out (the TTL's role).
                    await more_calls(3, f"calls with {replica} in phase {phase}")
            stop.set()
        failed = [outcome for outcome in outcomes if outcome[1] != "ok"]
        assert failed == [], failed
        assert {p for p, _ in outcomes} == {0, 1, 2, 3}
        assert cluster.nginx is not None
        made = rounds(cluster.nginx, list(range(old_call + 1, next(CALLS))))
        crossed = [call for call, requests in made.items() if requests[0][0] != requests[1][0]]
        assert len(made) == len(outcomes), made
        # While a replica restarts, nginx sends every request to the other one: fewer retries cross then.
        assert len(crossed) >= (len(made) // 2 if apply == "reload" else 1), f"few retries crossed: {made}"
        async with client(cluster) as connected:  # the reloads applied the keys: the old one unseals no more
            await assert_refused(connected, old_call, old_responses, old_state)
        assert "requestState rejected on tools/call: unknown key" in logged_reasons(cluster)
        every_log = "".join(log.read_text() for log in tmp_path.glob("*.log"))  # restarted ones' too
        assert not any(key in every_log for key in keys.values())
    finally:
        cluster.stop()


async def test_a_reload_that_keeps_the_keys_keeps_a_call_between_rounds(tmp_path: Path, jwks: JWKSServer) -> None:
    """Without keys too: the process's own key outlives an unrelated edit, so the next round is accepted."""
    cluster = Cluster(tmp_path, jwks, count=1, manifest=manifest(None), files=FILES, own_manifests=True).start()
    try:
        process = cluster.replicas["r1"]
        async with client(cluster, process.url) as connected:
            call = next(CALLS)
            responses, state = await first_round(connected, call)
            edited = manifest(None).replace("ask_user:greet", "ask_user:greet\n    title: Greet")
            health = await edit_and_wait(cluster.folder, process.health_url, "r1.yaml", edited)
            assert health["last_reload"]["result"] == "ok", health
            await assert_accepted(connected, call, responses, state)
    finally:
        cluster.stop()


# -- the start-up block, and secrecy -----------------------------------------------------------------

WARNING = "warning:   multi-round calls (tools that ask the user) fail when a 2026-07-28 client's retry reaches"
PLAIN_MANIFEST = """\
name: lone
server:
{keys}
tools:
  - function: ask_user:greet
"""


def test_a_replica_without_keys_warns_and_keys_are_never_shown(tmp_path: Path) -> None:
    (tmp_path / "ask_user.py").write_text(FILES["ask_user.py"])
    keys = {"STATE_KEY": secrets.token_hex(32), "STATE_KEY_NEW": "k" * 40}
    (tmp_path / "none.yaml").write_text(PLAIN_MANIFEST.format(keys="  request_state_ttl: 60"))
    (tmp_path / "keys.yaml").write_text(
        PLAIN_MANIFEST.format(keys='  request_state_keys: ["${STATE_KEY}", "${STATE_KEY_NEW}"]')
    )
    redis = RedisServer().start()
    servers = {
        "replica id": RunnerProcess(tmp_path / "none.yaml", extra=("--no-reload", "--replica-id", "r7")),
        "bus": RunnerProcess(tmp_path / "none.yaml", extra=("--no-reload", "--bus", redis.url)),
        "alone": RunnerProcess(tmp_path / "none.yaml", extra=("--no-reload",)),
        "stateless": RunnerProcess(tmp_path / "none.yaml", extra=("--no-reload", "--stateless")),
        "keys": RunnerProcess(tmp_path / "keys.yaml", extra=("--no-reload", "--replica-id", "r8"), env=keys),
    }
    try:
        with ThreadPoolExecutor() as starting:
            list(starting.map(RunnerProcess.start, servers.values()))
        health = loopback_get(servers["keys"].health_url, timeout=10).text
        logs = {what: server.stop() for what, server in servers.items()}
    finally:
        for server in servers.values():
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
        redis.stop()
    assert WARNING in logs["replica id"] and WARNING in logs["bus"] and WARNING in logs["stateless"], logs
    assert WARNING not in logs["alone"] and WARNING not in logs["keys"], logs
    assert "r8, session ids r8.<id>, drain 10 s on SIGTERM, requestState keys: 2" in logs["keys"]
    checked = run_main("check", str(tmp_path / "keys.yaml"), env=keys)
    assert checked.returncode == 0, checked.stderr
    shown = logs["keys"] + health + checked.stdout + checked.stderr
    assert not any(key in shown for key in keys.values())


def test_a_short_or_repeated_key_is_refused_by_position_never_echoed(tmp_path: Path) -> None:
    (tmp_path / "ask_user.py").write_text(FILES["ask_user.py"])
    short, good = "not-32-bytes-of-secret", secrets.token_hex(32)
    env = {"SHORT_KEY": short, "GOOD_KEY": good}
    cases = {
        '["${GOOD_KEY}", "${SHORT_KEY}"]': "server.request_state_keys.1: a key of 22 bytes: each key needs at least 32",
        '["${GOOD_KEY}", "${GOOD_KEY}"]': "server.request_state_keys: key 1 repeats an earlier key",
        "[]": "server.request_state_keys: List should have at least 1 item",
    }
    for keys, problem in cases.items():
        (tmp_path / "bad.yaml").write_text(PLAIN_MANIFEST.format(keys=f"  request_state_keys: {keys}"))
        checked = run_main("check", str(tmp_path / "bad.yaml"), env=env)
        assert checked.returncode != 0 and problem in checked.stderr, checked.stderr
        assert short not in checked.stderr and good not in checked.stderr

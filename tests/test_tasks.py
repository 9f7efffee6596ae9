"""Tools as tasks (runner/tasks, docs/tasks.md) on a real server, real HTTP, real RS256 tokens.

Who may read a task, the per-client and total bounds, the TTL, cancellation, and a task that keeps
running across a reload (on its old code) and across its client's disconnect.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Issuer, JWKSServer, RunnerProcess, edit_and_wait
from taskclient import JOBS, RPCError, TaskClient, frame, manifest, wait_for

pytestmark = pytest.mark.anyio
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, jwks: JWKSServer) -> Iterator[tuple[RunnerProcess, Issuer, Path]]:
    folder = tmp_path_factory.mktemp("tasks")
    runner, issuer = start(folder, jwks)
    yield runner, issuer, folder
    runner.stop()


def start(folder: Path, jwks: JWKSServer, server: str = "") -> tuple[RunnerProcess, Issuer]:
    """The tasks manifest served from `folder` (with these `server:` lines), and an issuer of its tokens."""
    runner = RunnerProcess(manifest(folder, jwks.base_url, server=server))
    runner.env = {"MCP_APP_ID": jwks.app_id, "MCP_APP_RESOURCE": runner.url}
    runner.start()
    return runner, Issuer(base_url=jwks.base_url, resource=runner.url, key=jwks.keys[0])


def client(runner: RunnerProcess, issuer: Issuer, sub: str = "user-1", client_id: str = "client-1") -> TaskClient:
    return TaskClient(runner.url, issuer.token(sub=sub, client_id=client_id))


def started(folder: Path, caller: TaskClient, name: str) -> str:
    created = caller.call("gated", {"name": name})
    assert created["resultType"] == "task" and created["status"] == "working", created
    wait_for(folder / "gates" / f"{name}.started")
    return str(created["taskId"])


def gone(caller: TaskClient, task_id: str, timeout: float = 30) -> RPCError:
    """Poll tasks/get (bounded) until the task is forgotten; the refusal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            caller.get(task_id)
        except RPCError as exc:
            return exc
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} was still kept after {timeout:g} s")


def test_a_task_is_read_only_by_the_principal_that_created_it(served: tuple[RunnerProcess, Issuer, Path]) -> None:
    runner, issuer, folder = served
    owner = client(runner, issuer, client_id="owner-app")
    task_id = started(folder, owner, "owned")
    others = [
        client(runner, issuer, client_id="other-app"),  # same user, another client id
        client(runner, issuer, sub="user-2", client_id="owner-app"),  # another user, same client id
    ]
    for other in others:
        answer = {"input-1": {"action": "accept"}}
        for method, params in (("tasks/get", {}), ("tasks/cancel", {}), ("tasks/update", {"inputResponses": answer})):
            with pytest.raises(RPCError) as refused:
                other.request(method, {"taskId": task_id, **params})
            assert refused.value.code == -32602 and "Unknown task" in str(refused.value)
    assert owner.get(task_id)["status"] == "working"  # the others' cancel did nothing
    (folder / "gates" / "owned.release").touch()
    done = owner.until(task_id, {"completed", "failed", "cancelled"})
    assert done["status"] == "completed" and done["result"]["content"][0]["text"].endswith(":owned"), done


def test_cancel_stops_the_body_and_the_task_reads_cancelled(served: tuple[RunnerProcess, Issuer, Path]) -> None:
    runner, issuer, folder = served
    caller = client(runner, issuer, client_id="canceller")
    task_id = started(folder, caller, "cancelled")
    ack = caller.cancel(task_id)
    assert ack["resultType"] == "complete" and not {"taskId", "status", "result", "error"} & set(ack), ack
    task = caller.until(task_id, {"completed", "failed", "cancelled"})
    assert task["status"] == "cancelled" and "result" not in task, task
    (folder / "gates" / "cancelled.release").touch()  # too late: the body was cancelled at its await
    assert not (folder / "gates" / "cancelled.finished").exists()
    assert caller.cancel(task_id)["resultType"] == "complete"  # on a terminal task: the same ack


def test_a_task_outlives_its_clients_disconnect(served: tuple[RunnerProcess, Issuer, Path]) -> None:
    runner, issuer, folder = served
    first = client(runner, issuer, client_id="leaver")
    task_id = started(folder, first, "orphan")
    first.close()  # the connection that started it is gone
    (folder / "gates" / "orphan.release").touch()
    later = client(runner, issuer, client_id="leaver")  # the same principal, a new connection
    task = later.until(task_id, {"completed", "failed", "cancelled"})
    assert task["status"] == "completed" and task["result"]["content"][0]["text"].endswith(":orphan"), task


async def test_a_task_finishes_on_the_code_it_started_with_across_a_reload(
    served: tuple[RunnerProcess, Issuer, Path],
) -> None:
    runner, issuer, folder = served
    caller = client(runner, issuer, client_id="reloader")
    task_id = started(folder, caller, "old-code")
    health = await edit_and_wait(folder, runner.health_url, "jobs.py", JOBS.replace('VERSION = "v1"', 'VERSION = "v2"'))
    assert health["last_reload"]["result"] == "ok", health
    (folder / "gates" / "old-code.release").touch()
    task = caller.until(task_id, {"completed", "failed", "cancelled"})
    assert task["status"] == "completed" and task["result"]["content"][0]["text"] == "v1:old-code", task
    (folder / "gates" / "new-code.release").touch()
    fresh = caller.until(started(folder, caller, "new-code"), {"completed", "failed", "cancelled"})
    assert fresh["result"]["content"][0]["text"] == "v2:new-code", fresh


def test_without_the_extension_an_optional_task_tool_is_a_plain_call(
    served: tuple[RunnerProcess, Issuer, Path],
) -> None:
    runner, issuer, folder = served
    plain = TaskClient(runner.url, issuer.token(client_id="plain"), tasks=False)
    (folder / "gates").mkdir(exist_ok=True)
    (folder / "gates" / "plain.release").touch()
    result = plain.call("gated", {"name": "plain"})
    assert result["resultType"] == "complete" and "taskId" not in result, result
    with pytest.raises(RPCError) as refused:
        plain.get("any")
    assert refused.value.code == -32021 and refused.value.status == 400
    with pytest.raises(RPCError) as required:  # `task: required`: refused before the function runs
        plain.call("ask", {"question": "?"})
    assert required.value.code == -32021 and required.value.status == 400
    assert required.value.data == {"requiredCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}


def test_tasks_are_bounded_per_client_and_in_all_and_expire(tmp_path: Path, jwks: JWKSServer) -> None:
    bounds = "max_tasks_per_client: 2\nmax_tasks: 3\ntask_ttl: 2\n"
    runner, issuer = start(tmp_path, jwks, server=bounds)
    try:
        first, second, third = (client(runner, issuer, client_id=f"app-{i}") for i in range(3))
        kept = [started(tmp_path, first, "a1"), started(tmp_path, first, "a2")]
        with pytest.raises(RPCError) as over:
            first.call("gated", {"name": "a3"})
        assert over.value.code == -32600 and "server.max_tasks_per_client" in str(over.value)
        assert not (tmp_path / "gates" / "a3.started").exists()  # refused before the function ran
        started(tmp_path, second, "b1")
        with pytest.raises(RPCError) as full:
            third.call("gated", {"name": "c1"})
        assert "server.max_tasks" in str(full.value) and "per_client" not in str(full.value)
        assert first.get(kept[0])["ttlMs"] == 2000
        for name in ("a1", "a2", "b1"):
            (tmp_path / "gates" / f"{name}.release").touch()
        # After the TTL the tasks are forgotten (bounded wait), and their room is free again.
        assert gone(first, kept[0]).code == -32602
        (tmp_path / "gates" / "c2.release").touch()
        assert third.call("gated", {"name": "c2"})["resultType"] == "task"
    finally:
        runner.stop()


def test_a_listen_stream_hears_the_status_of_the_callers_own_tasks(served: tuple[RunnerProcess, Issuer, Path]) -> None:
    runner, issuer, folder = served
    owner = client(runner, issuer, client_id="listener")
    mine = started(folder, owner, "heard")
    other = client(runner, issuer, client_id="not-the-listener")
    theirs = started(folder, other, "unheard")
    frames: list[dict[str, Any]] = []
    listener = client(runner, issuer, client_id="listener")
    listener.listen([mine, theirs, "no-such-task"], frames)
    try:
        ack = frame(frames, lambda f: f.get("method") == "notifications/subscriptions/acknowledged")
        assert ack["params"]["notifications"]["taskIds"] == [mine], ack  # never another principal's task
        for name in ("heard", "unheard"):
            (folder / "gates" / f"{name}.release").touch()
        done = frame(frames, lambda f: f.get("method") == "notifications/tasks" and f["params"]["status"] != "working")
        assert done["params"]["taskId"] == mine and done["params"]["result"]["content"][0]["text"].endswith(":heard")
        assert (
            done["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"]
            == ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"]
        )
        other.until(theirs, {"completed"})
        assert not [f for f in frames if f.get("params", {}).get("taskId") == theirs]
    finally:
        listener.close()
    refused: list[dict[str, Any]] = []
    plain = TaskClient(runner.url, issuer.token(client_id="listener"), tasks=False)
    plain.listen([mine], refused).join(timeout=30)
    assert refused and refused[0]["error"]["code"] == -32021, refused


def test_a_body_is_stopped_when_its_ttl_passes_and_its_slot_is_free_only_then(tmp_path: Path, jwks: JWKSServer) -> None:
    """A body that outlived its TTL kept running while its record (and its place in the bounds) was gone."""
    runner, issuer = start(tmp_path, jwks, server="max_tasks_per_client: 1\ntask_ttl: 1\n")
    try:
        caller = client(runner, issuer, client_id="outlived")
        first = started(tmp_path, caller, "outlived-1")
        wait_for(tmp_path / "gates" / "outlived-1.cancelled")  # the TTL stopped the body (bounded wait)
        assert gone(caller, first).code == -32602
        second = started(tmp_path, caller, "outlived-2")  # the one place is free again: the first body is gone
        wait_for(tmp_path / "gates" / "outlived-2.cancelled")
        assert gone(caller, second).code == -32602
        assert not (tmp_path / "gates" / "outlived-1.finished").exists()
        assert runner.logged().count("outlived server.task_ttl") == 2, runner.logged()
    finally:
        runner.stop()


def test_a_sync_body_past_its_ttl_keeps_its_place_until_its_thread_returns(tmp_path: Path, jwks: JWKSServer) -> None:
    """A thread cannot be cancelled: once its record expired, its place was free while the thread ran on."""
    runner, issuer = start(tmp_path, jwks, server="max_tasks_per_client: 1\ntask_ttl: 1\n")
    try:
        caller = client(runner, issuer, client_id="threads")
        first = caller.call("held", {"name": "thread-1"})["taskId"]
        wait_for(tmp_path / "gates" / "thread-1.started")
        assert gone(caller, first).code == -32602  # the record expired; the thread still runs
        with pytest.raises(RPCError) as over:
            caller.call("held", {"name": "thread-2"})
        assert over.value.code == -32600 and "server.max_tasks_per_client" in str(over.value), over.value
        assert not (tmp_path / "gates" / "thread-2.started").exists()
        (tmp_path / "gates" / "thread-1.release").touch()
        wait_for(tmp_path / "gates" / "thread-1.finished")
        (tmp_path / "gates" / "thread-2.release").touch()
        deadline = time.monotonic() + 30
        while True:  # the place is free once the first body has ended (bounded wait)
            try:
                assert caller.call("held", {"name": "thread-2"})["resultType"] == "task"
                break
            except RPCError as exc:
                assert time.monotonic() < deadline and exc.code == -32600, exc
                time.sleep(0.05)
        wait_for(tmp_path / "gates" / "thread-2.finished")
    finally:
        runner.stop()


def test_tasks_are_bounded_per_subject_over_its_client_ids(tmp_path: Path, jwks: JWKSServer) -> None:
    """One user with many client ids filled the server's tasks and locked every other user out."""
    bounds = "max_tasks_per_client: 2\nmax_tasks_per_subject: 3\nmax_tasks: 6\n"
    runner, issuer = start(tmp_path, jwks, server=bounds)
    try:
        apps = [client(runner, issuer, sub="mallory", client_id=f"m{i}") for i in range(3)]
        names = ["m0-a", "m0-b", "m1-a"]
        for caller, name in zip((apps[0], apps[0], apps[1]), names, strict=True):
            started(tmp_path, caller, name)
        for caller in apps[1:]:  # either client id has room of its own; the subject has none
            with pytest.raises(RPCError) as over:
                caller.call("gated", {"name": "m-over"})
            assert over.value.code == -32600 and "server.max_tasks_per_subject" in str(over.value), over.value
        assert not (tmp_path / "gates" / "m-over.started").exists()
        alice = client(runner, issuer, sub="alice", client_id="m0")  # another user, even with the same client id
        started(tmp_path, alice, "alice")
        for name in [*names, "alice"]:
            (tmp_path / "gates" / f"{name}.release").touch()
    finally:
        runner.stop()


def test_an_oversized_result_settles_the_task_failed(tmp_path: Path, jwks: JWKSServer) -> None:
    """A finished task's result was kept whatever its size, for the whole TTL."""
    runner, issuer = start(tmp_path, jwks, server="max_task_result_bytes: 2000\n")
    try:
        caller = client(runner, issuer, client_id="big")
        small = caller.until(caller.call("big", {"size": 100})["taskId"], {"completed", "failed"})
        assert small["status"] == "completed" and small["result"]["content"][0]["text"] == "x" * 100, small
        large = caller.until(caller.call("big", {"size": 5000})["taskId"], {"completed", "failed"})
        assert large["status"] == "failed" and "result" not in large, large
        assert "server.max_task_result_bytes" in large["error"]["message"], large
        plain = TaskClient(runner.url, issuer.token(client_id="big"), tasks=False)  # a plain call is not bounded
        assert len(plain.call("big", {"size": 5000})["content"][0]["text"]) == 5000
    finally:
        runner.stop()


def test_a_task_does_not_ask_a_client_that_did_not_declare_elicitation(
    served: tuple[RunnerProcess, Issuer, Path],
) -> None:
    """The task turned input_required with an elicitation/create for a client that could not answer it."""
    runner, issuer, _ = served
    mute = TaskClient(runner.url, issuer.token(client_id="no-elicitation"), elicitation=False)
    task = mute.until(mute.call("ask", {"question": "Which word?"})["taskId"], TERMINAL | {"input_required"})
    assert task["status"] == "failed" and "inputRequests" not in task, task
    assert task["error"]["code"] == -32021, task
    assert task["error"]["data"] == {"requiredCapabilities": {"elicitation": {}}}, task
    asking = client(runner, issuer, client_id="with-elicitation")  # the same tool asks a client that can answer
    pending = asking.until(asking.call("ask", {"question": "Which word?"})["taskId"], {"input_required"})
    (key,) = pending["inputRequests"]
    asking.update(pending["taskId"], {key: {"action": "accept", "content": {"word": "yes"}}})
    done = asking.until(pending["taskId"], TERMINAL)  # v1 or v2: the module's reload test may have run first
    assert done["status"] == "completed" and done["result"]["content"][0]["text"].endswith(":yes"), done

"""Tasks across replicas over a real Redis (`server.bus`): two `mcp-runner serve` processes, one manifest.

A task taken by one replica is read, answered and cancelled through the other; a replica that stops
(SIGTERM: drained; SIGKILL: restarted) leaves completed or failed records, never a lost task.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client
from helpers import Issuer, JWKSServer, RunnerProcess, healthz
from realredis import RedisServer
from taskclient import RPCError, TaskClient, frame, manifest, wait_for

from tests.helpers import loopback_get

TERMINAL = {"completed", "failed", "cancelled"}
PREFIX = "mcp-runner:tasks:tasks-test"  # the manifest's name (tests/taskclient.py)


@dataclass
class Replicas:
    folder: Path
    a: RunnerProcess
    b: RunnerProcess
    issuer: Issuer
    bus: str = ""  # the Redis URL both replicas share

    def client(self, replica: RunnerProcess, client_id: str = "client-1") -> TaskClient:
        return TaskClient(replica.url, self.issuer.token(client_id=client_id))


@pytest.fixture
def replicas(tmp_path: Path, jwks: JWKSServer) -> Iterator[Replicas]:
    redis = RedisServer().start()
    path = manifest(tmp_path, jwks.base_url, server="bus: ${TASKS_BUS}\ndrain_timeout: 3\n")
    a = RunnerProcess(path, extra=("--replica-id", "r1"))
    b = RunnerProcess(path, extra=("--replica-id", "r2"))
    for runner in (a, b):  # one audience for both, as behind a balancer
        runner.env = {"TASKS_BUS": redis.url, "MCP_APP_ID": jwks.app_id, "MCP_APP_RESOURCE": a.url}
    try:
        a.start()
        b.start()
        yield Replicas(tmp_path, a, b, Issuer(base_url=jwks.base_url, resource=a.url, key=jwks.keys[0]), redis.url)
    finally:
        for runner in (a, b):
            if runner.proc is not None:
                runner.stop()
        redis.stop()


def started(replicas: Replicas, caller: TaskClient, name: str) -> str:
    created = caller.call("gated", {"name": name})
    assert created["resultType"] == "task", created
    wait_for(replicas.folder / "gates" / f"{name}.started")
    return str(created["taskId"])


def test_a_task_is_read_answered_and_cancelled_through_the_other_replica(replicas: Replicas) -> None:
    on_a, on_b = replicas.client(replicas.a), replicas.client(replicas.b)
    task_id = started(replicas, on_a, "shared")
    assert on_b.get(task_id)["status"] == "working"
    with pytest.raises(RPCError) as refused:  # the owner check holds on every replica
        replicas.client(replicas.b, client_id="someone-else").get(task_id)
    assert refused.value.code == -32602
    assert on_b.cancel(task_id)["resultType"] == "complete"
    assert on_b.until(task_id, TERMINAL)["status"] == "cancelled"
    assert not (replicas.folder / "gates" / "shared.finished").exists()  # the body on A was stopped

    asking = on_a.call("ask", {"question": "Which word?"})["taskId"]
    pending = on_b.until(asking, {"input_required"})
    (key,) = pending["inputRequests"]
    assert pending["inputRequests"][key]["method"] == "elicitation/create"
    on_b.update(asking, {key: {"action": "accept", "content": {"word": "across"}}})
    assert "inputRequests" not in on_b.get(asking)  # the ack waited for the record to show the answer
    done = on_a.until(asking, TERMINAL)
    assert done["status"] == "completed" and done["result"]["content"][0]["text"] == "v1:across", done


def test_sigterm_finishes_or_fails_the_replicas_tasks_within_the_drain(replicas: Replicas) -> None:
    on_a, on_b = replicas.client(replicas.a), replicas.client(replicas.b)
    finishing, stuck = started(replicas, on_a, "finishing"), started(replicas, on_a, "stuck")
    on_a.close()
    assert replicas.a.proc is not None
    replicas.a.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while "2 task(s) running" not in replicas.a.logged():
        assert time.monotonic() < deadline, replicas.a.logged()
        time.sleep(0.02)
    (replicas.folder / "gates" / "finishing.release").touch()
    assert replicas.a.proc.wait(timeout=60) == 0
    assert on_b.get(finishing)["status"] == "completed"
    failed = on_b.get(stuck)
    assert failed["status"] == "failed" and "stopped" in failed["error"]["message"], failed


def test_a_task_outlives_its_replicas_crash_as_a_failed_record(replicas: Replicas) -> None:
    on_a, on_b = replicas.client(replicas.a), replicas.client(replicas.b)
    task_id = started(replicas, on_a, "crashed")
    assert replicas.a.proc is not None
    replicas.a.proc.send_signal(signal.SIGKILL)  # no drain: the body is gone, the record still says working
    replicas.a.proc.wait(timeout=30)
    assert on_b.get(task_id)["status"] == "working"
    replicas.a.start()  # the same replica id: it settles what it ran before
    failed = on_b.until(task_id, TERMINAL)
    assert failed["status"] == "failed" and "restarted" in failed["error"]["message"], failed


def test_a_listener_on_one_replica_hears_a_task_that_runs_on_the_other(replicas: Replicas) -> None:
    on_a, on_b = replicas.client(replicas.a), replicas.client(replicas.b)
    task_id = started(replicas, on_a, "heard-across")
    frames: list[dict[str, Any]] = []
    on_b.listen([task_id], frames)
    try:
        ack = frame(frames, lambda f: f.get("method") == "notifications/subscriptions/acknowledged")
        assert ack["params"]["notifications"]["taskIds"] == [task_id]
        (replicas.folder / "gates" / "heard-across.release").touch()
        done = frame(frames, lambda f: f.get("method") == "notifications/tasks" and f["params"]["status"] != "working")
        assert done["params"]["status"] == "completed", done
        assert done["params"]["result"]["content"][0]["text"] == "v1:heard-across"
    finally:
        on_b.close()


def logged(replica: RunnerProcess, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in replica.logged():
        assert time.monotonic() < deadline, replica.logged()
        time.sleep(0.02)


def test_a_forged_record_or_signal_is_dropped_and_the_endpoint_stays_up(replicas: Replicas) -> None:
    """A record with a field this version did not know (a rolling upgrade), or a garbled signal, escaped the
    tasks task group: every POST /mcp answered 500 from then on while /healthz said 200."""
    on_a = replicas.client(replicas.a)
    task_id = started(replicas, on_a, "forged")
    frames: list[dict[str, Any]] = []
    listener = replicas.client(replicas.a)
    listener.listen([task_id], frames)
    store = redis_client.Redis.from_url(replicas.bus)
    try:
        frame(frames, lambda f: f.get("method") == "notifications/subscriptions/acknowledged")
        key, channel = f"{PREFIX}:task:{task_id}", f"{PREFIX}:signals"
        record = json.loads(store.get(key))  # type: ignore[arg-type]
        store.set(key, json.dumps({**record, "from_a_newer_runner": 1}), keepttl=True)
        store.publish(channel, json.dumps({"taskId": task_id, "changed": True}))
        heard = frame(frames, lambda f: f.get("method") == "notifications/tasks")  # read despite the new field
        assert heard["params"]["taskId"] == task_id and heard["params"]["status"] == "working", heard
        assert on_a.get(task_id)["status"] == "working"
        for garbled in (b"not json", b"[1, 2]", b'{"taskId": 5}', json.dumps({"taskId": task_id, "cancel": "x"})):
            store.publish(channel, garbled)
        store.set(key, json.dumps({"taskId": 1, "status": "evil"}), keepttl=True)
        store.publish(channel, json.dumps({"taskId": task_id, "changed": True}))
        logged(replicas.a, "is unreadable")
        with pytest.raises(RPCError) as unreadable:  # an unreadable record is no task
            on_a.get(task_id)
        assert unreadable.value.code == -32602
        health = loopback_get(replicas.a.health_url, timeout=10)
        assert health.status_code == 200 and health.json()["tasks"] == "ok", health.text
        after = started(replicas, on_a, "after-forgery")  # the endpoint and the tasks machinery are still up
        (replicas.folder / "gates" / "after-forgery.release").touch()
        assert on_a.until(after, TERMINAL)["status"] == "completed"
        assert "dropped a signal" in replicas.a.logged()
        (replicas.folder / "gates" / "forged.release").touch()
    finally:
        listener.close()
        store.close()


def test_a_redis_outage_while_a_task_settles_keeps_the_endpoint_and_the_result(replicas: Replicas) -> None:
    """The settled record's write failed, the error escaped the tasks task group, and the replica's /mcp died."""
    on_a, on_b = replicas.client(replicas.a), replicas.client(replicas.b)
    task_id = started(replicas, on_a, "outage")
    store = redis_client.Redis.from_url(replicas.bus)
    try:
        store.config_set("min-replicas-to-write", 1)  # Redis refuses every write (NOREPLICAS) until reset
        (replicas.folder / "gates" / "outage.release").touch()
        logged(replicas.a, "the task store is unavailable")
        assert on_a.get(task_id)["status"] == "working"  # reads still work; the endpoint is up
        assert healthz(replicas.a.health_url)["tasks"] == "ok"
        store.config_set("min-replicas-to-write", 0)  # Redis is back: the result kept on A is written
        done = on_b.until(task_id, TERMINAL)
        assert done["status"] == "completed" and done["result"]["content"][0]["text"] == "v1:outage", done
    finally:
        store.config_set("min-replicas-to-write", 0)
        store.close()


def test_the_per_subject_bound_holds_across_replicas(tmp_path: Path, jwks: JWKSServer) -> None:
    """One user's client ids, spread over two replicas, share one per-subject count in Redis."""
    redis = RedisServer().start()
    bounds = "bus: ${TASKS_BUS}\nmax_tasks_per_client: 1\nmax_tasks_per_subject: 2\n"
    path = manifest(tmp_path, jwks.base_url, server=bounds)
    a, b = RunnerProcess(path, extra=("--replica-id", "s1")), RunnerProcess(path, extra=("--replica-id", "s2"))
    for runner in (a, b):
        runner.env = {"TASKS_BUS": redis.url, "MCP_APP_ID": jwks.app_id, "MCP_APP_RESOURCE": a.url}
    try:
        a.start()
        b.start()
        replicas = Replicas(tmp_path, a, b, Issuer(base_url=jwks.base_url, resource=a.url, key=jwks.keys[0]))
        started(replicas, replicas.client(a, client_id="m1"), "subject-1")
        started(replicas, replicas.client(b, client_id="m2"), "subject-2")
        with pytest.raises(RPCError) as over:  # a third client id of the same user, on either replica
            replicas.client(a, client_id="m3").call("gated", {"name": "subject-3"})
        assert over.value.code == -32600 and "server.max_tasks_per_subject" in str(over.value), over.value
        other = TaskClient(b.url, replicas.issuer.token(sub="user-2", client_id="m3"))  # another user has room
        started(replicas, other, "subject-other")
        for name in ("subject-1", "subject-2", "subject-other"):
            (tmp_path / "gates" / f"{name}.release").touch()
    finally:
        for runner in (a, b):
            if runner.proc is not None:
                runner.stop()
        redis.stop()

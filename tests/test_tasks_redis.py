"""Tasks across replicas over a real Redis (`server.bus`): two `mcp-runner serve` processes, one manifest.

A task taken by one replica is read, answered and cancelled through the other; a replica that stops
(SIGTERM: drained; SIGKILL: restarted) leaves completed or failed records, never a lost task.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import Issuer, JWKSServer, RunnerProcess
from realredis import RedisServer
from taskclient import RPCError, TaskClient, frame, manifest, wait_for

TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Replicas:
    folder: Path
    a: RunnerProcess
    b: RunnerProcess
    issuer: Issuer

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
        yield Replicas(tmp_path, a, b, Issuer(base_url=jwks.base_url, resource=a.url, key=jwks.keys[0]))
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

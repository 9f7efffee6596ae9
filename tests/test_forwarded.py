"""Whose X-Forwarded-For a server without auth believes (runner/http/proxies.py, docs/security.md).

Without auth a client's address is its identity: per-client caps count by it and a task belongs
to it. A local peer that sends `X-Forwarded-For` must not become another address: not to take
more per-client task slots, not to read another address's task. Only with
`--forwarded-allow-ips` naming the proxy does the header count (as behind the generated nginx).
Two real client addresses on one machine: 127.0.0.1 and 127.0.0.2 (both loopback on Linux).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx2
import pytest
from helpers import RunnerProcess
from taskclient import JOBS, RPCError, TaskClient, wait_for


def no_auth_server(folder: Path, *extra: str) -> RunnerProcess:
    (folder / "jobs.py").write_text(JOBS)
    manifest = folder / "tasks.yaml"
    manifest.write_text(
        textwrap.dedent(
            """
            name: forwarded
            tools:
              - function: jobs:gated
                task: optional
            server:
              max_tasks_per_client: 2
              max_tasks: 6
            """
        )
    )
    return RunnerProcess(manifest, extra=extra).start()


def peer(runner: RunnerProcess, source: str, forwarded_for: str | None = None) -> TaskClient:
    """A no-auth client connecting from `source`, optionally claiming another address."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    transport = httpx2.HTTPTransport(local_address=source)
    return TaskClient(runner.url, "", http=httpx2.Client(timeout=30, headers=headers, transport=transport))


def started(folder: Path, caller: TaskClient, name: str) -> str:
    created = caller.call("gated", {"name": name})
    assert created["resultType"] == "task" and created["status"] == "working", created
    wait_for(folder / "gates" / f"{name}.started")
    return str(created["taskId"])


def test_a_forwarded_for_header_does_not_change_who_a_no_auth_client_is(tmp_path: Path) -> None:
    runner = no_auth_server(tmp_path)
    owner = peer(runner, "127.0.0.2")
    claimers = [peer(runner, "127.0.0.1", f"10.0.0.{i}") for i in range(3)]
    impostor = peer(runner, "127.0.0.1", "127.0.0.2")
    try:
        owned = started(tmp_path, owner, "owned")
        with pytest.raises(RPCError) as unknown:
            impostor.get(owned)
        assert unknown.value.code == -32602, unknown.value
        with pytest.raises(RPCError) as not_cancelled:
            impostor.cancel(owned)
        assert not_cancelled.value.code == -32602, not_cancelled.value
        assert owner.get(owned)["status"] == "working"
        # Three "addresses" from one peer are one client: its third task is over max_tasks_per_client.
        started(tmp_path, claimers[0], "c0")
        started(tmp_path, claimers[1], "c1")
        with pytest.raises(RPCError) as over:
            claimers[2].call("gated", {"name": "c2"})
        assert over.value.code == -32600 and "server.max_tasks_per_client" in str(over.value), over.value
        assert not (tmp_path / "gates" / "c2.started").exists()
    finally:
        (tmp_path / "gates").mkdir(exist_ok=True)
        for name in ("owned", "c0", "c1", "c2"):
            (tmp_path / "gates" / f"{name}.release").touch()
        for client in (owner, impostor, *claimers):
            client.close()
        runner.stop()


def test_a_named_proxy_s_forwarded_for_is_believed(tmp_path: Path) -> None:
    """As behind the nginx `mcp-runner nginx` configures, on this machine: the proxy names the client."""
    runner = no_auth_server(tmp_path, "--forwarded-allow-ips", "127.0.0.1")
    owner = peer(runner, "127.0.0.2")
    proxy = peer(runner, "127.0.0.1", "127.0.0.2")  # forwarding the owner's request
    try:
        owned = started(tmp_path, owner, "owned")
        assert proxy.get(owned)["status"] == "working"
    finally:
        (tmp_path / "gates" / "owned.release").touch()
        owner.close()
        proxy.close()
        runner.stop()

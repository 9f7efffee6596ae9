"""The process's upstream connections, kept in step with the manifest's `upstreams:` across reloads.

`want(entries)` says which upstreams the served manifest has; `run` (in the server's lifespan, or
next to the stdio server) starts a connection for each new or changed entry and stops the ones that
went away. An entry whose connection settings did not change (connection.identity) keeps its
connection and its process: a reload that changes another entry, or only this one's prefix, filters,
scopes or overrides, never restarts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio

from runner.manifest.model import UpstreamEntry
from runner.upstreams.connection import Connection, identity
from runner.upstreams.rounds import HeldCalls


class Upstreams:
    def __init__(self, changed: Callable[[str], None] = lambda kind: None) -> None:
        self.connections: dict[str, Connection] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._wanted: list[UpstreamEntry] = []
        self._wake: anyio.Event | None = None  # made in `run`: an event belongs to the loop that waits on it
        self._changed = changed  # the live server's list_changed: kept answers forgotten, clients told
        self.held = HeldCalls()  # upstream calls waiting for a 2026-07-28 client's next round (rounds.py)

    def want(self, entries: Sequence[UpstreamEntry]) -> None:
        """The served manifest's upstreams, from now on (a build, then each reload's swap)."""
        self._wanted = list(entries)
        self._sync_entries()
        if self._wake is not None:
            self._wake.set()

    def _sync_entries(self) -> None:
        """An entry whose connection is unchanged takes the new settings (prefix, filters...) at once."""
        for entry in self._wanted:
            connection = self.connections.get(entry.name)
            if connection is not None and connection.key == identity(entry):
                connection.entry = entry

    def get(self, name: str) -> Connection | None:
        return self.connections.get(name)

    def public(self) -> dict[str, Any]:
        """Each upstream's state, for /healthz."""
        return {name: c.public() for name, c in sorted(self.connections.items())}

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tasks:
                while True:
                    self._wake = anyio.Event()
                    self._reconcile(tasks)
                    await self._wake.wait()
        finally:
            self.held.cancel_all()  # the server stops: calls waiting for a next round end with it

    def _reconcile(self, tasks: anyio.abc.TaskGroup) -> None:
        wanted = {e.name: e for e in self._wanted}
        for name in list(self.connections):
            entry = wanted.get(name)
            if entry is None or identity(entry) != self.connections[name].key:
                self._scopes.pop(name).cancel()  # the process (stdio) is stopped as the client closes
                del self.connections[name]
                for kind in ("tools", "prompts", "resources"):
                    self._changed(kind)
        for name, entry in wanted.items():
            if name not in self.connections:
                connection = Connection(entry, self._changed)
                scope = anyio.CancelScope()
                self.connections[name], self._scopes[name] = connection, scope
                tasks.start_soon(_run_in, scope, connection)


async def _run_in(scope: anyio.CancelScope, connection: Connection) -> None:
    with scope:
        await connection.run()

"""`mcp-runner check` reaches each upstream once (`--offline` skips it): connects, lists, and closes.

A problem is located at the upstream's entry in the manifest: one that cannot be reached, and one
whose resource URI another entry already serves.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from runner.manifest.errors import Problem
from runner.manifest.model import UpstreamEntry
from runner.manifest.source import Source
from runner.upstreams.connection import Connection, reason, transport_client


async def _reach(entry: UpstreamEntry) -> tuple[Connection, str | None]:
    connection = Connection(entry, lambda kind: None)
    try:
        with anyio.fail_after(entry.timeout):
            async with transport_client(entry, connection._on_message) as client:
                await connection.refresh(client)
    except Exception as exc:
        return connection, reason(exc)
    return connection, None


async def reach(entries: Sequence[UpstreamEntry], source: Source, taken: set[str]) -> tuple[list[Problem], int]:
    """The problems found reaching every upstream at once, and how many tools they serve in all."""
    found: list[tuple[Connection, str | None]] = [None] * len(entries)  # type: ignore[list-item]

    async def one(i: int) -> None:
        found[i] = await _reach(entries[i])

    async with anyio.create_task_group() as tasks:
        for i in range(len(entries)):
            tasks.start_soon(one, i)
    problems: list[Problem] = []
    tools = 0
    seen = {uri: "the manifest's resources" for uri in taken}
    for i, (connection, error) in enumerate(found):
        where = source.locate(("upstreams", i))
        if error is not None:
            problems.append(Problem(where, f"cannot reach upstream {entries[i].name!r}: {error}"))
            continue
        tools += len([t for t in connection.listing.tools if _kept(entries[i], t.name)])
        listed = [str(r.uri) for r in connection.listing.resources]
        listed += [t.uri_template for t in connection.listing.templates]
        for uri in listed:
            if uri in seen:
                message = f"upstream {entries[i].name!r} serves {uri!r}, which is served already by {seen[uri]}"
                problems.append(Problem(where, message))
            else:
                seen[uri] = f"upstream {entries[i].name!r}"
    return problems, tools


def _kept(entry: UpstreamEntry, name: str) -> bool:
    return (entry.include is None or name in entry.include) and name not in entry.exclude

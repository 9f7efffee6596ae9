"""`mcp-runner check` reaches each upstream once (`--offline` skips it): connects, lists, and closes.

A problem is located at the upstream's entry in the manifest: one that cannot be reached, one
whose resource URI another entry already serves, and one that would serve a tool or prompt name
another entry serves already (located at its `name:`, with the fix: `prefix:` or `exclude:`). This is
the one place such a clash can be an error: the names are known only once the upstream answers, and
while serving, an upstream's names can change at any time (served.py logs each clash once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio

from runner.manifest.errors import Location, Problem
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


async def reach(
    entries: Sequence[UpstreamEntry],
    source: Source,
    taken: set[str],
    names: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[list[Problem], int]:
    """The problems found reaching every upstream at once, and how many tools they serve in all.

    `taken` holds the manifest's own resource URIs; `names`, for "tools" and "prompts", each name the
    manifest serves itself and who serves it (`the manifest's tools`, `openapi 'pets'`).
    """
    found: list[tuple[Connection, str | None]] = [None] * len(entries)  # type: ignore[list-item]

    async def one(i: int) -> None:
        found[i] = await _reach(entries[i])

    async with anyio.create_task_group() as tasks:
        for i in range(len(entries)):
            tasks.start_soon(one, i)
    problems: list[Problem] = []
    tools = 0
    seen = {uri: "the manifest's resources" for uri in taken}
    owners = {kind: dict((names or {}).get(kind, {})) for kind in ("tools", "prompts")}
    for i, (connection, error) in enumerate(found):
        where = source.locate(("upstreams", i))
        if error is not None:
            problems.append(Problem(where, f"cannot reach upstream {entries[i].name!r}: {error}"))
            continue
        tools += len([t for t in connection.listing.tools if _kept(entries[i], t.name)])
        problems += _clashes(entries[i], connection, owners, source.locate(("upstreams", i, "name")))
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


def _clashes(
    entry: UpstreamEntry, connection: Connection, owners: dict[str, dict[str, str]], where: Location
) -> list[Problem]:
    """The entry's tool and prompt names another entry serves already: one problem per kind and other entry."""
    problems = []
    for kind in ("tools", "prompts"):
        clashing: dict[str, list[str]] = {}  # who serves them already -> the upstream's own names
        for item in getattr(connection.listing, kind):
            if not _kept(entry, item.name):
                continue
            served = entry.served_prefix + item.name
            other = owners[kind].get(served)
            if other is None:
                owners[kind][served] = f"upstream {entry.name!r}"
            else:
                clashing.setdefault(other, []).append(item.name)
        for other, own in clashing.items():
            shown = ", ".join(repr(entry.served_prefix + n) for n in own[:5])
            shown += f" and {len(own) - 5} more" if len(own) > 5 else ""
            message = (
                f"upstream {entry.name!r} would serve {kind} already served by {other} ({shown}): "
                f"set its prefix:, or exclude: [{', '.join(own)}]"
            )
            problems.append(Problem(where, message))
    return problems

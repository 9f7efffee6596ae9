"""Which event bus a process uses: `--bus`, else the manifest's `server.bus`, else in-process only.

The bus is chosen once, at start-up, and kept for the process's lifetime: the
listen streams and sessions of its clients hang off it, and swapping it under
them would lose events in between. A reload that changes `server.bus` is
logged as needing a restart (passwords redacted) and the rest of the edit applies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.manifest.errors import Location, ManifestError, Problem
from runner.manifest.model import Manifest
from runner.manifest.settings import BUS_SCHEMES

if TYPE_CHECKING:
    from runner.attach import LiveServer
    from runner.manifest.config import Overrides


def channel(name: str) -> str:
    """The Redis channel of a deployment: replicas of one manifest share its `name`."""
    return f"mcp-runner:events:{name}"


def bus_url(manifest: Manifest, overrides: Overrides) -> str | None:
    return overrides.bus or manifest.server.bus


def attach_bus(server: LiveServer, manifest: Manifest, overrides: Overrides) -> None:
    """Plug the Redis backend into the server's event hub when a bus is configured."""
    url = bus_url(manifest, overrides)
    if url is None:
        return
    from runner.events.redis_bus import RedisBackend, redact  # only a process with a bus imports redis

    if not url.startswith(BUS_SCHEMES):
        problem = f"must be a Redis URL starting with {', '.join(BUS_SCHEMES)}"
        raise ManifestError([Problem(Location.flag("--bus", redact(url)), problem)])
    server.events.backend = RedisBackend(url, channel(manifest.name))


def bus_restart_notes(old: Manifest, new: Manifest, overrides: Overrides) -> list[str]:
    """What a reload says when `server.bus` changed (never the password)."""
    if overrides.bus is not None or old.server.bus == new.server.bus:
        return []
    from runner.events.redis_bus import redact

    def shown(url: str | None) -> str:
        return "none" if url is None else redact(url)

    return [
        f"server.bus changed from {shown(old.server.bus)} to {shown(new.server.bus)}: needs a restart; "
        f"events still go over {shown(old.server.bus)}"
    ]

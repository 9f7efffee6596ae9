"""The task store a process uses, chosen once at start-up with the settings of its `server:` block.

Like the event bus (runner/events/bus.py), it is kept for the process's lifetime: running tasks
and the records clients poll hang off it. `server.max_tasks`, `server.max_tasks_per_client` and
`server.task_ttl` are start-up settings; a reload that changes them says it needs a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.manifest.model import Manifest
from runner.tasks.store import Bounds, MemoryStore

if TYPE_CHECKING:
    from runner.attach import LiveServer


def bounds(manifest: Manifest) -> Bounds:
    settings = manifest.server
    return Bounds(total=settings.max_tasks, per_client=settings.max_tasks_per_client, ttl=settings.task_ttl)


def attach_tasks(server: LiveServer, manifest: Manifest) -> None:
    server.tasks.use(MemoryStore(bounds(manifest)))

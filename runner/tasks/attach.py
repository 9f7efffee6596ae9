"""The task store a process uses, chosen once at start-up with the settings of its `server:` block.

Like the event bus (runner/events/bus.py), it is kept for the process's lifetime: running tasks
and the records clients poll hang off it. With `server.bus` (or `--bus`) the records live in that
Redis (runner/tasks/redis_store.py), under the manifest's `name`, so every replica of a deployment
sees the same tasks; else in this process. `server.max_tasks`, `server.max_tasks_per_client`,
`server.max_tasks_per_subject`, `server.max_task_result_bytes` and `server.task_ttl` are start-up
settings too: a reload that changes them says it needs a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.events.bus import bus_url
from runner.manifest.model import Manifest
from runner.tasks.store import Bounds, MemoryStore

if TYPE_CHECKING:
    from runner.attach import LiveServer
    from runner.deploy.replica import Replica
    from runner.manifest.config import Overrides


def bounds(manifest: Manifest) -> Bounds:
    settings = manifest.server
    return Bounds(
        total=settings.max_tasks,
        per_client=settings.max_tasks_per_client,
        ttl=settings.task_ttl,
        per_subject=settings.max_tasks_per_subject,
        max_result=settings.max_task_result_bytes,
    )


def attach_tasks(server: LiveServer, manifest: Manifest, overrides: Overrides, replica: Replica | None = None) -> None:
    """The store, and the replica whose drain (SIGTERM) stops new tasks and bounds the running ones."""
    server.tasks.replica = replica
    url = bus_url(manifest, overrides)
    if url is None:
        server.tasks.use(MemoryStore(bounds(manifest)))
        return
    from runner.tasks.redis_store import RedisStore  # only a process with a bus imports redis

    server.tasks.use(RedisStore(url, manifest.name, bounds(manifest), replica.id if replica else "stdio"))

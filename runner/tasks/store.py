"""Where tasks are kept: in this process, or in Redis when `server.bus` is set (runner/tasks/redis_store.py).

Both keep the same records (runner/tasks/records.py) under the same rules:

- a task is kept until `server.task_ttl` after it was created, running or not, then forgotten;
- at most `server.max_tasks_per_client` tasks per principal, `server.max_tasks_per_subject` per
  token subject (over all its client ids) and `server.max_tasks` in all are kept at once; a
  `tools/call` that would make one more is refused before anything runs;
- expired tasks are swept on a timer (`run`), not only when a task is created;
- `signal` carries a `tasks/cancel` or a `tasks/update` to whichever process runs the task: here,
  that is this one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from runner.tasks.owner import subject_of_owner
from runner.tasks.records import Task

# {"taskId": ..., "cancel": true}, {"taskId": ..., "inputResponses": {...}} or {"taskId": ..., "changed": true}
Signal = dict[str, Any]
SignalHandler = Callable[[Signal], Awaitable[None]]


class TaskLimit(Exception):
    """One more task would exceed a `server.max_tasks*` bound; the message says which."""


@dataclass(frozen=True)
class Bounds:
    total: int
    per_client: int
    ttl: float  # seconds
    per_subject: int = 128
    max_result: int = 1024 * 1024  # bytes of a finished task's result, as JSON (server.max_task_result_bytes)

    def check(self, owned: int, kept: int, by_subject: int = 0) -> None:
        if owned >= self.per_client:
            raise TaskLimit(
                f"Too many tasks for this client: at most {self.per_client} are kept at once "
                "(server.max_tasks_per_client); wait for one to expire or cancel one"
            )
        if by_subject >= self.per_subject:
            raise TaskLimit(
                f"Too many tasks for this user (the token's subject, over all its client ids): at most "
                f"{self.per_subject} are kept at once (server.max_tasks_per_subject); wait for one to expire"
            )
        if kept >= self.total:
            raise TaskLimit(f"Too many tasks on this server: at most {self.total} (server.max_tasks); retry later")


class TaskStore(Protocol):
    bounds: Bounds

    async def create(self, task: Task) -> None: ...  # raises TaskLimit; durable when it returns

    async def get(self, task_id: str) -> Task | None: ...  # None: unknown or expired

    async def put(self, task: Task) -> None: ...

    async def delete(self, task_id: str) -> None: ...

    async def signal(self, task_id: str, signal: Signal) -> None: ...

    async def changed(self, task: Task) -> None: ...  # tell listeners on every replica (runner/tasks/notify.py)

    def on_signal(self, handler: SignalHandler) -> None: ...

    async def run(self) -> None: ...  # for the server's lifetime (Redis: the signal subscription)


def sweep_interval(ttl: float) -> float:
    """How often expired tasks are swept: often enough that a result outlives its TTL by a fraction of it."""
    return max(0.2, min(30.0, ttl / 4))


class MemoryStore:
    """Tasks of one process. Cheap: a dict, swept of expired tasks on a timer and when a task is created."""

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.tasks: dict[str, Task] = {}
        self._handler: SignalHandler | None = None

    def _sweep(self) -> None:
        now = time.time()
        for task_id in [i for i, t in self.tasks.items() if t.expires <= now]:
            del self.tasks[task_id]

    async def create(self, task: Task) -> None:
        self._sweep()
        owned = sum(1 for t in self.tasks.values() if t.owner == task.owner)
        subject = subject_of_owner(task.owner)
        mine = (t for t in self.tasks.values() if subject_of_owner(t.owner) == subject)
        by_subject = 0 if subject is None else sum(1 for _ in mine)
        self.bounds.check(owned, len(self.tasks), by_subject)
        self.tasks[task.task_id] = task

    async def get(self, task_id: str) -> Task | None:
        task = self.tasks.get(task_id)
        if task is not None and task.expires <= time.time():
            del self.tasks[task_id]
            return None
        return task

    async def put(self, task: Task) -> None:
        if task.task_id in self.tasks:  # an expired (swept) task stays forgotten
            self.tasks[task.task_id] = task

    async def delete(self, task_id: str) -> None:
        self.tasks.pop(task_id, None)

    async def signal(self, task_id: str, signal: Signal) -> None:
        if self._handler is not None:
            await self._handler(signal)

    async def changed(self, task: Task) -> None:
        await self.signal(task.task_id, {"taskId": task.task_id, "changed": True})

    def on_signal(self, handler: SignalHandler) -> None:
        self._handler = handler

    async def run(self) -> None:
        """Forget expired tasks (and their results) as they expire, whether or not new tasks come."""
        while True:
            await anyio.sleep(sweep_interval(self.bounds.ttl))
            self._sweep()

"""The user's sync callables run on a bounded thread pool of the runner's own.

The SDK runs a sync tool, resource or prompt with `anyio.to_thread.run_sync` on
anyio's default limiter (40 threads). Everything else that needs a thread uses
that same limiter too: the file watcher (watchfiles waits for events in a worker
thread), the SDK's internals. 40 slow sync tools then held every token: measured,
a reload waited 9 s and every other sync tool 7 s. So sync callables are wrapped
at build time into async functions that take a thread from this pool instead,
without touching the SDK's internals, and the default limiter stays free.

When the pool is full, a call waits for a thread, first come first served; at
most as many calls as the pool has threads may wait. A call beyond that is
refused at once with a tool error saying the server is busy: memory and waiting
time stay bounded however many calls arrive.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError

DEFAULT_THREADS = 40


class PoolFull(ToolError):
    """Every thread is busy and the waiting line is full."""


@dataclass
class ToolPool:
    """One per process; shared by every build, so a reload neither loses nor doubles the threads."""

    size: int = DEFAULT_THREADS
    limiter: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(self.size)

    def resize(self, size: int) -> None:
        """A reload may change `server.tool_threads`: running calls keep their threads."""
        if size != self.size:
            self.size = size
            self.limiter.total_tokens = size

    def load(self) -> dict[str, int]:
        """Threads in use and calls waiting, for /healthz."""
        stats = self.limiter.statistics()
        return {"size": self.size, "busy": int(stats.borrowed_tokens), "waiting": stats.tasks_waiting}

    def offload(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` itself when it is async; else an async function that runs it on this pool."""
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            type(fn).__call__
        ):  # an async callable object
            return fn

        async def on_pool(*args: Any, **kwargs: Any) -> Any:
            stats = self.limiter.statistics()
            if stats.borrowed_tokens >= stats.total_tokens and stats.tasks_waiting >= self.size:
                raise PoolFull(
                    f"server busy: all {self.size} threads for sync tools are in use and "
                    f"{stats.tasks_waiting} calls are waiting; try again later"
                )
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.limiter)

        functools.update_wrapper(on_pool, fn)
        return on_pool

"""A tool's `task:` setting, carried by the function the build registers, and the moment its body starts.

The build (runner/build/server.py) wraps a tool whose manifest entry says `task: optional` or
`task: required` in `as_task`. The wrapper does two things:

- it carries the mode, so the extension reads it from the tool the current catalog holds (a reload
  that changes `task:` takes effect for the next call, like any other edit);
- when the body is about to run, it tells the extension: arguments are validated and every
  `Resolve(...)` parameter is answered by then. Questions asked through resolvers are therefore
  answered in plain multi-round `tools/call`s, before the task exists (the extension says a server
  SHOULD resolve them synchronously); questions the body asks with `ctx.elicit` are asked through
  the task (runner/tasks/session.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Literal

import anyio

Mode = Literal["never", "optional", "required"]
_MODE = "__mcp_runner_task__"


class Start:
    """Set by the tool's wrapper once its body runs: from then on, the call is a task."""

    def __init__(self) -> None:
        self.begun = anyio.Event()


starting: ContextVar[Start | None] = ContextVar("mcp_runner_task_start", default=None)


def as_task(fn: Callable[..., Any], mode: Mode) -> Callable[..., Any]:
    """`fn` (async: the build offloads sync functions first) marked with `mode`, telling when its body starts."""
    if mode == "never":
        return fn

    async def task_body(*args: Any, **kwargs: Any) -> Any:
        start = starting.get()
        if start is not None:
            start.begun.set()
        return await fn(*args, **kwargs)

    functools.update_wrapper(task_body, fn)
    setattr(task_body, _MODE, mode)
    return task_body


def mode_of(fn: Any) -> Mode:
    mode = getattr(fn, _MODE, "never")
    if mode == "optional":
        return "optional"
    return "required" if mode == "required" else "never"

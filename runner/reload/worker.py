"""Run a reload's build in a daemon thread of its own, under a deadline.

Why not `anyio.to_thread.run_sync`: its threads come from the default pool that
the SDK also uses for sync tool calls, so a busy server made reloads wait for
user code (40 slow tools delayed a reload by 9 s); and those threads are not
daemons, so a module whose import never returns kept the process alive after
Ctrl-C. Here every build gets a fresh daemon thread, and at most one runs at a
time: two builds at once would race on `sys.modules`, and a second import of a
module whose first import is stuck would block on importlib's per-module lock.

Past the deadline the build is abandoned: the caller gets `Overdue`, and the
thread is interrupted with an asynchronous `Abort` exception. That lands as
soon as the thread runs Python bytecode again (a `while True: sleep()` loop
ends within one sleep), unwinding the import so its module lock is released
and the old modules are put back. Code blocked inside C (one long `sleep`, a
socket read) cannot be interrupted in-process; until it returns, `busy` stays
true and new builds are refused with `Busy`.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from runner.build.resolve import Abort, is_user_file, relative

T = TypeVar("T")


class Overdue(Exception):
    """The build ran past its deadline; it was abandoned (and interrupted), not awaited."""


class Busy(Exception):
    """An abandoned build is still running, so no new one may start yet."""


class Crashed(Exception):
    """The build raised a BaseException that is not an Exception (SystemExit, KeyboardInterrupt...).

    Carried as an ordinary exception so that it can never end the event loop or the process.
    """

    def __init__(self, exc: BaseException) -> None:
        self.kind = type(exc).__name__
        super().__init__(f"{self.kind}: {exc}" if str(exc) else self.kind)


@dataclass
class _Job(Generic[T]):
    fn: Callable[[], T]
    started: float = field(default_factory=time.monotonic)
    finished: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def run(self, wake: Callable[[], None]) -> None:
        try:
            try:
                self.value = self.fn()
            except BaseException as exc:  # SystemExit, KeyboardInterrupt, Abort: all end this build, never the process
                self.error = exc
            self.finished.set()
            wake()
        except BaseException:  # an Abort landing after the build ended: nothing left to stop
            self.finished.set()

    def interrupt(self) -> None:
        """Raise Abort inside the thread, at its next bytecode."""
        if self.thread is None or self.thread.ident is None or self.finished.is_set():
            return
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread.ident), ctypes.py_object(Abort))


@dataclass
class BuildThread:
    """One build at a time, each in its own daemon thread, each with a deadline."""

    job: _Job[Any] | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.finished.is_set()

    @property
    def running_for(self) -> float:
        return time.monotonic() - self.job.started if self.job is not None and self.busy else 0.0

    async def run(self, fn: Callable[[], T], timeout: float) -> T:
        if self.busy:
            raise Busy()
        job: _Job[T] = _Job(fn)
        done = anyio.Event()
        token = anyio.lowlevel.current_token()

        def wake() -> None:
            try:
                anyio.from_thread.run_sync(done.set, token=token)
            except Exception:  # the event loop is gone (shutting down): nobody is waiting
                pass

        job.thread = threading.Thread(target=job.run, args=(wake,), name="mcp-runner reload", daemon=True)
        self.job = job
        job.thread.start()
        with anyio.move_on_after(timeout):
            await done.wait()
        if not job.finished.is_set():
            job.interrupt()
            raise Overdue()
        if isinstance(job.error, Exception):
            raise job.error
        if job.error is not None:
            raise Crashed(job.error)
        return job.value  # type: ignore[no-any-return]

    def where(self, root: Path) -> str:
        """`file:line` of the user's code the running build is in (relative to `root`), or "?"."""
        job = self.job
        if job is None or job.thread is None or job.thread.ident is None:
            return "?"
        frame = sys._current_frames().get(job.thread.ident)
        if frame is None:
            return "?"
        frames = [f for f in traceback.extract_stack(frame) if is_user_file(f.filename, root)]
        if not frames:
            return "?"
        return f"{relative(frames[-1].filename, root)}:{frames[-1].lineno}"

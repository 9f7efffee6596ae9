"""A stdio upstream's transport, bounded: one message at most `MAX_MESSAGE_BYTES`, its stderr logged, its group killed.

The SDK's stdio client (mcp/client/stdio.py) would do, but for three things a third-party command must not do to
the runner: it reads a message line with no bound, re-joining the growing line per 64 KiB chunk (a 40 MiB line
cost 12 s of CPU); it passes the command's stderr straight into the runner's stderr (unescaped, unredacted,
unbounded, outside the JSON log format); and it kills the process group only when the command outlives the
grace period. Here a line is read into one bytearray and refused past the cap (the upstream is then down, with a
reason saying so); each stderr line is logged through the `runner` logger with the upstream's name, %r-escaped,
cut to `STDERR_LINE_CHARS`, at most `STDERR_LINES_PER_SECOND` a second (the dropped ones are counted); and when
the connection closes the command's whole process group is killed (runner/upstreams/orphan.py keeps it in one).
The first `KEPT_LINES` stderr lines of each start are kept (`Stderr`), read to their end before the transport
closes: runner/upstreams/retries.py tells a failure from the last one by them, and holds them while it retries.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
import mcp_types as types
from anyio.abc import ByteReceiveStream, Process
from mcp.client._transport import TransportStreams
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage

from runner.upstreams.orphan import guarded

logger = logging.getLogger("runner")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # one message from an upstream, as openapi's MAX_RESPONSE_BYTES for an answer
STDERR_LINE_CHARS = 500  # of one stderr line, logged; the rest is cut
STDERR_LINES_PER_SECOND = 20  # per upstream; more are dropped and counted
GRACE = 2.0  # seconds a command has to exit after its stdin closed, before its group is killed
KEPT_LINES = 50  # of one start's stderr, kept to tell its failure from the last one (retries.py)
_CHUNK = 64 * 1024


class MessageTooLarge(Exception):
    """The upstream sent one message (a line) larger than the cap."""


async def _lines(stream: ByteReceiveStream, cap: int, cut: bool) -> AsyncIterator[bytes]:
    """Each line of `stream`, without its newline; a line past `cap` bytes is cut (`cut`) or refused."""
    buffer = bytearray()
    skipping = False  # the rest of a line already cut
    while True:
        try:
            chunk = await stream.receive(_CHUNK)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return
        scan = len(buffer)
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", scan)) >= 0:
            if not skipping:
                if end - start > cap and not cut:
                    raise MessageTooLarge(f"a message larger than {cap // 1048576} MiB")
                yield bytes(buffer[start : min(end, start + cap)])
            skipping = False
            start = scan = end + 1
        del buffer[:start]
        if len(buffer) > cap:
            if not cut:
                raise MessageTooLarge(f"a message larger than {cap // 1048576} MiB")
            if not skipping:
                yield bytes(buffer[:cap])
            skipping = True
            buffer.clear()


class _Throttle:
    """At most `rate` lines a second; counts the ones it drops."""

    def __init__(self, rate: int) -> None:
        self.rate, self.window, self.used, self.dropped = rate, 0.0, 0, 0

    def allow(self) -> tuple[bool, int]:
        """Whether this line may be logged, and how many were dropped before it (said once)."""
        now = time.monotonic()
        if now - self.window >= 1.0:
            self.window, self.used = now, 0
        if self.used >= self.rate:
            self.dropped += 1
            return False, 0
        self.used += 1
        dropped, self.dropped = self.dropped, 0
        return True, dropped


class Stderr:
    """A stdio upstream's stderr lines: logged (escaped, cut, rate-limited), and the first `KEPT_LINES` of the
    current start kept. While `holding` (a start after a failure: retries.py) they are only kept, until `release`
    logs them; a start that fails as the last one did never logs them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []  # this start's, the first KEPT_LINES
        self.more = 0  # this start's lines past those
        self.holding = False
        self._throttle = _Throttle(STDERR_LINES_PER_SECOND)

    def start(self, hold: bool) -> None:
        """The command starts (again): its lines from now on are this start's; `hold` keeps them from the log."""
        self.lines, self.more, self.holding = [], 0, hold

    def add(self, text: str) -> None:
        if len(self.lines) < KEPT_LINES:
            self.lines.append(text)
        else:
            self.more += 1
        if not self.holding:
            self._log(text)

    def release(self) -> None:
        """Log the lines held so far (at most `KEPT_LINES`, the rest counted); from now on, each as it comes."""
        if not self.holding:
            return
        self.holding = False
        for text in self.lines:
            logger.warning("upstream %r stderr: %r", self.name, text)
        if self.more:
            logger.warning("upstream %r stderr: %d more lines not shown", self.name, self.more)

    def _log(self, text: str) -> None:
        name, throttle = self.name, self._throttle
        allowed, dropped = throttle.allow()
        if dropped:
            logger.warning("upstream %r stderr: %d lines dropped (over %d a second)", name, dropped, throttle.rate)
        if allowed:
            logger.warning("upstream %r stderr: %r", name, text)
        elif throttle.dropped == 1:  # the first one dropped: said at once, the count with the next line logged
            logger.warning("upstream %r stderr: over %d lines a second: dropping", name, throttle.rate)


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:  # the session surfaces it; the line itself is not logged
        return exc


@asynccontextmanager
async def stdio_transport(
    name: str, command: list[str], env: dict[str, str], cwd: str | None, stderr: Stderr | None = None
) -> AsyncIterator[TransportStreams]:
    """The upstream's command running (through the guard) with its stdin/stdout as the message streams."""
    errors = stderr if stderr is not None else Stderr(name)
    drained = anyio.Event()  # its stderr read to the end: every line of this start is in `errors`
    process = await anyio.open_process(
        guarded(command), env=get_default_environment() | env, cwd=cwd, start_new_session=True
    )
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_stdout() -> None:
        assert process.stdout is not None
        async with read_writer:
            async for line in _lines(process.stdout, MAX_MESSAGE_BYTES, cut=False):
                if line.strip():
                    await read_writer.send(_parse(line))

    async def write_stdin() -> None:
        assert process.stdin is not None
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())
        await read_writer.aclose()  # the command cannot take messages: the session ends instead of hanging

    async def log_stderr() -> None:
        assert process.stderr is not None
        async for line in _lines(process.stderr, STDERR_LINE_CHARS * 4, cut=True):
            errors.add(line.decode("utf-8", "replace").rstrip("\r")[:STDERR_LINE_CHARS])
        drained.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read_stdout)
        tasks.start_soon(write_stdin)
        tasks.start_soon(log_stderr)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process)
                with anyio.move_on_after(GRACE):  # the group is dead: the pipe's end comes at once
                    await drained.wait()
                for stream in (read_stream, write_stream, read_writer, write_reader):
                    await stream.aclose()
            tasks.cancel_scope.cancel()


async def _stop(process: Process) -> None:
    """Close stdin, give the command `GRACE` seconds, then SIGKILL its whole group (which it leads: a new session)."""
    if process.stdin is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    with anyio.move_on_after(GRACE):
        while process.returncode is None:
            await anyio.sleep(0.01)
    with suppress(ProcessLookupError, PermissionError):  # unconditionally: the command's children too
        os.killpg(process.pid, signal.SIGKILL)
    with anyio.move_on_after(GRACE):
        await process.wait()

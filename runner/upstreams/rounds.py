"""An upstream's questions to a 2026-07-28 client: the upstream's call held open across the client's rounds.

A 2026-07-28 client has no stream the server could send a question on while a call runs: a server asks
by answering the call with `input_required` (the questions, and a `requestState`), and the client calls
again with the answers. An upstream (spoken to with the handshake, connection.py) asks mid-call instead,
and waits. So for such a client the runner runs the upstream call in a task of its own, a `Held` call,
whose elicitation and sampling requests (forward.py) wait for the client's next round:

- round 1 starts the held call and waits for its first event: its result (returned as it is) or a
  question, returned as `InputRequiredResult` whose `requestState` names the held call (the SDK seals it:
  bound to this caller, tool, arguments, and `server.request_state_ttl`);
- the next round brings the answer, which is handed to the waiting upstream; the round then waits for
  the next event the same way.

Bounded: at most `server.max_held_calls` held calls, `max_held_calls_per_client` per client (token or
address, as tasks are counted) and `max_held_calls_per_subject` per token subject; a held call that no
round picks up within `server.request_state_ttl` is cancelled (its requestState has expired anyway), and
the upstream call itself stays bounded by its entry's `timeout`. The bounds count calls still running: once
its upstream call has ended, a held call waits only `ENDED_GRACE` seconds for a round to collect its result,
outside the bounds (at most `max_held_calls` such results are kept, the oldest forgotten first). Counted
until their ttl, 256 calls whose client never came back (their upstream calls long over) refused every
2026-07-28 client's upstream calls for 10 minutes (an attacker's probe). A held call lives in one process: a
round that reaches another replica, or this one after a restart, finds nothing and says so.

Log messages and progress of a held call go to the round being served at the time, if any (on 2026-07-28
the SDK sends log messages only to a request that opted in).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_types.version import is_version_at_least

from runner.loglevel import send_log
from runner.manifest.settings import ServerSettings
from runner.tasks.owner import owner_of, subject_of_owner
from runner.upstreams import forms, forward

logger = logging.getLogger("runner")

MODERN = "2026-07-28"  # the first revision without a back-channel for a call's questions
STATE_PREFIX = "runner-upstream-call:"
ENDED_GRACE = 30.0  # seconds a held call whose upstream call has ended waits for a round to collect it
GONE = (
    "this call's upstream call is not held by this server (its next round reached another replica, or the server "
    "restarted, or the call ended or expired): call it again from the start"
)


def in_rounds(caller: Any) -> bool:
    """Whether the calling client answers questions in rounds (2026-07-28), so an upstream call must be held.

    Only a client that declared elicitation or sampling could answer one: for the others the call runs as
    it is (no task, nothing held), and an upstream's question is refused as one they cannot answer.
    """
    if caller is None or not is_version_at_least(getattr(caller, "protocol_version", None) or "", MODERN):
        return False
    capabilities = caller.client_capabilities
    return capabilities is not None and (capabilities.elicitation is not None or capabilities.sampling is not None)


@dataclass(frozen=True)
class HeldBounds:
    total: int = 256
    per_client: int = 16
    per_subject: int = 64
    ttl: float = 600.0  # server.request_state_ttl: a held call no round picked up in time is cancelled

    @classmethod
    def of(cls, settings: ServerSettings) -> HeldBounds:
        return cls(
            settings.max_held_calls,
            settings.max_held_calls_per_client,
            settings.max_held_calls_per_subject,
            float(settings.request_state_ttl),
        )


class HeldLimit(Exception):
    """One more held call would exceed a `server.max_held_calls*` bound; the message says which."""


@dataclass(eq=False)
class Held(forward.HeldCaller):
    """One upstream call held open across a 2026-07-28 client's rounds (forward.py asks through it)."""

    key: str
    owner: str
    tool: str
    deadline: float
    # ("ask", InputRequest, answer Future) | ("done", result): asyncio's, as cheap as it gets on every call
    events: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    round: Any = None  # the Context of the round being served, or None between rounds
    asking: tuple[str, types.InputRequest, Any] | None = None  # the question the client has, its reply channel
    task: asyncio.Task[None] | None = None
    asked: int = 0
    logging: int = 0  # log messages being sent on the current round's stream
    idle: anyio.Event | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one round at a time
    ended: bool = False  # its upstream call is over: only its result waits, counted in no bound

    async def ask(self, request: types.InputRequest) -> Any:
        """From the upstream's callback: ask the client in its next round, and wait for the answer."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.events.put_nowait(("ask", request, answer))
        return await answer

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        current = self.round
        if current is None:
            logger.debug("upstream log message between the rounds of a call: not forwarded")
            return
        self.logging += 1  # the round ends only once it is sent (`settled`): the upstream sent it first
        try:
            await send_log(current.session, params, current.request_id)
        finally:
            self.logging -= 1
            if not self.logging and self.idle is not None:
                self.idle.set()

    async def settled(self) -> None:
        """Wait until the log messages being sent on this round's stream are sent."""
        while self.logging:
            self.idle = anyio.Event()
            await self.idle.wait()

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.round is not None:
            await self.round.report_progress(progress, total, message)


class HeldCalls:
    """The process's held calls, bounded (see the module docstring); reloads keep them (the pool's)."""

    def __init__(self) -> None:
        self.bounds = HeldBounds()
        self._held: dict[str, Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    async def call(
        self, tool: str, caller: Any, run: Callable[[Any], Awaitable[types.CallToolResult]]
    ) -> types.CallToolResult | types.InputRequiredResult:
        """One round of `tool`'s call for a 2026-07-28 client; `run(progress)` makes the upstream call."""
        self._expire()
        owner = owner_of(caller.request_context)
        state = caller.request_state
        if isinstance(state, str) and state.startswith(STATE_PREFIX):
            held = self._held.get(state[len(STATE_PREFIX) :])
            if held is None or held.owner != owner or held.tool != tool:
                raise MCPError(code=types.INVALID_PARAMS, message=f"tool {tool!r}: {GONE}")
            async with held.lock:
                if held.asking is not None:
                    key, request, reply = held.asking
                    answer = (caller.input_responses or {}).get(key)
                    if answer is None:  # not answered yet: the same question again
                        return self._question(held)
                    held.asking = None
                    if not reply.done():
                        reply.set_result(answer)
                return await self._next(held, caller)
        held = self._start(tool, owner, run)  # nobody else knows it yet: no lock
        return await self._next(held, caller)

    def _start(self, tool: str, owner: str, run: Callable[[Any], Awaitable[types.CallToolResult]]) -> Held:
        bounds = self.bounds
        running = [h for h in self._held.values() if not h.ended]
        mine = sum(1 for h in running if h.owner == owner)
        subject = subject_of_owner(owner)
        theirs = sum(1 for h in running if subject and subject_of_owner(h.owner) == subject)
        if mine >= bounds.per_client:
            raise HeldLimit(
                f"too many calls waiting for this client's answers: at most {bounds.per_client} "
                "(server.max_held_calls_per_client); answer or abandon one first"
            )
        if subject is not None and theirs >= bounds.per_subject:
            raise HeldLimit(
                f"too many calls waiting for this user's answers (over all their client ids): at most "
                f"{bounds.per_subject} (server.max_held_calls_per_subject); answer or abandon one first"
            )
        if len(running) >= bounds.total:
            raise HeldLimit(
                f"too many calls waiting for answers on this server: at most {bounds.total} "
                "(server.max_held_calls); retry later"
            )
        held = Held(secrets.token_urlsafe(18), owner, tool, time.monotonic() + bounds.ttl)
        self._held[held.key] = held

        async def body() -> None:
            token = forward.CALLER.set(held)  # the upstream's questions come to `held.ask` (forward.py)
            result: Any
            try:
                result = await run(held.progress)
            except BaseException as exc:  # cancelled (expired), or failed: the waiting round hears it
                result = exc
                if not isinstance(exc, Exception):
                    raise
            finally:
                forward.CALLER.reset(token)
            held.events.put_nowait(("done", result))
            self._ended(held)

        held.task = asyncio.get_running_loop().create_task(body())
        return held

    async def _next(self, held: Held, caller: Any) -> types.CallToolResult | types.InputRequiredResult:
        """Wait for the held call's next event, serving `caller`'s round meanwhile (its logs, progress)."""
        held.round = caller
        try:
            event = await held.events.get()
            await held.settled()
        finally:
            held.round = None
        if event[0] == "ask":
            held.asked += 1
            held.asking = (f"upstream-{held.asked}", event[1], event[2])
            held.deadline = time.monotonic() + self.bounds.ttl
            return self._question(held)
        self._forget(held)
        result = event[1]
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    @staticmethod
    def _question(held: Held) -> types.InputRequiredResult:
        assert held.asking is not None
        key, request, _ = held.asking
        forms.note(key, request)  # the SDK's shaping drops a form's title and description: put back (forms.py)
        return types.InputRequiredResult(input_requests={key: request}, request_state=STATE_PREFIX + held.key)

    def _forget(self, held: Held) -> None:
        self._held.pop(held.key, None)

    def _ended(self, held: Held) -> None:
        """Its upstream call is over: out of the bounds, its result kept `ENDED_GRACE` s for a round to collect."""
        held.ended = True
        held.deadline = min(held.deadline, time.monotonic() + ENDED_GRACE)
        ended = [h for h in self._held.values() if h.ended]  # in the order they started
        for old in ended[: max(0, len(ended) - self.bounds.total)]:
            self._forget(old)

    def cancel_all(self) -> None:
        for held in list(self._held.values()):
            self._forget(held)
            if held.task is not None:
                held.task.cancel()

    def _expire(self) -> None:
        """Cancel the held calls no round picked up in time."""
        now = time.monotonic()
        for held in [h for h in self._held.values() if h.deadline <= now and h.round is None]:
            logger.info("a call waiting for a client's answers expired: its upstream call is cancelled")
            self._forget(held)
            if held.task is not None:
                held.task.cancel()

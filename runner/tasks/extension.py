"""The `io.modelcontextprotocol/tasks` extension (SEP-2663), as an SDK `Extension`.

A `tools/call` of a tool with `task: optional` or `task: required`, from a client that declares the
extension on that request, runs as a task: the call answers a `CreateTaskResult` once the tool's
body starts (runner/tasks/mark.py), and the body goes on in the server's own task group, not the
request's: a client that disconnects, or a reload that swaps the code, does not stop it (it
finishes on the function object it started with). `tasks/get`, `tasks/update` and `tasks/cancel`
answer only the principal that created the task (runner/tasks/owner.py); anyone else is told the
task does not exist.

A body is bounded by its task's TTL (`server.task_ttl`): when the record expires, the body is
cancelled, so a body cannot outlive the slot the bounds counted it in; the bodies still running in
this process (a sync tool's thread runs to its end) are counted against the bounds too.

Nothing a store raises leaves `run`: settling retries while the store is unreachable (the result is
kept here until it returns, or until the task expires), and if the task group itself ends with an
error, `alive` turns False and `/healthz` says so.

Without the extension declared, `task: optional` is a plain call and `task: required` is refused
with -32021 before anything runs. Only 2026-07-28 requests carry per-request capabilities, so
handshake-era clients always get plain calls.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import decode_header_value
from mcp_types import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolRequestParams,
    RequestParams,
)
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from runner.tasks.mark import Start, mode_of, starting
from runner.tasks.notify import Watchers
from runner.tasks.owner import owner_of, subject_of_owner
from runner.tasks.records import Task, new_id
from runner.tasks.session import Asked, TaskSession
from runner.tasks.store import Bounds, MemoryStore, Signal, TaskLimit, TaskStore

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from runner.attach import LiveServer
    from runner.deploy.replica import Replica

logger = logging.getLogger("runner.tasks")
TASKS = "io.modelcontextprotocol/tasks"
MODERN = "2026-07-28"  # the first revision with per-request capabilities, and so with this extension
UPDATE_SETTLE = 2.0  # seconds tasks/update waits for the answered questions to leave the record
SAVE_BACKOFF_FIRST, SAVE_BACKOFF_MAX = 0.1, 5.0  # retrying a settled task's record while the store is down
SAVE_WHILE_STOPPING = 2.0  # seconds a settled task's record is retried once the server is stopping
STORE_RESTART = 1.0  # seconds before the store's loop (the Redis signal subscription) is started again


class TaskParams(RequestParams):
    task_id: str = Field(alias="taskId")


class UpdateParams(TaskParams):
    input_responses: dict[str, Any] = Field(alias="inputResponses")


@dataclass(eq=False)
class Running:
    """A task whose body runs in this process."""

    task: Task
    asked: Asked
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancelled: bool = False


def declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this very request declares the extension (on 2026-07-28, capabilities come with each request)."""
    if not is_version_at_least(ctx.protocol_version, MODERN):
        return False
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and TASKS in capabilities.extensions)


def _missing() -> MCPError:
    data: dict[str, Any] = {"requiredCapabilities": {"extensions": {TASKS: {}}}}
    message = f"This tool runs as a task: declare the {TASKS} extension"
    return MCPError(MISSING_REQUIRED_CLIENT_CAPABILITY, message, data)


def _wire(result: Any) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dict(result or {})


class TasksExtension(Extension):
    identifier = TASKS

    def __init__(self) -> None:
        self.server: LiveServer | None = None
        self.store: TaskStore = MemoryStore(Bounds(total=1000, per_client=32, ttl=3600.0))
        self.store.on_signal(self._signalled)
        self.replica: Replica | None = None  # its drain (SIGTERM) stops new tasks here and bounds the running ones
        self.accepting = True  # False once finishing: no new task starts here
        self.running: dict[str, Running] = {}
        self.watchers = Watchers()  # notifications/tasks listeners on this replica
        self._group: TaskGroup | None = None
        self.alive = True  # False once the task group ended with an error: /healthz says so

    def use(self, store: TaskStore) -> None:
        """The store for the server's lifetime: fixed at start-up, like the bus (runner/tasks/attach.py)."""
        self.store = store
        store.on_signal(self._signalled)

    # -- the server's lifetime -----------------------------------------------------------------

    async def run(self) -> None:
        """Hold the task group task bodies run in: the server's, so no request's end cancels them.

        An error out of it must not end the app's lifespan (every `/mcp` request would fail while the
        process looks up): it is logged, no new task starts here, and `alive` tells `/healthz`."""
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep_store_running)
                self._group = group
                try:
                    await anyio.sleep_forever()
                finally:
                    self._group = None
                    group.cancel_scope.cancel()
        except Exception:
            self.alive = False
            logger.exception("the tasks machinery stopped: no task starts on this replica any more")

    async def _keep_store_running(self) -> None:
        while True:
            try:
                await self.store.run()
                return
            except Exception:
                logger.exception("task store loop failed; restarting it")
                await anyio.sleep(STORE_RESTART)

    @property
    def stopping(self) -> bool:
        return not self.accepting or (self.replica is not None and self.replica.draining)

    async def finish(self) -> None:
        """At shutdown: take no new task; after a drain (SIGTERM), give the running ones `server.drain_timeout`
        to finish; then cancel the rest, which settle as `failed` (runner/tasks/extension.py `_settle`)."""
        self.accepting = False
        timeout = self.replica.drain_timeout if self.replica is not None and self.replica.draining else 0
        if self.running:
            logger.info("%d task(s) running: up to %g s to finish", len(self.running), timeout)
        with anyio.move_on_after(timeout):
            while self.running:
                await anyio.sleep(0.05)
        for running in list(self.running.values()):
            running.scope.cancel()
        with anyio.move_on_after(1):
            while self.running:
                await anyio.sleep(0.01)

    # -- tools/call ------------------------------------------------------------------------------

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        tool = self.server._tool_manager.get_tool(params.name) if self.server is not None else None
        mode = mode_of(tool.fn) if tool is not None else "never"
        if mode == "never":
            return await call_next(ctx)
        if not declared(ctx):
            if mode == "required":
                raise _missing()
            return await call_next(ctx)
        if self.stopping or self._group is None:
            if mode == "required":
                raise MCPError(INTERNAL_ERROR, "This server is shutting down and starts no new task; retry")
            return await call_next(ctx)
        return await self._start(params, ctx, call_next)

    async def _start(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        ttl_ms = int(self.store.bounds.ttl * 1000)
        task = Task(task_id=new_id(), owner=owner_of(ctx), tool=params.name, ttl_ms=ttl_ms)
        try:
            self._check_running(task.owner)
            await self.store.create(task)  # durable before the CreateTaskResult goes out
        except TaskLimit as exc:
            raise MCPError(INVALID_REQUEST, str(exc)) from None
        created = task.created_result()  # the seed state: the body may be further along by the time it is sent
        running = Running(task, Asked(lambda pending: self._asked(task, pending)))
        start, done = Start(), anyio.Event()
        outcome: list[tuple[str, Any]] = []

        async def work() -> None:
            starting.set(start)  # this task's own context: the tool's wrapper reads it
            self.running[task.task_id] = running
            running.scope.deadline = anyio.current_time() + (task.expires - time.time())  # the TTL bounds the body
            try:
                with running.scope:
                    try:
                        outcome.append(("ok", await call_next(dataclasses.replace(ctx, session=session))))
                    except Exception as exc:  # the tool's protocol error, or the runner's: the task failed
                        outcome.append(("error", exc))
                if not outcome:
                    expired = not running.cancelled and anyio.current_time() >= running.scope.deadline
                    outcome.append(("expired" if expired else "cancelled", None))
            finally:
                done.set()
                self.running.pop(task.task_id, None)
                if start.begun.is_set():
                    with anyio.CancelScope(shield=True):  # a task is settled, never lost, even at shutdown
                        await self._settle(running, outcome[0] if outcome else ("cancelled", None))

        session = TaskSession(ctx.session, running.asked)  # the tool's questions wait in the task
        assert self._group is not None
        self._group.start_soon(work)
        async with anyio.create_task_group() as first:

            async def until(event: anyio.Event) -> None:
                await event.wait()
                first.cancel_scope.cancel()

            first.start_soon(until, start.begun)
            first.start_soon(until, done)
        if start.begun.is_set():
            logger.info("task %s: %s started", task.task_id, params.name)
            return created
        # Over before the body ran: a resolver's question (a multi-round call), bad arguments, a refusal.
        await self.store.delete(task.task_id)
        kind, value = outcome[0]
        if kind == "error":
            raise value
        return value  # type: ignore[no-any-return]

    def _check_running(self, owner: str) -> None:
        """Bodies still running here count against the bounds even once their records expired: a sync
        tool's thread cannot be cancelled, and a body outliving its slot would not be bounded at all."""
        bodies = [r.task.owner for r in self.running.values()]
        subject = subject_of_owner(owner)
        by_subject = 0 if subject is None else sum(1 for o in bodies if subject_of_owner(o) == subject)
        self.store.bounds.check(bodies.count(owner), len(bodies), by_subject)

    async def _asked(self, task: Task, pending: dict[str, Any]) -> None:
        if task.terminal:
            return
        task.input_requests = pending
        task.status = "input_required" if pending else "working"
        task.updated = time.time()
        await self.store.put(task)
        await self.store.changed(task)

    async def _settle(self, running: Running, outcome: tuple[str, Any]) -> None:
        task, (kind, value) = running.task, outcome
        task.input_requests = {}
        if running.cancelled:
            task.status, task.status_message = "cancelled", "Cancelled by tasks/cancel"
        elif kind == "expired":  # its TTL passed: the record is forgotten, so the body is stopped with it
            task.status, task.status_message = "failed", "The task outlived server.task_ttl and was stopped"
            task.error = {"code": INTERNAL_ERROR, "message": task.status_message}
            logger.warning("task %s: %s outlived server.task_ttl: cancelled", task.task_id, task.tool)
        elif kind == "cancelled":  # not asked for: the server stopped under it (drain timeout, shutdown)
            task.status, task.status_message = "failed", "The server stopped before the task finished"
            task.error = {"code": INTERNAL_ERROR, "message": task.status_message}
        elif kind == "ok" and (size := len(json.dumps(result := _wire(value)))) > self.store.bounds.max_result:
            task.status = "failed"
            task.status_message = (
                f"The task's result is {size} bytes, over server.max_task_result_bytes "
                f"({self.store.bounds.max_result}): it was not kept"
            )
            task.error = {"code": INTERNAL_ERROR, "message": task.status_message}
        elif kind == "ok":
            task.status, task.result = "completed", result
        elif isinstance(value, MCPError):
            task.status, task.error = "failed", value.error.model_dump(by_alias=True, mode="json", exclude_none=True)
            task.status_message = value.error.message
        else:
            logger.error("task %s: %s failed", task.task_id, task.tool, exc_info=value)
            task.status, task.error = "failed", {"code": INTERNAL_ERROR, "message": "Internal error"}
        task.updated = time.time()
        await self._save(task)
        logger.info("task %s: %s %s", task.task_id, task.tool, task.status)

    async def _save(self, task: Task) -> None:
        """Write a settled task, retrying while the store is unreachable (a Redis outage): the record is kept
        here until it is written, until the task expires, or for `SAVE_WHILE_STOPPING` once the server stops."""
        backoff, stop_by = SAVE_BACKOFF_FIRST, None
        while True:
            try:
                await self.store.put(task)
                await self.store.changed(task)
                return
            except Exception as exc:  # noqa: BLE001 - the store's error (redis's), never the app's end
                now = time.time()
                if self.stopping and stop_by is None:
                    stop_by = now + SAVE_WHILE_STOPPING
                if now >= task.expires or (stop_by is not None and now >= stop_by):
                    logger.error(
                        "task %s: its %s record could not be written (%s)",
                        task.task_id,
                        task.status,
                        type(exc).__name__,
                    )
                    return
                logger.warning(
                    "task %s: the task store is unavailable (%s); retrying", task.task_id, type(exc).__name__
                )
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, SAVE_BACKOFF_MAX)

    # -- tasks/get, tasks/update, tasks/cancel ---------------------------------------------------

    def methods(self) -> Sequence[MethodBinding]:
        return (
            MethodBinding("tasks/get", TaskParams, self._get),
            MethodBinding("tasks/update", UpdateParams, self._update),
            MethodBinding("tasks/cancel", TaskParams, self._cancel),
        )

    async def _find(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> Task:
        """The caller's task: the extension declared, `Mcp-Name` naming it, and the caller its owner."""
        require_client_extension(ctx, TASKS)
        headers = getattr(ctx.request, "headers", None)
        if headers is not None and is_version_at_least(ctx.protocol_version, MODERN):
            if decode_header_value(headers.get("mcp-name")) != params.task_id:
                raise MCPError(HEADER_MISMATCH, "Mcp-Name header does not match the request body's 'taskId' parameter")
        task = await self.store.get(params.task_id)
        if task is None or task.owner != owner_of(ctx):  # another principal's task does not exist, for this one
            raise MCPError(INVALID_PARAMS, f"Unknown task: {params.task_id}")
        return task

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        task = await self._find(ctx, params)
        return {"resultType": "complete", **task.detailed()}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateParams) -> HandlerResult:
        task = await self._find(ctx, params)
        answered = set(params.input_responses) & set(task.input_requests)
        if not task.terminal and answered:
            await self.store.signal(task.task_id, {"taskId": task.task_id, "inputResponses": params.input_responses})
            # The ack may come before the record shows it (the extension allows that); waiting a little for the
            # replica that runs the body lets the client's next tasks/get read its own answer.
            with anyio.move_on_after(UPDATE_SETTLE):
                while (now := await self.store.get(task.task_id)) and answered & set(now.input_requests):
                    await anyio.sleep(0.01)
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        task = await self._find(ctx, params)
        if not task.terminal:
            await self.store.signal(task.task_id, {"taskId": task.task_id, "cancel": True})
        return {"resultType": "complete"}

    async def _signalled(self, signal: Signal) -> None:
        """A `tasks/cancel` or `tasks/update` for a task; acted on where its body runs (this process, or not)."""
        task_id = str(signal.get("taskId"))
        if signal.get("changed"):
            if self.watchers.watched(task_id) and (task := await self.store.get(task_id)) is not None:
                self.watchers.changed(task)
            return
        running = self.running.get(task_id)
        if running is None:
            return
        if signal.get("cancel") is True:
            running.cancelled = True
            running.scope.cancel()
        elif isinstance(responses := signal.get("inputResponses"), dict):
            await running.asked.answer(responses)

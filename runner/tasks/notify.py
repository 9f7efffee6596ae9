"""`notifications/tasks` on `subscriptions/listen` streams that ask for `taskIds` (SEP-2663).

The listen handler stays the runner's (runner/events/handlers.py, around the SDK's `ListenHandler`);
this wraps it once more. A listen request whose `notifications` carry `taskIds` must declare the
extension (else -32021); the ids the caller owns are honored, listed in the acknowledgement, and every
change of those tasks (status, questions, result) is sent on the stream as the full task, as
`tasks/get` would answer it. Ids the caller does not own are left out of the acknowledgement, exactly
as unknown ones: a subscription never reveals more than `tasks/get`.

With a bus, a change made on another replica arrives as a signal (runner/tasks/redis_store.py), so a
listener on any replica hears about any of its tasks.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver.server import require_client_extension
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import INVALID_PARAMS, SubscriptionFilter, SubscriptionsListenRequestParams
from pydantic import BaseModel

from runner.tasks.owner import owner_of
from runner.tasks.records import Task

if TYPE_CHECKING:
    from runner.attach import LiveServer

MAX_TASK_IDS = 256  # task ids one listen stream may watch
ACK = "notifications/subscriptions/acknowledged"


class TaskNotification(BaseModel):
    method: str = "notifications/tasks"
    params: dict[str, Any]


class Watchers:
    """Who listens for which task on this replica."""

    def __init__(self) -> None:
        self._by_task: defaultdict[str, set[Callable[[Task], None]]] = defaultdict(set)

    def watch(self, task_id: str, callback: Callable[[Task], None]) -> Callable[[], None]:
        self._by_task[task_id].add(callback)

        def unwatch() -> None:
            self._by_task[task_id].discard(callback)
            if not self._by_task[task_id]:
                del self._by_task[task_id]

        return unwatch

    def watched(self, task_id: str) -> bool:
        return task_id in self._by_task

    def changed(self, task: Task) -> None:
        for callback in list(self._by_task.get(task.task_id, ())):
            callback(task)


class _Acknowledging(ServerSession):
    """The listen request's session, with the honored task ids added to its acknowledgement."""

    def __init__(self, original: ServerSession, task_ids: list[str]) -> None:  # nothing of ServerSession's own
        self._original = original
        self._task_ids = task_ids

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)

    async def send_notification(self, notification: Any, related_request_id: Any = None) -> None:
        if getattr(notification, "method", None) == ACK:
            wire = notification.params.notifications.model_dump(by_alias=True, exclude_none=True)
            honored = SubscriptionFilter.model_validate({**wire, "taskIds": self._task_ids})
            notification = notification.model_copy(
                update={"params": notification.params.model_copy(update={"notifications": honored})}
            )
        await self._original.send_notification(notification, related_request_id)


def _requested(params: SubscriptionsListenRequestParams) -> list[str] | None:
    wanted = (params.notifications.model_extra or {}).get("taskIds")
    if wanted is None:
        return None
    if not isinstance(wanted, list) or not all(isinstance(t, str) for t in wanted) or len(wanted) > MAX_TASK_IDS:
        raise MCPError(INVALID_PARAMS, f"notifications.taskIds must be a list of at most {MAX_TASK_IDS} task ids")
    return list(dict.fromkeys(wanted))


def install(server: LiveServer) -> None:
    """Wrap the server's `subscriptions/listen` handler (if it serves one) with task notifications."""
    lowlevel = server._lowlevel_server
    listen = lowlevel.get_request_handler("subscriptions/listen")
    if listen is None:
        return
    inner = listen.handler
    extension = server.tasks

    async def listen_with_tasks(ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams) -> Any:
        wanted = _requested(params)
        if wanted is None:
            return await inner(ctx, params)
        from runner.tasks.extension import TASKS

        require_client_extension(ctx, TASKS)
        owner = owner_of(ctx)
        honored = [t for t in wanted if (task := await extension.store.get(t)) is not None and task.owner == owner]
        rest = params.notifications.model_dump(by_alias=True, exclude_none=True)
        rest.pop("taskIds", None)
        stripped = params.model_copy(update={"notifications": SubscriptionFilter.model_validate(rest)})
        meta = {SUBSCRIPTION_ID_META_KEY: ctx.request_id}
        send, receive = anyio.create_memory_object_stream[Task](64)

        def deliver(task: Task) -> None:
            try:
                send.send_nowait(task)
            except (anyio.WouldBlock, anyio.ClosedResourceError):
                pass  # a reader that stopped reading misses changes; tasks/get still answers

        unwatch = [extension.watchers.watch(task_id, deliver) for task_id in honored]
        try:
            async with anyio.create_task_group() as group:

                async def forward() -> None:
                    async for task in receive:
                        notification = TaskNotification(params={**task.detailed(), "_meta": meta})
                        await ctx.session.send_notification(notification, related_request_id=ctx.request_id)  # type: ignore[arg-type]

                group.start_soon(forward)
                session = _Acknowledging(ctx.session, honored)
                result = await inner(dataclasses.replace(ctx, session=session), stripped)
                group.cancel_scope.cancel()
            return result
        finally:
            for stop in unwatch:
                stop()
            send.close()

    listen_with_tasks.__wrapped__ = inner  # type: ignore[attr-defined]  # a drain closes the SDK's streams (deploy/leaving.py)
    lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, listen_with_tasks)

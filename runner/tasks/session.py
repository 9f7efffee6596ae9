"""What a tool running as a task talks to instead of the request's session: questions wait in the task.

A task outlives the `tools/call` that started it, so the tool cannot ask the client over that
request's stream. The SDK's `Context.elicit` (and `create_message`, `list_roots`, URL elicitation)
all end in `ServerSession.send_request`; this subclass overrides that one method: the request is
parked in the task's `inputRequests` under a key never used twice, the task reads `input_required`,
and the call waits for the client's `tasks/update` with that key (SEP-2663). Notifications (progress,
log messages) are not carried for tasks (the extension says so) and are dropped.

Only public members of the request's own session are read (capabilities, protocol version).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp.server.session import ServerSession
from mcp.shared.message import ServerMessageMetadata
from mcp_types import ClientCapabilities, InitializeRequestParams, ServerNotification, ServerRequest


class Asked:
    """The questions a running task waits on, and their answers as `tasks/update` brings them."""

    def __init__(self, changed: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._changed = changed  # called with the pending requests whenever they change
        self._keys = itertools.count(1)
        self.pending: dict[str, Any] = {}  # key -> wire request
        self._answers: dict[str, Any] = {}
        self._events: dict[str, anyio.Event] = {}

    async def ask(self, request: dict[str, Any]) -> Any:
        key = f"input-{next(self._keys)}"
        self.pending[key] = request
        self._events[key] = event = anyio.Event()
        await self._changed(dict(self.pending))
        await event.wait()
        return self._answers.pop(key)

    async def answer(self, responses: dict[str, Any]) -> None:
        """Answers to keys not pending (never asked, already answered) are ignored, as the extension says."""
        taken = [key for key in responses if key in self.pending]
        for key in taken:
            del self.pending[key]
            self._answers[key] = responses[key]
            self._events.pop(key).set()
        if taken:
            await self._changed(dict(self.pending))


class TaskSession(ServerSession):
    """A `ServerSession` whose server-to-client requests become the task's `inputRequests`."""

    def __init__(self, original: ServerSession, asked: Asked) -> None:  # no super().__init__: nothing of it is used
        self._original = original
        self._asked = asked

    @property
    def client_params(self) -> InitializeRequestParams | None:
        return self._original.client_params

    @property
    def client_capabilities(self) -> ClientCapabilities | None:
        return self._original.client_capabilities

    @property
    def can_send_request(self) -> bool:
        return True

    @property
    def protocol_version(self) -> str:
        return self._original.protocol_version

    def check_client_capability(self, capability: ClientCapabilities) -> bool:
        return self._original.check_client_capability(capability)

    async def send_request(
        self,
        request: ServerRequest,
        result_type: type[Any],
        request_read_timeout_seconds: float | None = None,
        metadata: ServerMessageMetadata | None = None,
        progress_callback: Any = None,
    ) -> Any:
        answer = await self._asked.ask(request.model_dump(by_alias=True, mode="json", exclude_none=True))
        return result_type.model_validate(answer, by_name=False)

    async def send_notification(self, notification: ServerNotification, related_request_id: Any = None) -> None:
        return None

    async def _notify(self, notification: ServerNotification, *, request_scoped: bool) -> None:
        return None

    async def send_log_message(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return None

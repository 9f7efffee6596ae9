"""What a tool running as a task talks to instead of the request's session: questions wait in the task.

A task outlives the `tools/call` that started it, so the tool cannot ask the client over that
request's stream. The SDK's `Context.elicit` (and `create_message`, `list_roots`, URL elicitation)
all end in `ServerSession.send_request`; this subclass overrides that one method: the request is
parked in the task's `inputRequests` under a key never used twice, the task reads `input_required`,
and the call waits for the client's `tasks/update` with that key (SEP-2663). Notifications (progress,
log messages) are not carried for tasks (the extension says so) and are dropped.

A task asks only for what the client declared on the `tools/call` that started it (SEP-2575): an
`elicitation/create` without `elicitation` (or URL mode without `elicitation.url`), a
`sampling/createMessage` without `sampling`, a `roots/list` without `roots` raises -32021
(MissingRequiredClientCapability, `data.requiredCapabilities` naming it) in the body, as a plain call
whose resolver needs it is refused; unless the tool handles it, the task settles `failed` with it.

Only public members of the request's own session are read (capabilities, protocol version).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    ClientCapabilities,
    InitializeRequestParams,
    ServerNotification,
    ServerRequest,
)

NEEDS = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}


def refuse_undeclared(wire: dict[str, Any], declared: ClientCapabilities | None) -> None:
    """Raise -32021 when the client did not declare what this server-to-client request needs."""
    capability = NEEDS.get(str(wire.get("method")))
    if capability is None:
        return
    granted = getattr(declared, capability, None)
    required: dict[str, Any] = {capability: {}}
    if granted is not None and capability == "elicitation" and (wire.get("params") or {}).get("mode") == "url":
        if getattr(granted, "url", None) is not None:
            return
        granted, required = None, {"elicitation": {"url": {}}}
    if granted is not None:
        return
    message = f"This task asks the client for {capability}, which the client did not declare"
    raise MCPError(MISSING_REQUIRED_CLIENT_CAPABILITY, message, {"requiredCapabilities": required})


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
        wire = request.model_dump(by_alias=True, mode="json", exclude_none=True)
        refuse_undeclared(wire, self.client_capabilities)
        answer = await self._asked.ask(wire)
        return result_type.model_validate(answer, by_name=False)

    async def send_notification(self, notification: ServerNotification, related_request_id: Any = None) -> None:
        return None

    async def _notify(self, notification: ServerNotification, *, request_scoped: bool) -> None:
        return None

    async def send_log_message(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return None

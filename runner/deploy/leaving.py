"""What a draining server still answers, and how it says no to the rest (runner/deploy/drain.py).

A drain keeps the listening socket open while calls finish and their clients follow up: the SDK's
client, given the result of a call to a tool it has not listed, lists the tools before it returns
that result, on a new connection when the call's SSE response was closed early (handshake era). A
server that refused that connection lost the call for its client although the call had finished.
So a draining server answers follow-ups and refuses new work, in words a balancer acts on.
"""

from __future__ import annotations

import inspect
import json
from typing import TYPE_CHECKING, Any

from starlette.types import Send

if TYPE_CHECKING:
    from mcp.server.lowlevel.server import Server

LISTEN = "subscriptions/listen"
# Requests a draining server still answers, besides notifications and answers to its own requests:
# what a client sends right after a call, or about a task begun before the drain (runner/tasks), never
# work that would keep the replica from leaving.
FOLLOW_UPS = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "ping"}
    | {"tasks/get", "tasks/update", "tasks/cancel"}
)
GONE = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}'


def follow_up(body: bytes) -> bool:
    """Whether a draining server answers this POST body.

    Yes for a notification, an answer to one of the server's own requests (elicitation, sampling,
    roots: a call in flight waits for it), a request in `FOLLOW_UPS`, and the next round of a
    multi-round call (a `tools/call` with `requestState` or `inputResponses`: the call began before
    the drain). Anything else is new work, or a body the SDK would refuse anyway.
    """
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(message, dict):
        return False
    method = message.get("method")
    if method is None:
        return "id" in message and ("result" in message or "error" in message)
    if not isinstance(method, str):
        return False
    if method.startswith("notifications/") or method in FOLLOW_UPS:
        return True
    params = message.get("params")
    next_round = isinstance(params, dict) and bool({"requestState", "inputResponses"} & params.keys())
    return method == "tools/call" and next_round


async def refuse(send: Send, in_session: bool) -> None:
    """New work on a draining server: 503 to try again (nginx retries it on another replica), or, for
    a handshake-era session, which ends with this server, the spec's 404 that makes a client start a
    new session (what nginx itself answers once the replica is gone). The connection closes after it."""
    status, kind, body = (404, b"application/json", GONE) if in_session else (503, b"text/plain", b"draining\n")
    headers = [(b"content-type", kind), (b"connection", b"close"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def close_listen_streams(lowlevel: Server[Any]) -> bool:
    """Start the SDK's graceful close of every `subscriptions/listen` stream; False when it cannot.

    `ListenHandler.close` makes each stream's own handler flush what it buffered and send the listen
    result as its final frame: the spec's graceful close, which the SDK client reads as the end of
    its subscription (no `SubscriptionLost`). The handler is found with the public `get_request_handler`,
    under the runner's wrappers (runner/events/handlers.py, runner/tasks/notify.py), which name what they
    wrap in `__wrapped__`: a wrapper that does not leaves the streams to end without the graceful close.
    """
    from mcp.server.subscriptions import ListenHandler

    entry = lowlevel.get_request_handler(LISTEN)
    handler = inspect.unwrap(entry.handler) if entry is not None else None
    if not isinstance(handler, ListenHandler):
        return False
    handler.close()
    return True

"""The protocol side of resource subscriptions: `resources/subscribe`, `resources/unsubscribe`, `subscriptions/listen`.

Both generations get the same rules:
- only a resource the caller could read can be watched: a URI no static resource
  or template serves, or one the caller's token lacks the scopes for, is refused
  (handshake-era: `-32602`) or left out of the acknowledged filter (2026-07-28:
  the ack lists what is honored), so a subscription never reveals more than a read;
- at most MAX_SUBSCRIPTIONS_PER_SESSION URIs per session, or per listen stream.

The listen handler stays the SDK's (`ListenHandler`): this wraps it, filtering the
requested URIs first and recording which URIs are listened to while the stream
is open, which is what a reload needs to tell their listeners (runner.events.reload).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.resources.templates import ResourceSecurityError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    UnsubscribeRequestParams,
)

from runner.events.legacy import MAX_SUBSCRIPTIONS_PER_SESSION, SubscriptionLimit
from runner.events.sdk import connection_of

if TYPE_CHECKING:
    from runner.attach import LiveServer


def serves(server: LiveServer, uri: str) -> str | None:
    """The key (static URI or URI template) of the resource that serves `uri` now, as `resources/read` picks it."""
    manager = server._resource_manager
    if any(str(r.uri) == uri for r in manager.list_resources()):
        return uri
    for template in manager.list_templates():
        try:
            if template.matches(uri) is not None:
                return template.uri_template
        except ResourceSecurityError:
            return None
    return None


def readable(server: LiveServer, uri: str) -> bool:
    """Whether the caller of the current request may read `uri` (it exists, and its scopes are held)."""
    return serves(server, uri) is not None and server.may_read(uri)


def install(server: LiveServer) -> None:
    """Serve subscriptions on `server` with its event hub (`server.events`)."""
    hub = server.events
    lowlevel = server._lowlevel_server  # the only way to add request handlers to an MCPServer

    async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        if not readable(server, uri):
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown resource: {uri}", data={"uri": uri})
        try:
            hub.legacy.subscribe(connection_of(ctx), uri)
        except SubscriptionLimit as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None
        return EmptyResult()

    async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        hub.legacy.unsubscribe(connection_of(ctx), str(params.uri))
        return EmptyResult()

    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    server.add_middleware(hub.legacy.track, edits_results=False)

    listen = lowlevel.get_request_handler("subscriptions/listen")
    if listen is None:  # constructed with subscriptions=False
        return
    sdk_listen = listen.handler

    async def listen_filtered(ctx: Any, params: SubscriptionsListenRequestParams) -> Any:
        requested = list(dict.fromkeys(params.notifications.resource_subscriptions or ()))
        if len(requested) > MAX_SUBSCRIPTIONS_PER_SESSION:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"subscription limit reached: a listen stream may watch at most "
                f"{MAX_SUBSCRIPTIONS_PER_SESSION} resources, not {len(requested)}",
            )
        honored = [uri for uri in requested if readable(server, uri)]
        notifications = params.notifications.model_copy(update={"resource_subscriptions": honored or None})
        hub.listen_started(honored)
        try:
            return await sdk_listen(ctx, params.model_copy(update={"notifications": notifications}))
        finally:
            hub.listen_ended(honored)

    # The SDK's handler stays reachable (inspect.unwrap): a drain closes its streams (runner/deploy/leaving.py).
    listen_filtered.__wrapped__ = sdk_listen  # type: ignore[attr-defined]
    lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, listen_filtered)

"""The served ASGI app: MCP endpoint behind the bearer gate, plus RFC 9728 metadata.

Every route reads the server's *current* guard, so nothing here needs
rebuilding when the runner swaps definitions on reload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlparse

import anyio
from mcp.server.streamable_http import EventStore
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from runner.auth.gate import BearerGate
from runner.deploy.affinity import SessionAffinity
from runner.deploy.drain import StreamCloser
from runner.deploy.stateless import NoStandingStream
from runner.http.inflight import UniqueRequestIds
from runner.http.limits import Limits
from runner.http.security import HostGuard, is_loopback_address
from runner.http.sessions import (
    MAX_SESSIONS,
    MAX_SESSIONS_PER_CLIENT,
    MAX_SESSIONS_PER_SUBJECT,
    SESSION_IDLE_TIMEOUT,
    SessionCap,
    _live_sessions,
)
from runner.http.streams import MAX_STREAMS_PER_CLIENT, MAX_STREAMS_PER_SUBJECT, StreamCap, default_total
from runner.observe import metrics, tracing
from runner.observe.access import RequestContext

if TYPE_CHECKING:
    from runner.auth.verifier import JWKSTokenVerifier
    from runner.build.wrapper import FastMCPSignInWrapper

METADATA_PREFIX = "/.well-known/oauth-protected-resource"


def build_app(
    server: FastMCPSignInWrapper,
    *,
    path: str = "/mcp",
    host: str = "127.0.0.1",
    json_response: bool = False,
    stateless: bool = False,
    event_store: EventStore | None = None,
    retry_interval: int | None = None,
    max_request_body_size: int = DEFAULT_MAX_REQUEST_BODY_SIZE,
    session_idle_timeout: float | None = SESSION_IDLE_TIMEOUT,
    max_sessions: int | None = MAX_SESSIONS,
    max_sessions_per_client: int | None = MAX_SESSIONS_PER_CLIENT,
    max_sessions_per_subject: int | None = MAX_SESSIONS_PER_SUBJECT,
    max_streams: int | None = default_total(Limits.max_connections),
    max_streams_per_client: int | None = MAX_STREAMS_PER_CLIENT,
    max_streams_per_subject: int | None = MAX_STREAMS_PER_SUBJECT,
    transport_security: TransportSecuritySettings | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    background: Sequence[Callable[[], Coroutine[Any, Any, Any]]] = (),
    replica_id: str | None = None,
    streams: StreamCloser | None = None,
    access_log: bool = False,
    **_: Any,
) -> Starlette:
    lowlevel = server._lowlevel_server
    server.lists.born_ready = stateless  # runner/speed/lists.py: no `initialize` on that path
    manager = StreamableHTTPSessionManager(
        app=lowlevel,
        event_store=event_store,
        retry_interval=retry_interval,
        json_response=json_response,
        stateless=stateless,
        # Host/Origin are checked for every route by HostGuard below; the SDK's own check
        # (MCP endpoint only, by spelling) runs only when a caller asks for it explicitly.
        security_settings=transport_security,
        max_request_body_size=max_request_body_size,
        session_idle_timeout=session_idle_timeout,
        max_sessions=max_sessions,
    )
    lowlevel._session_manager = manager
    if metrics.active is not None:
        metrics.watch_sessions(_live_sessions(manager))

    async def metadata(request: Request) -> Response:
        """RFC 9728 protected-resource metadata for the current guard."""
        guard = server.guard
        if guard is None or urlparse(guard.metadata_url).path != request.url.path:
            return JSONResponse({"error": "not_found"}, status_code=404)
        document: dict[str, Any] = {"resource": guard.resource}
        if guard.authorization_server is not None:
            document["authorization_servers"] = [guard.authorization_server]
        document.update(bearer_methods_supported=["header"], resource_name=server.name)
        if scopes := guard.scopes_supported or guard.required_scopes:
            document["scopes_supported"] = list(scopes)
        return JSONResponse(document, headers={"Access-Control-Allow-Origin": "*"})

    sdk: ASGIApp = StreamableHTTPASGIApp(manager)
    if not stateless:  # one request per id in flight in a session (runner/http/inflight.py)
        sdk = UniqueRequestIds(sdk, max_request_body_size)
    endpoint: ASGIApp = SessionCap(sdk, manager, max_sessions_per_client, max_sessions_per_subject)
    if stateless:  # no session, so no GET stream (runner/deploy/stateless.py)
        endpoint = NoStandingStream(endpoint)
    elif replica_id is not None:  # session ids name the replica (runner/deploy/affinity.py)
        endpoint = SessionAffinity(endpoint, replica_id)
    if streams is not None:  # standing streams end cleanly on drain (runner/deploy/drain.py)
        endpoint = streams.around(endpoint, lowlevel)
    # Standing streams bounded per client and in all (runner/http/streams.py): behind the gate, which names the client.
    endpoint = StreamCap(endpoint, max_streams_per_client, max_streams_per_subject, max_streams)
    routes: list[BaseRoute] = [
        Route(path, endpoint=BearerGate(endpoint, lambda: server.guard)),
        Route(METADATA_PREFIX, metadata, methods=["GET"]),
        Route(METADATA_PREFIX + "/{rest:path}", metadata, methods=["GET"]),
        *extra_routes,
        *server._custom_starlette_routes,
    ]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with manager.run(), anyio.create_task_group() as tasks:
            tasks.start_soon(_keep_keys_fresh, server)
            tasks.start_soon(server.events.run)  # event delivery to sessions (runner/events)
            tasks.start_soon(server.tasks.run)  # the task group tools run in as tasks (runner/tasks)
            tasks.start_soon(server.serve_upstreams)  # connections to other MCP servers (runner/upstreams)
            for task in background:
                tasks.start_soon(task)
            yield
            await server.tasks.finish()  # running tasks get the drain's time, then are settled (runner/tasks)
            tasks.cancel_scope.cancel()

    return Starlette(
        debug=server.settings.debug,
        routes=routes,
        middleware=[
            *tracing.http_middleware(path),  # when spans are exported: one trace per request (observe/httpspan.py)
            # The request's context for the access line's fields; `AccessLog` keeps it itself when the caller
            # wraps the app in it (`serve`), so the layer would only be one more per request.
            *([] if access_log else [Middleware(RequestContext)]),
            Middleware(HostGuard, rules=server.host_rules(is_loopback_address(host))),
        ],
        lifespan=lifespan,
    )


def _jwks_verifier(verifier: object) -> TypeGuard[JWKSTokenVerifier]:
    from runner.auth.verifier import JWKSTokenVerifier  # only once there is auth: no PyJWT without it

    return isinstance(verifier, JWKSTokenVerifier)


async def _keep_keys_fresh(server: FastMCPSignInWrapper) -> None:
    """Warm and refresh the current verifier's key set in the background, following reloads.

    In the background because the local issuer's JWKS is served by this very app,
    which is not listening yet while the lifespan starts.
    """
    while True:
        verifier = server.guard.verifier if server.guard else None
        if verifier is None or not _jwks_verifier(verifier):
            await anyio.sleep(1)
            continue
        keys = verifier.jwks
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(keys.run)
            while (current := server.guard) is not None and getattr(current.verifier, "jwks", None) is keys:
                await anyio.sleep(1)
            tasks.cancel_scope.cancel()

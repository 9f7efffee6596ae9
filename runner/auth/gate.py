"""The bearer-token gate in front of the MCP endpoint.

Why not the SDK's RequireAuthMiddleware: it answers `invalid_token` even
when no token was sent (RFC 6750 §3.1 says no error code then), names only
the first missing scope, and binds the verifier at app build time, while the
runner swaps its auth settings on reload. The gate reads the server's current
`Guard` on every request, so a reload changes auth atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from pydantic import AnyHttpUrl
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.auth.defaults import KeysUnavailable
from runner.auth.policy import Policy, missing
from runner.observe import metrics


@dataclass(frozen=True)
class Guard:
    """Everything that decides who may call the endpoint."""

    verifier: TokenVerifier
    resource: str
    authorization_server: str | None  # None: advertise none (the local issuer is no OAuth server)
    required_scopes: tuple[str, ...] = field(default=())
    policy: Policy = field(default_factory=Policy)  # per-entry scopes
    scopes_supported: tuple[str, ...] = field(default=())  # every scope in use, for the RFC 9728 document

    @property
    def metadata_url(self) -> str:
        return str(build_resource_metadata_url(AnyHttpUrl(self.resource)))


class BearerGate:
    """ASGI middleware: 401/403 with RFC 6750/9728 headers, or pass through with the user set."""

    def __init__(self, app: ASGIApp, guard: Callable[[], Guard | None]) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self.guard()
        if guard is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is None:
            metrics.auth_rejected("missing")
            await _challenge(send, guard, 401, error=None, description="Authentication required")
            return
        try:
            access = await _verify(guard.verifier, token)
        except KeysUnavailable as exc:  # the server's fault, not the token's: 503, and never let through
            document = {"error": "temporarily_unavailable", "error_description": UNAVAILABLE}
            await _plain(send, 503, document, [(b"retry-after", str(exc.retry_after).encode())])
            return
        if access is None:
            await _challenge(send, guard, 401, error="invalid_token", description="The access token is not valid")
            return
        if missing(guard.required_scopes, access.scopes):
            await _forbid(send, guard, guard.required_scopes, access.scopes)
            return
        if guard.policy and scope.get("method") == "POST":
            body = await _read_body(receive)
            if body is None:
                await _plain(send, 413, {"error": "request_too_large"})
                return
            needed = _entry_scopes(guard.policy, body)
            if missing(needed, access.scopes):
                await _forbid(send, guard, (*guard.required_scopes, *needed), access.scopes)
                return
            receive = _replay(body, receive)
        user = AuthenticatedUser(access)
        scope["user"] = user
        scope["auth"] = AuthCredentials(access.scopes)
        reset = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(reset)


UNAVAILABLE = "The server cannot check tokens now: its issuer's signing keys could not be fetched"


async def _verify(verifier: TokenVerifier, token: str) -> AccessToken | None:
    """Ours (`JWKSTokenVerifier.verify`) tells "invalid" (None) from "could not be checked" (KeysUnavailable);
    the SDK's `verify_token` cannot. Looked up by name: importing the verifier here would load PyJWT into
    every server, one without auth included (issue 12)."""
    verify = getattr(verifier, "verify", None) or verifier.verify_token
    return await verify(token)  # type: ignore[no-any-return]


def _entry_scopes(policy: Policy, body: bytes) -> tuple[str, ...]:
    """Scopes the JSON-RPC message(s) in `body` need; an unparsable body is the transport's to reject."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # deeply nested JSON raises RecursionError, not a 500 here
        return ()
    needed: dict[str, None] = {}
    for message in payload if isinstance(payload, list) else [payload]:
        needed.update(dict.fromkeys(policy.for_message(message)))
    return tuple(needed)


async def _read_body(receive: Receive) -> bytes | None:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > DEFAULT_MAX_REQUEST_BODY_SIZE:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the body we read on to the transport, then the rest of the stream (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def _forbid(send: Send, guard: Guard, needed: tuple[str, ...], granted: list[str]) -> None:
    """403 naming every scope the request needs (RFC 6750 §3.1), so a client can step up in one go."""
    metrics.auth_rejected("scope")
    lacking = " ".join(missing(needed, granted))
    await _challenge(
        send, guard, 403, error="insufficient_scope", description=f"Missing scope: {lacking}", scope=" ".join(needed)
    )


async def _challenge(
    send: Send, guard: Guard, status: int, *, error: str | None, description: str, scope: str | None = None
) -> None:
    params = []
    if error:
        params += [f'error="{error}"', f'error_description="{description}"']
    if scope:
        params.append(f'scope="{scope}"')
    params.append(f'resource_metadata="{guard.metadata_url}"')
    body = {"error": error or "unauthorized", "error_description": description}
    await _plain(send, status, body, [(b"www-authenticate", ("Bearer " + ", ".join(params)).encode())])


async def _plain(
    send: Send, status: int, document: dict[str, str], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(document).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})
